"""The removal contract: what a caller asks for, what it gets back, and the Remover protocol.

Every provider (the in-process engine today; a remote service or Remove.bg later) takes encoded
image bytes and :class:`RemovalOptions` and returns a :class:`RemovalResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from stolentee.errors import (
    InvalidBgColorError,
    InvalidChannelsError,
    InvalidCropMarginError,
    InvalidFormatError,
    InvalidPositionError,
    InvalidRoiError,
    InvalidScaleError,
    InvalidSizeError,
    InvalidTypeError,
)

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
    AUTO = "auto"  # PNG when anything is transparent, else JPG
    ZIP = "zip"  # color.jpg + alpha.png


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
        raise InvalidTypeError(
            f"type must be one of {', '.join(sorted(KIND_ALIASES))}; got {value!r}"
        ) from None


def parse_size(value: str) -> OutputSize:
    try:
        return SIZE_ALIASES[value.strip().lower()]
    except KeyError:
        raise InvalidSizeError(
            f"size must be one of preview, full, 4k, 50MP, auto (or small, regular, medium, "
            f"hd); got {value!r}"
        ) from None


def parse_format(value: str) -> OutputFormat:
    normalised = value.strip().lower()
    normalised = {"jpeg": "jpg"}.get(normalised, normalised)
    try:
        return OutputFormat(normalised)
    except ValueError:
        raise InvalidFormatError(
            f"format must be auto, png, jpg, webp or zip; got {value!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class Length:
    """A coordinate or size in pixels, or in percent of the image's dimension."""

    value: float
    percent: bool

    def resolve(self, extent: int) -> int:
        return round(self.value * extent / 100) if self.percent else round(self.value)


@dataclass(frozen=True, slots=True)
class Roi:
    """Region of interest ``x1 y1 x2 y2`` (Remove.bg's ``roi``)."""

    x1: Length
    y1: Length
    x2: Length
    y2: Length

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom), clamped to the image; right/bottom exclusive."""
        left = min(max(self.x1.resolve(width), 0), width)
        top = min(max(self.y1.resolve(height), 0), height)
        right = min(max(self.x2.resolve(width), left), width)
        bottom = min(max(self.y2.resolve(height), top), height)
        return left, top, right, bottom


@dataclass(frozen=True, slots=True)
class Position:
    """Where the subject's box sits in the canvas, as fractions (0 left/top .. 1 right/bottom)."""

    x: float
    y: float


CENTER = Position(0.5, 0.5)


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
    roi: Roi | None = None  # only this region may hold the subject
    scale: float | None = None  # subject size relative to the canvas (0.1..1); None: original
    position: Position | None = None  # where the subject sits; None: where it was
    bg_image: bytes | None = None  # encoded background image, resized to cover the canvas
    premium: bool = False  # routing, not processing: premium callers may go to Remove.bg first


@dataclass(frozen=True, slots=True)
class Foreground:
    """Bounding box of the subject in the output image, in pixels."""

    top: int
    left: int
    width: int
    height: int


NO_MODEL = "none"  # X-Model of a result no model made


@dataclass(frozen=True, slots=True)
class RemovalResult:
    data: bytes
    content_type: str
    width: int
    height: int
    kind: ImageKind  # what the engine decided: GRAPHIC or PHOTO
    method: str  # "colour-key", "model:<name>", "model+colour-key:<name>", "model+graph-cut:<name>"
    foreground: Foreground | None
    input_width: int
    input_height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    provider: str = "local"  # which provider of the chain produced it
    credits_charged: float = 0.0  # Remove.bg credits actually charged (its X-Credits-Charged)
    model: str = NO_MODEL  # the model that made it (X-Model); "none": the colour key, Remove.bg


def model_in(method: str) -> str:
    """The model named in a method (``model:isnet`` -> ``isnet``), else :data:`NO_MODEL`."""
    _, separator, name = method.partition(":")
    return name if separator and name else NO_MODEL


class Remover(Protocol):
    """Anything that removes backgrounds: the local engine, a remote service, Remove.bg."""

    name: str

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult: ...


PREVIEW_CREDITS = 0.25
FULL_CREDITS = 1.0


def credits_for(size: OutputSize, width: int, height: int) -> float:
    """What Remove.bg charges for a result of ``width`` x ``height``: 0.25 for a preview (up to
    0.25 MP), else 1 (its pricing of the v1.0 API)."""
    if size is OutputSize.PREVIEW or width * height <= PREVIEW_MAX_PIXELS:
        return PREVIEW_CREDITS
    return FULL_CREDITS


FailureKind = Literal[
    "timeout",  # no answer in time
    "connect",  # could not connect / connection dropped
    "server_error",  # 5xx
    "rate_limited",  # 429 after retries
    "out_of_credits",  # Remove.bg's 402
    "rejected",  # 4xx: the provider refused the input (never retried, never falls back)
    "bad_response",  # answered 2xx with something unusable
    "internal",  # the in-process engine raised
]


@dataclass(frozen=True, slots=True)
class RemovalEvent:
    """One attempt of one provider on one image, for the statistics."""

    provider: str
    ok: bool
    failure_kind: FailureKind | None
    latency_ms: float
    megapixels: float  # of the input image
    credits_charged: float  # Remove.bg credits actually charged (0 for self-hosted)
    credits_avoided: float  # credits Remove.bg would have charged, when self-hosted succeeded
    premium: bool
    at: datetime
    image_kind: str | None = None  # graphic or photo, when the attempt succeeded
    model: str = NO_MODEL  # the model that made a successful attempt's result


class StatsSink(Protocol):
    """Where the provider chain reports every attempt (the database in production)."""

    def record(self, event: RemovalEvent) -> None: ...


def parse_color(value: str) -> tuple[int, int, int, int]:
    """A colour as hex (``81d4fa``, ``#81d4fa``, ``#fff``, with optional alpha) or a CSS name."""
    from PIL import ImageColor

    text = value.strip()
    if not text:
        raise InvalidBgColorError("bg_color is empty")
    hex_digits = text.removeprefix("#")
    candidate = f"#{hex_digits}" if all(c in "0123456789abcdefABCDEF" for c in hex_digits) else text
    try:
        rgb = ImageColor.getrgb(candidate)
    except ValueError:
        raise InvalidBgColorError(
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
        raise InvalidCropMarginError(
            f"crop_margin must be 0-{MAX_CROP_MARGIN_PX}px or 0-{MAX_CROP_MARGIN_PERCENT:g}%; "
            f"got {value!r}"
        ) from None


def _length(token: str) -> Length:
    text = token.strip().lower()
    percent = text.endswith("%")
    number = float(text[:-1] if percent else text.removesuffix("px"))
    if number < 0 or (percent and number > 100) or number != number:
        raise ValueError(token)
    return Length(number, percent)


def parse_roi(value: str) -> Roi:
    """``"x1 y1 x2 y2"``, each in px or %, e.g. ``"0% 0% 100% 100%"`` or ``"10px 20px 300 400"``."""
    parts = value.replace(",", " ").split()
    try:
        if len(parts) != 4:
            raise ValueError(value)
        x1, y1, x2, y2 = (_length(part) for part in parts)
    except ValueError:
        raise InvalidRoiError(
            f"roi must be four coordinates 'x1 y1 x2 y2' in px or %; got {value!r}"
        ) from None
    roi = Roi(x1, y1, x2, y2)
    # Same units compare directly; mixed units are checked once the image size is known.
    for low, high in ((x1, x2), (y1, y2)):
        if low.percent == high.percent and high.value <= low.value:
            raise InvalidRoiError(f"roi must have x1 < x2 and y1 < y2; got {value!r}")
    return roi


def parse_scale(value: str) -> float | None:
    """``"original"`` (None) or ``"10%"`` .. ``"100%"`` (a fraction)."""
    text = value.strip().lower()
    if text == "original":
        return None
    try:
        percent = float(text.removesuffix("%"))
        if not 10 <= percent <= 100:
            raise ValueError(text)
    except ValueError:
        raise InvalidScaleError(
            f"scale must be 'original' or between 10% and 100%; got {value!r}"
        ) from None
    return percent / 100


def parse_position(value: str) -> Position | None:
    """``"original"`` (None), ``"center"``, ``"x%"`` (both axes) or ``"x% y%"``."""
    text = value.strip().lower()
    if text == "original":
        return None
    if text == "center":
        return CENTER
    parts = text.split()
    try:
        if not 1 <= len(parts) <= 2 or not all(part.endswith("%") for part in parts):
            raise ValueError(text)
        numbers = [float(part[:-1]) for part in parts]
        if not all(0 <= number <= 100 for number in numbers):
            raise ValueError(text)
    except ValueError:
        raise InvalidPositionError(
            f"position must be 'original', 'center', 'x%' or 'x% y%' (0-100%); got {value!r}"
        ) from None
    x = numbers[0] / 100
    y = numbers[-1] / 100
    return Position(x, y)


def parse_channels(value: str) -> bool:
    """``rgba`` (False) or ``alpha`` (True: the matte only)."""
    text = value.strip().lower()
    if text not in ("rgba", "alpha"):
        raise InvalidChannelsError(f"channels must be rgba or alpha; got {value!r}")
    return text == "alpha"
