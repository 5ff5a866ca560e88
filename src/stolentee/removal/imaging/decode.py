"""Turn untrusted image bytes into an 8-bit RGB or RGBA Pillow image, or a clear error.

Accepted: JPEG, PNG, WebP, and the first frame of GIF, BMP and TIFF. The pixel count is checked
from the header before any pixel is decoded (decompression bombs), EXIF orientation is applied,
and palette, greyscale, CMYK, 16-bit and alpha inputs are normalised.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stolentee.errors import InvalidImageError, ResolutionTooHighError, UnsupportedImageTypeError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # MPO opens as JPEG
_EXIF_ORIENTATION = 0x0112
_CHECK_DRAFT_SIDE = 64  # check_image: JPEG decoded at the smallest scale reaching this side


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """The decoded image (mode ``RGB`` or ``RGBA``) and what we learnt about the input."""

    image: Image.Image
    source_format: str
    has_alpha: bool

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format named by the first bytes, if any (no decoding)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the header says, read without decoding pixels."""

    format: str
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def read_header(data: bytes, *, max_megapixels: float) -> ImageHeader:
    """Check type (by content, not name) and resolution cheaply, before any pixel is decoded."""
    image = _open(data, max_megapixels=max_megapixels)
    header = ImageHeader(image.format or "", image.width, image.height)
    if header.width < 1 or header.height < 1:
        raise InvalidImageError("the image has no pixels")
    if header.megapixels > max_megapixels:
        raise ResolutionTooHighError(
            f"the image is {header.width}x{header.height} ({header.megapixels:.1f} MP); at most "
            f"{max_megapixels:g} MP is accepted"
        )
    return header


def _too_high(max_megapixels: float) -> ResolutionTooHighError:
    return ResolutionTooHighError(
        "the image declares more pixels than the decompression-bomb guard allows; "
        f"at most {max_megapixels:g} MP is accepted"
    )


def _open(data: bytes, *, max_megapixels: float) -> Image.Image:
    if not data:
        raise InvalidImageError("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        sniffed = sniff_format(data)
        if sniffed is not None:
            raise InvalidImageError(
                f"the data looks like {sniffed} but cannot be decoded "
                "(corrupt, truncated or an unsupported variant)"
            ) from None
        raise UnsupportedImageTypeError(
            "not an image we can read; send JPEG, PNG, WebP, GIF, BMP or TIFF"
        ) from None
    except Image.DecompressionBombError:
        raise _too_high(max_megapixels) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"the image data is corrupt: {exc}") from None


def decode_image(
    data: bytes, *, max_megapixels: float, draft_max_side: int | None = None
) -> DecodedImage:
    """Decode ``data``; ``draft_max_side`` lets JPEG decode at a reduced size when enough."""
    header = read_header(data, max_megapixels=max_megapixels)
    image = _open(data, max_megapixels=max_megapixels)
    source_format, width, height = header.format, header.width, header.height
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if draft_max_side and source_format in ("JPEG", "MPO"):
            scale = max(width, height) / draft_max_side
            if scale >= 2:
                image.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError:
        raise _too_high(max_megapixels) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImageError(f"the image data is corrupt or truncated: {exc}") from None
    image = _apply_orientation(image)
    normalised, has_alpha = _normalise_mode(image)
    return DecodedImage(image=normalised, source_format=source_format, has_alpha=has_alpha)


def check_image(data: bytes, *, max_megapixels: float) -> ImageHeader:
    """:func:`read_header`, then every pixel decoded once, so that a corrupt or truncated image
    is refused now, with the removal API's own error, instead of failing later in a job. JPEG
    is decoded at its smallest DCT scale: every byte of the stream is still read and checked."""
    header = read_header(data, max_megapixels=max_megapixels)
    decode_image(data, max_megapixels=max_megapixels, draft_max_side=_CHECK_DRAFT_SIDE)
    return header


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):
        return image  # unreadable EXIF is ignored, as browsers do
    if orientation in (None, 1):
        return image
    transposed = ImageOps.exif_transpose(image)
    return transposed if transposed is not None else image


def _normalise_mode(image: Image.Image) -> tuple[Image.Image, bool]:
    """8-bit RGB, or RGBA when the input carries transparency."""
    mode = image.mode
    if mode == "P":
        has_transparency = "transparency" in image.info
        return image.convert("RGBA" if has_transparency else "RGB"), has_transparency
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        return rgba, _alpha_is_used(rgba)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the actual range down to 8 bits.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB"), False
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = values.max(initial=0.0)
        peak = 1.0 if peak <= 1.0 else 255.0
        grey = np.clip(values * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB"), False
    if mode == "RGB":
        return image, False
    # L, 1, CMYK, YCbCr, LAB, HSV, RGBX and the rest.
    return image.convert("RGB"), False


def _alpha_is_used(rgba: Image.Image) -> bool:
    extrema = rgba.getchannel("A").getextrema()
    return bool(extrema[0] != 255)
