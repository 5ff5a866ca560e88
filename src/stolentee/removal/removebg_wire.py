"""Remove.bg's API v1.0 on the wire, both ways: RemovalOptions as form fields and back, and a
result as response headers and back. The removal service's route and the remote providers share
it, so a client and our server cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping

from stolentee.errors import InvalidOptionError
from stolentee.removal.base import (
    CENTER,
    Foreground,
    ImageKind,
    Length,
    RemovalOptions,
    RemovalResult,
    parse_channels,
    parse_color,
    parse_crop_margin,
    parse_format,
    parse_kind,
    parse_position,
    parse_roi,
    parse_scale,
    parse_size,
)

# Remove.bg's X-Type values; everything but graphics names a photographed subject.
_GRAPHIC_TYPES = frozenset({"graphic", "graphics", "logo"})


def _number(value: float) -> str:
    return f"{round(value, 4):g}"


def _length(length: Length) -> str:
    return f"{_number(length.value)}{'%' if length.percent else 'px'}"


def _hex_color(rgba: tuple[int, int, int, int]) -> str:
    red, green, blue, alpha = rgba
    text = f"{red:02x}{green:02x}{blue:02x}"
    return text if alpha == 255 else f"{text}{alpha:02x}"


def form_fields(options: RemovalOptions, *, photo_type: str = "photo") -> dict[str, str]:
    """``options`` as Remove.bg's form fields (as ``api/routes/removebg.py`` parses them).

    Every field is sent explicitly, because the wire defaults differ from
    :class:`RemovalOptions`' (``size`` defaults to ``preview`` on the wire, ``format`` to
    ``auto``). ``photo_type`` is what :attr:`ImageKind.PHOTO` is sent as: ``photo`` to our
    service; Remove.bg has no generic photo type, so ``auto`` there. ``premium`` is not part of
    the wire format; ``model`` (our extension) is added by the providers that take it.
    """
    kinds = {ImageKind.AUTO: "auto", ImageKind.GRAPHIC: "graphic", ImageKind.PHOTO: photo_type}
    fields = {
        "size": options.size.value,
        "type": kinds[options.kind],
        "format": options.format.value,
        "channels": "alpha" if options.alpha_only else "rgba",
        "crop": "true" if options.crop else "false",
    }
    if options.crop_margin_percent:
        fields["crop_margin"] = f"{_number(options.crop_margin_percent)}%"
    elif options.crop_margin_px:
        fields["crop_margin"] = f"{options.crop_margin_px}px"
    if options.bg_color is not None:
        fields["bg_color"] = _hex_color(options.bg_color)
    if options.roi is not None:
        roi = options.roi
        fields["roi"] = " ".join(_length(part) for part in (roi.x1, roi.y1, roi.x2, roi.y2))
    if options.scale is not None:
        fields["scale"] = f"{_number(options.scale * 100)}%"
    if options.position is not None:
        position = options.position
        if position == CENTER:
            fields["position"] = "center"
        else:
            fields["position"] = f"{_number(position.x * 100)}% {_number(position.y * 100)}%"
    return fields


def kind_from_header(value: str | None, requested: ImageKind) -> ImageKind:
    """``X-Type`` (ours: graphic/photo; Remove.bg's: person, product, animal, car,
    car_interior, car_part, transportation, graphics, other) as an :class:`ImageKind`."""
    if value is None or not value.strip():
        return requested if requested is not ImageKind.AUTO else ImageKind.PHOTO
    return ImageKind.GRAPHIC if value.strip().lower() in _GRAPHIC_TYPES else ImageKind.PHOTO


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def foreground_from_headers(headers: Mapping[str, str]) -> Foreground | None:
    values = [
        int_header(headers, f"X-Foreground-{part}") for part in ("Top", "Left", "Width", "Height")
    ]
    if any(value is None for value in values):
        return None
    top, left, width, height = (value or 0 for value in values)
    return Foreground(top=top, left=left, width=width, height=height)


def result_headers(result: RemovalResult, credits: float) -> dict[str, str]:
    headers = {
        "X-Width": str(result.width),
        "X-Height": str(result.height),
        "X-Type": result.kind.value,
        "X-Credits-Charged": f"{credits:g}",
        "X-Removal-Method": result.method,
        "X-Removal-Provider": result.provider,
    }
    if result.foreground is not None:
        box = result.foreground
        headers.update(
            {
                "X-Foreground-Top": str(box.top),
                "X-Foreground-Left": str(box.left),
                "X-Foreground-Width": str(box.width),
                "X-Foreground-Height": str(box.height),
            }
        )
    return headers


# The option fields :func:`options_from_fields` reads (the image and background sources, and the
# parameters Remove.bg offers that stolentee ignores, are the route's business).
OPTION_FIELDS = (
    "type",
    "size",
    "format",
    "channels",
    "bg_color",
    "crop",
    "crop_margin",
    "roi",
    "scale",
    "position",
)


class InvalidCropError(InvalidOptionError):
    code = "invalid_crop"
    title = "Invalid crop"


def parse_bool(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise InvalidCropError(f"{name} must be true or false; got {value!r}")


def options_from_fields(fields: Mapping[str, str], *, bg_image: bytes | None) -> RemovalOptions:
    """Remove.bg's parameters as :class:`RemovalOptions` (each bad value: its own error code);
    the inverse of :func:`form_fields`. Blank values count as absent."""

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if value is not None and value.strip() else None

    margin_px, margin_percent = parse_crop_margin(text("crop_margin") or "0")
    roi = text("roi")
    scale = text("scale")
    position = text("position")
    colour = text("bg_color")
    return RemovalOptions(
        kind=parse_kind(text("type") or "auto"),
        size=parse_size(text("size") or "preview"),
        format=parse_format(text("format") or "auto"),
        alpha_only=parse_channels(text("channels") or "rgba"),
        bg_color=parse_color(colour) if colour else None,
        crop=parse_bool("crop", text("crop")),
        crop_margin_px=margin_px,
        crop_margin_percent=margin_percent,
        roi=parse_roi(roi) if roi else None,
        scale=parse_scale(scale) if scale else None,
        position=parse_position(position) if position else None,
        bg_image=bg_image,
    )
