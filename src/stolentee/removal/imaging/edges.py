"""Photo edges at full resolution: the model's low-resolution matte refined along the image's own
edges, and the foreground's colour estimated where the subject blends into the background.

A model sees the photo at 320 or 1024 px; upscaled, its matte is soft and blind to detail that
only the full-resolution image shows. Both steps here work in the *edge band* (where the upscaled
matte is neither 0 nor 1, widened a little) and leave the rest as it is.

* :func:`refine_matte`: a colour guided filter (He, Sun and Tang, "Guided Image Filtering") with
  the upscaled matte as input and the photo as guide, its local linear coefficients computed on
  a quarter-size grid and upsampled (the "fast guided filter": the same result within the band,
  a sixteenth of the work). Faint residue near 0 (and, less of it, near 1) is then snapped.
* :func:`estimate_foreground`: the subject's own colour at the edge pixels, by blur fusion
  (Forte and Pitié, "Approximate Fast Foreground Colour Estimation", 2021): local means of the
  foreground and background under the matte, two passes (wide, at a quarter of the size, then
  narrow), then ``F = Fm + a * (I - a * Fm - (1 - a) * Bm)`` (``a`` the
  matte, ``Fm`` and ``Bm`` the local means). Without it a cutout's semi-transparent
  pixels keep the old background's colour, a halo on any other shirt colour.

Radii are given for a 1024-px long side and scaled with the image. Each step was kept because
it improved every metric of the development set together (IoU, boundary F and alpha MAE; the
colour of composites over white and black for the second): benchmarks/removal.md.
"""

from __future__ import annotations

import copy
import itertools
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from numpy.typing import NDArray

from stolentee.removal.imaging.arrays import F32, U8

_REFERENCE_SIDE = 1024  # radii below are for an image of this long side
_GUIDE_RADIUS = 8  # guided filter window radius
_GUIDE_EPS = 1e-4  # regularisation: smaller follows the image's edges more closely
_GRID = 4  # coefficients computed on a grid this many times smaller
_BAND_RADIUS = 3  # edge band: uncertain pixels of the matte, dilated by this much
# Refined alpha within the first of 0, or the second of 1, becomes 0 or 1. Asymmetric: snapping
# the background's haze to 0 lowers the alpha error, while snapping near-opaque hair and fur to
# 1 shows the estimated colour at full strength where the truth still lets the background
# through, and cost more in the colour of composites than it gained in alpha
# (benchmarks/removal.md, "the snap near 1").
_SNAP = (0.1, 0.02)
_UNCERTAIN = (0.02, 0.98)  # the matte's uncertain range, on 0..1
_WIDE_RADIUS = 45  # blur fusion: the wide pass (at the grid size) and the narrow one
_NARROW_RADIUS = 3
_TINY = 1e-5
_UNIT = np.float32(1 / 255)


def _scaled(radius: int, shape: tuple[int, ...]) -> int:
    return max(1, round(radius * max(shape[:2]) / _REFERENCE_SIDE))


def _box(image: F32, radius: int) -> F32:
    size = 2 * radius + 1
    return np.asarray(
        cv2.boxFilter(image, -1, (size, size), borderType=cv2.BORDER_REFLECT), dtype=np.float32
    )


def edge_band(alpha: U8, radius: int) -> U8:
    """255 where ``alpha`` is uncertain or within ``radius`` pixels of such a pixel, else 0."""
    low, high = (round(255 * bound) for bound in _UNCERTAIN)
    uncertain = cv2.inRange(alpha, low + 1, high - 1)  # 255 inside, 0 outside
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    return np.asarray(cv2.dilate(uncertain, kernel), dtype=np.uint8)


def _grid_size(shape: tuple[int, ...]) -> tuple[int, int]:
    height, width = shape[:2]
    return max(1, width // _GRID), max(1, height // _GRID)


def _to_grid(image: U8) -> U8:
    """``image`` on the grid: the mean of each ``_GRID`` x ``_GRID`` block. The last rows and
    columns that do not fill a block are left out (they take the nearest cell's values when
    sampled back), so OpenCV's area filter runs its exact-factor path, several times faster
    than its general one (benchmarks/removal.md, session 15)."""
    width, height = _grid_size(image.shape)
    whole = image[: height * _GRID, : width * _GRID]
    return np.asarray(cv2.resize(whole, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def _guided_coefficients(guide: F32, matte: F32, radius: int) -> tuple[F32, F32]:
    """Per pixel of ``guide`` (HxWx3), the mean-filtered ``a`` (HxWx3) and ``b`` (HxW) of the
    colour guided filter ``q = a·I + b``. The 3x3 covariance is inverted in closed form."""
    mean_i = [_box(np.ascontiguousarray(guide[..., c]), radius) for c in range(3)]
    mean_p = _box(matte, radius)
    cov_ip = [_box(guide[..., c] * matte, radius) - mean_i[c] * mean_p for c in range(3)]

    def var(i: int, j: int) -> F32:
        return _box(guide[..., i] * guide[..., j], radius) - mean_i[i] * mean_i[j]

    eps = np.float32(_GUIDE_EPS)
    rr, rg, rb = var(0, 0) + eps, var(0, 1), var(0, 2)
    gg, gb, bb = var(1, 1) + eps, var(1, 2), var(2, 2) + eps
    # The inverse of the symmetric matrix [[rr rg rb] [rg gg gb] [rb gb bb]] by its cofactors.
    c_rr, c_rg, c_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    c_gg, c_gb, c_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * c_rr + rg * c_rg + rb * c_rb
    inv_det = np.float32(1.0) / np.where(np.abs(det) < _TINY**2, np.float32(_TINY**2), det)
    a_r = (c_rr * cov_ip[0] + c_rg * cov_ip[1] + c_rb * cov_ip[2]) * inv_det
    a_g = (c_rg * cov_ip[0] + c_gg * cov_ip[1] + c_gb * cov_ip[2]) * inv_det
    a_b = (c_rb * cov_ip[0] + c_gb * cov_ip[1] + c_bb * cov_ip[2]) * inv_det
    b = mean_p - a_r * mean_i[0] - a_g * mean_i[1] - a_b * mean_i[2]
    a = np.stack([_box(a_r, radius), _box(a_g, radius), _box(a_b, radius)], axis=-1)
    return a, _box(b, radius)


def photo_edges(rgb: U8, alpha: U8, *, threads: int = 1) -> tuple[U8, U8]:
    """:func:`refine_matte`, then :func:`estimate_foreground` with the refined matte: the
    refined alpha and the colours. The photo at the grid size, which both steps use, is made
    once."""
    small = _GridImage(rgb)
    refined = refine_matte(rgb, alpha, small=small)
    return refined, estimate_foreground(rgb, refined, small=small, threads=threads)


class _GridImage:
    """The photo resized to the grid (area filter) on 0..1, made when first asked for."""

    def __init__(self, rgb: U8) -> None:
        self._rgb = rgb
        self._small: F32 | None = None

    def get(self) -> F32:
        if self._small is None:
            self._small = _to_grid(self._rgb).astype(np.float32) * _UNIT
        return self._small


def refine_matte(rgb: U8, alpha: U8, *, small: _GridImage | None = None) -> U8:
    """``alpha`` (the model's matte upscaled to ``rgb``'s size) refined along the photo's edges
    in its edge band; elsewhere unchanged."""
    band = edge_band(alpha, _scaled(_BAND_RADIUS, alpha.shape))
    if not cv2.countNonZero(band):
        return alpha
    guide = (small or _GridImage(rgb)).get()
    matte = _to_grid(alpha).astype(np.float32) * _UNIT
    radius = max(1, _scaled(_GUIDE_RADIUS, rgb.shape) // _GRID)
    a_small, b_small = _guided_coefficients(guide, matte, radius)
    # Only the band's pixels are evaluated, with the coefficients sampled there. OpenCV lists
    # them in numpy's order (row by row), and far faster than np.nonzero does.
    points = np.asarray(cv2.findNonZero(band), np.intp).reshape(-1, 2)
    ys, xs = points[:, 1], points[:, 0]
    flat = ys * alpha.shape[1] + xs  # taking by flat index is faster than by (y, x)
    a_at = _sample(a_small, ys, xs)
    b_at = _sample(b_small[..., np.newaxis], ys, xs)[:, 0]
    pixels = np.take(rgb.reshape(-1, 3), flat, axis=0).astype(np.float32)
    refined = np.einsum("ij,ij->i", a_at, pixels) * _UNIT + b_at
    near_0, near_1 = _SNAP
    refined = np.where(refined < near_0, 0.0, np.where(refined > 1 - near_1, 1.0, refined))
    # Outside the band the matte is certain: its faint residue (within the uncertain range's
    # bounds of 0 or 1) is snapped as well, so that only the band stays semi-transparent.
    out = np.asarray(cv2.LUT(alpha, _SNAP_OUTSIDE), dtype=np.uint8)
    out.reshape(-1)[flat] = np.clip(refined * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _snap_table() -> U8:
    """0 up to the uncertain range's low bound, 255 from its high bound, else the value."""
    low, high = (round(255 * bound) for bound in _UNCERTAIN)
    table = np.arange(256, dtype=np.uint8)
    table[: low + 1], table[high:] = 0, 255
    return table


_SNAP_OUTSIDE = _snap_table()
_REMAP_ROW = 1024  # points are sampled in rows of this many (OpenCV's remap takes < 32767)


def _to_grid_coordinates(index: NDArray[np.intp]) -> F32:
    """Pixel indices as coordinates on the grid (cell centres at whole numbers)."""
    return np.asarray((index + 0.5) * (1 / _GRID) - 0.5, np.float32)


def _remap(values: F32, map_x: F32, map_y: F32) -> F32:
    """``values`` bilinearly interpolated at the grid coordinates of two equal 2-D maps (edges
    clamped; OpenCV's remap, its weights in 1/32 steps), in blocks of rows that remap takes
    (fewer than 32,767)."""
    step = 32_000
    chunks = [
        cv2.remap(
            values,
            map_x[start : start + step],
            map_y[start : start + step],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        for start in range(0, map_x.shape[0], step)
    ]
    return np.asarray(chunks[0] if len(chunks) == 1 else np.concatenate(chunks), np.float32)


def _sample(values: F32, ys: NDArray[np.intp], xs: NDArray[np.intp]) -> F32:
    """``values`` (h x w x C, on the grid) bilinearly interpolated at the image's pixels
    (``ys``, ``xs``), without making the full-size array. Returns N x C."""
    count = len(ys)
    rows = -(-count // _REMAP_ROW)
    flat_y = np.zeros(rows * _REMAP_ROW, np.float32)
    flat_x = np.zeros(rows * _REMAP_ROW, np.float32)
    flat_y[:count] = _to_grid_coordinates(ys)
    flat_x[:count] = _to_grid_coordinates(xs)
    shape = (rows, _REMAP_ROW)
    sampled = _remap(values, flat_x.reshape(shape), flat_y.reshape(shape))
    return sampled.reshape(-1, values.shape[2])[:count]


def _fusion_pass(image: F32, fg: F32, bg: F32, alpha: F32, radius: int) -> tuple[F32, F32]:
    """One blur-fusion pass: the new foreground estimate and the local background mean."""
    a = alpha[..., np.newaxis]
    mean_a = _box(alpha, radius)[..., np.newaxis]
    mean_fg = _box(fg * a, radius) / (mean_a + _TINY)
    mean_bg = _box(bg * (1 - a), radius) / ((1 - mean_a) + _TINY)
    estimate = mean_fg + a * (image - a * mean_fg - (1 - a) * mean_bg)
    return np.clip(estimate, 0.0, 1.0, out=estimate), mean_bg


def estimate_foreground(
    rgb: U8, alpha: U8, *, small: _GridImage | None = None, threads: int = 1
) -> U8:
    """``rgb`` with the subject's own colour (not the background's) at the semi-transparent
    pixels of ``alpha``; fully opaque and fully transparent pixels are left as they are.

    The wide pass runs on the quarter-size grid; the narrow one only on the tiles that hold
    semi-transparent pixels, each with a margin of its radius (reflected at the image's
    border, as the box filter does), so its cost follows the outline's length, not the area.
    The tiles are cut from padded copies as strided views. With ``threads`` > 1 they are
    shared out between that many threads (the same colours): the narrow pass is most of the
    edge work, and OpenCV and numpy release the GIL while they run it.
    """
    in_between = np.asarray(cv2.inRange(alpha, 1, 254), np.uint8)  # 255: semi-transparent
    if not cv2.countNonZero(in_between):
        return rgb
    image_small = (small or _GridImage(rgb)).get()
    small_alpha = _to_grid(alpha).astype(np.float32) * _UNIT
    wide = max(1, _scaled(_WIDE_RADIUS, rgb.shape) // _GRID)
    fg_small, bg_small = _fusion_pass(image_small, image_small, image_small, small_alpha, wide)

    tiles = _Tiles(in_between, _scaled(_NARROW_RADIUS, rgb.shape))

    def colours(part: _Tiles) -> U8:
        """The narrow pass over ``part``'s tiles: N x tile x tile x 3 colours."""
        fg = part.sample(fg_small)
        bg = part.sample(bg_small)
        image = part.cut(rgb).astype(np.float32) * _UNIT
        matte = part.cut(alpha).astype(np.float32) * _UNIT
        estimate = _tile_fusion(image, fg, bg, matte, part.margin)
        return np.asarray(np.clip(estimate * 255 + 0.5, 0, 255), np.uint8)

    parts = tiles.split(threads)
    if len(parts) == 1:
        return tiles.paste(rgb, colours(tiles))
    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="edges") as pool:
        done = list(pool.map(colours, parts))
    return tiles.paste(rgb, np.concatenate(done))


_TILE = 32  # the narrow pass's tiles, in pixels
_TILES_PER_THREAD = 64  # fewer are not worth a thread's hand-over


class _Tiles:
    """The ``_TILE`` x ``_TILE`` tiles of an image that hold a pixel of ``mask``, each with a
    margin of ``margin`` pixels, reflected at the image's border (``fedcba|abcdef``, OpenCV's
    BORDER_REFLECT): cut out as one N x S x S (x C) batch, S = tile + 2 margin."""

    def __init__(self, mask: U8, margin: int) -> None:
        self.height, self.width = mask.shape
        self.margin = margin
        self.span = _TILE + 2 * margin
        self.rows, self.cols = -(-self.height // _TILE), -(-self.width // _TILE)
        padded = np.zeros((self.rows * _TILE, self.cols * _TILE), np.uint8)
        padded[: self.height, : self.width] = mask
        self.mask = padded.reshape(self.rows, _TILE, self.cols, _TILE).swapaxes(1, 2)
        self.ys, self.xs = np.nonzero(_occupied(padded))

    def split(self, parts: int) -> list[_Tiles]:
        """The tiles in at most ``parts`` runs of about equal length (and of at least
        ``_TILES_PER_THREAD``), in order."""
        parts = max(1, min(parts, len(self.ys) // _TILES_PER_THREAD))
        bounds = np.linspace(0, len(self.ys), parts + 1).round().astype(int)
        runs = [slice(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]
        if len(runs) <= 1:
            return [self]
        return [self._subset(run) for run in runs]

    def _subset(self, run: slice) -> _Tiles:
        part = copy.copy(self)
        part.ys, part.xs = self.ys[run], self.xs[run]
        return part

    def cut(self, image: U8) -> U8:
        """The tiles of ``image`` with their margins."""
        margin = self.margin
        bottom = self.rows * _TILE + margin - self.height
        right = self.cols * _TILE + margin - self.width
        padded = cv2.copyMakeBorder(image, margin, bottom, margin, right, cv2.BORDER_REFLECT)
        step_y, step_x = padded.strides[:2]
        view = np.lib.stride_tricks.as_strided(
            padded,
            (self.rows, self.cols, self.span, self.span, *padded.shape[2:]),
            (step_y * _TILE, step_x * _TILE, *padded.strides),
            writeable=False,
        )
        return np.asarray(view[self.ys, self.xs])

    def sample(self, values: F32) -> F32:
        """``values`` (on the grid, h x w x C) bilinearly interpolated at the tiles' pixels with
        their margins: what ``_sample`` gives at each of them, N x S x S x C."""
        offsets = np.arange(self.span) - self.margin
        at_y = _to_grid_coordinates(_reflect(self.ys[:, np.newaxis] * _TILE + offsets, self.height))
        at_x = _to_grid_coordinates(_reflect(self.xs[:, np.newaxis] * _TILE + offsets, self.width))
        count, span = len(self.ys), self.span
        # The maps hold the tiles one below the other: (N x S) rows of S points.
        map_y = np.repeat(at_y.reshape(-1, 1), span, axis=1)
        map_x = np.ascontiguousarray(np.broadcast_to(at_x[:, np.newaxis, :], (count, span, span)))
        sampled = _remap(values, map_x.reshape(-1, span), map_y)
        return sampled.reshape(count, span, span, values.shape[2])

    def paste(self, rgb: U8, colours: U8) -> U8:
        """A copy of ``rgb`` with ``colours`` (N x tile x tile x 3) at the mask's pixels."""
        chosen = self.mask[self.ys, self.xs] != 0  # N x tile x tile; never past the image
        tile, y, x = np.nonzero(chosen)
        flat = (self.ys[tile] * _TILE + y) * self.width + self.xs[tile] * _TILE + x
        out = rgb.copy()
        out.reshape(-1, 3)[flat] = colours[chosen]
        return out


def _occupied(padded: U8) -> NDArray[np.bool_]:
    """Which tiles of a mask padded to whole tiles hold a nonzero pixel. Each tile row's bytes
    are read as 64-bit words and or-ed together before the rows are: numpy's reductions over
    short axes are slow, ``any`` over the tiles' axes among them."""
    rows, cols = padded.shape[0] // _TILE, padded.shape[1] // _TILE
    words = padded.view(np.uint64).reshape(rows * _TILE, cols, _TILE // 8)
    merged = words[:, :, 0].copy()
    for word in range(1, _TILE // 8):
        merged |= words[:, :, word]
    return np.asarray(merged.reshape(rows, _TILE, cols).max(axis=1) > 0)


def _reflect(index: NDArray[np.intp], size: int) -> NDArray[np.intp]:
    """Indices reflected into 0..size-1 as OpenCV's BORDER_REFLECT does (``fedcba|abcdef``)."""
    period = 2 * size
    folded = np.mod(index, period)
    return np.where(folded >= size, period - 1 - folded, folded)


def _tile_box(values: F32, radius: int) -> F32:
    """Mean over (2 radius + 1)^2 windows of each N x S x S (x C) tile, for its inner
    (S - 2 radius)^2 pixels. The tiles are filtered as one tall image: an inner pixel's
    window never leaves its own tile, so the seams between tiles do not matter."""
    count, span = values.shape[:2]
    tall = np.ascontiguousarray(values.reshape(count * span, *values.shape[2:]))
    filtered = _box(tall, radius).reshape(values.shape)
    inner = slice(radius, span - radius)
    return np.asarray(filtered[:, inner, inner])


def _tile_fusion(image: F32, fg: F32, bg: F32, alpha: F32, radius: int) -> F32:
    """:func:`_fusion_pass` on a batch of tiles with margins; the inner pixels' estimate.
    ``fg`` and ``bg`` are overwritten."""
    a = alpha[..., np.newaxis]
    mean_a = _tile_box(alpha, radius)[..., np.newaxis]
    inner = slice(radius, image.shape[1] - radius)
    a_in = a[:, inner, inner]
    # F = Fm + a (I - a Fm - (1 - a) Bm) = Fm (1 - a^2) + a I - a (1 - a) Bm, with the local
    # means' divisions folded into one-channel weights: three products of colour images
    # instead of eight. ``fg`` and ``bg`` are the caller's to spend.
    weight_fg = (1 - a_in * a_in) / (mean_a + _TINY)
    weight_bg = a_in * (1 - a_in) / ((1 - mean_a) + _TINY)
    fg *= a
    bg *= 1 - a
    estimate = _tile_box(fg, radius) * weight_fg
    estimate += a_in * image[:, inner, inner]
    estimate -= _tile_box(bg, radius) * weight_bg
    return np.clip(estimate, 0.0, 1.0, out=estimate)
