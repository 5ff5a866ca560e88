"""The removal contract: what a caller asks for, what it gets back, and the Remover protocol.

Every provider (the in-process engine today; a remote service or Remove.bg later) takes encoded
image bytes and :class:`RemovalOptions` and returns a :class:`RemovalResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from stolentee.errors import InvalidOptionError

PREVIEW_MAX_PIXELS = 250_000  # Remove.bg's "preview": up to 0.25 megapixels
FULL_MAX_PIXELS = 25_000_000  # Remove.bg's "full": up to 25 megapixels
MAX_PIXELS_50MP = 50_000_000


class ImageKind(StrEnum):
    """What the caller says the image is (``type``), after aliases."""

    AUTO = "auto"
    GRAPHIC = "graphic"
    PHOTO = "photo"


# Remove.bg's foreground types all name photographed subjects.
KIND_ALIASES = {
    "auto": ImageKind.AUTO,
    "graphic": ImageKind.GRAPHIC,
    "graphics": ImageKind.GRAPHIC,
    "logo": ImageKind.GRAPHIC,
    "photo": ImageKind.PHOTO,
    "person": ImageKind.PHOTO,
    "product": ImageKind.PHOTO,
    "animal": ImageKind.PHOTO,
    "car": ImageKind.PHOTO,
    "transportation": ImageKind.PHOTO,
}


class OutputFormat(StrEnum):
    PNG = "png"
    WEBP = "webp"
    JPG = "jpg"


class OutputSize(StrEnum):
    PREVIEW = "preview"
    FULL = "full"
    AUTO = "auto"
    MP50 = "50MP"

    @property
    def max_pixels(self) -> int:
        if self is OutputSize.PREVIEW:
            return PREVIEW_MAX_PIXELS
        if self is OutputSize.MP50:
            return MAX_PIXELS_50MP
        return FULL_MAX_PIXELS


SIZE_ALIASES = {
    "preview": OutputSize.PREVIEW,
    "small": OutputSize.PREVIEW,
    "regular": OutputSize.PREVIEW,
    "medium": OutputSize.FULL,
    "hd": OutputSize.FULL,
    "full": OutputSize.FULL,
    "4k": OutputSize.FULL,
    "auto": OutputSize.AUTO,
    "50mp": OutputSize.MP50,
}


def parse_kind(value: str) -> ImageKind:
    try:
        return KIND_ALIASES[value.strip().lower()]
    except KeyError:
        raise InvalidOptionError(
            f"type must be one of {', '.join(sorted(KIND_ALIASES))}; got {value!r}"
        ) from None


def parse_size(value: str) -> OutputSize:
    try:
        return SIZE_ALIASES[value.strip().lower()]
    except KeyError:
        raise InvalidOptionError(
            f"size must be one of preview, full, 4k, 50MP, auto (or small, regular, medium, "
            f"hd); got {value!r}"
        ) from None


def parse_format(value: str) -> OutputFormat:
    normalised = value.strip().lower()
    normalised = {"jpeg": "jpg"}.get(normalised, normalised)
    try:
        return OutputFormat(normalised)
    except ValueError:
        raise InvalidOptionError(f"format must be png, webp or jpg; got {value!r}") from None


@dataclass(frozen=True, slots=True)
class RemovalOptions:
    """What to produce. Defaults: auto-detect the kind, full size, PNG with transparency."""

    kind: ImageKind = ImageKind.AUTO
    size: OutputSize = OutputSize.FULL
    format: OutputFormat = OutputFormat.PNG
    alpha_only: bool = False  # channels=alpha: the matte as a greyscale image
    bg_color: tuple[int, int, int, int] | None = None  # RGBA; fills transparency
    crop: bool = False  # trim to the subject
    crop_margin_px: int = 0
    crop_margin_percent: float = 0.0
    model: str | None = None  # None: the engine's configured model


@dataclass(frozen=True, slots=True)
class Foreground:
    """Bounding box of the subject in the output image, in pixels."""

    top: int
    left: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class RemovalResult:
    data: bytes
    content_type: str
    width: int
    height: int
    kind: ImageKind  # what the engine decided: GRAPHIC or PHOTO
    method: str  # "colour-key", "model:<name>" or "model+colour-key:<name>"
    foreground: Foreground | None
    input_width: int
    input_height: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class Remover(Protocol):
    """Anything that removes backgrounds: the local engine, a remote service, Remove.bg."""

    name: str

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult: ...


def parse_color(value: str) -> tuple[int, int, int, int]:
    """A colour as hex (``81d4fa``, ``#81d4fa``, ``#fff``, with optional alpha) or a CSS name."""
    from PIL import ImageColor

    text = value.strip()
    if not text:
        raise InvalidOptionError("bg_color is empty")
    hex_digits = text.removeprefix("#")
    candidate = f"#{hex_digits}" if all(c in "0123456789abcdefABCDEF" for c in hex_digits) else text
    try:
        rgb = ImageColor.getrgb(candidate)
    except ValueError:
        raise InvalidOptionError(
            f"bg_color must be a hex colour (e.g. 81d4fa) or a colour name; got {value!r}"
        ) from None
    if len(rgb) == 3:
        return (rgb[0], rgb[1], rgb[2], 255)
    return (rgb[0], rgb[1], rgb[2], rgb[3])


MAX_CROP_MARGIN_PX = 500
MAX_CROP_MARGIN_PERCENT = 50.0


def parse_crop_margin(value: str) -> tuple[int, float]:
    """``"30px"``, ``"30"`` (pixels) or ``"10%"`` → (pixels, percent)."""
    text = value.strip().lower()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= MAX_CROP_MARGIN_PERCENT:
                raise ValueError
            return 0, percent
        pixels = int(text.removesuffix("px"))
        if not 0 <= pixels <= MAX_CROP_MARGIN_PX:
            raise ValueError
        return pixels, 0.0
    except ValueError:
        raise InvalidOptionError(
            f"crop_margin must be 0-{MAX_CROP_MARGIN_PX}px or 0-{MAX_CROP_MARGIN_PERCENT:g}%; "
            f"got {value!r}"
        ) from None
