"""Graphic-aware cutouts: artwork on a plain (or smoothly shaded) background, cut by colour key.

Most T-shirt uploads are logos and clip-art on a plain background. For those a segmentation
model is both slower and worse than keying out the background colour:

1. **Detect** (:func:`analyse_border`): fit a smooth surface (constant, linear or quadratic in x
   and y, per channel) to the pixels of the image border, ignoring the artwork that touches the
   border. When nearly all border pixels sit on that surface the background is plain or a smooth
   gradient, and the image is a graphic.
2. **Segment**: pixels within a tolerance of the background that are *connected to the border*
   are background. One flood fill over a one-pixel frame finds every border-connected region at
   once. Regions of the background colour enclosed by artwork are kept (white text inside a logo
   stays), unless they look like holes (a ring's centre): large, containing no other artwork,
   not most of the artwork, of exactly the background's colour, and called background by the
   segmentation model, which is run only when such a region exists (:func:`_hole_candidates`).
3. **Matte the edges**: in a thin band of artwork pixels next to the background, estimate the
   local foreground colour F from nearby solid artwork and solve p = a*F + (1-a)*B for the
   partial alpha a of anti-aliased pixels. The band is a thin curve, so these neighbourhood
   statistics are computed on the image tiles that hold band pixels only (:class:`_Tiles`).
4. **Decontaminate**: give band pixels the foreground colour instead of the background-tinted
   one, so no halo of the old background is left on a dark T-shirt.
5. **Check**: a real edge between artwork and background has contrast across the band. When a
   large share of the cut's edge has none, the background surface is wrong (a radial gradient's
   bright centre taken for artwork) and :attr:`GraphicCut.plausible` tells the caller to use the
   segmentation model instead.
6. **Soft shadows** (:func:`_soft_shadows`): smooth regions next to the background that are a
   darker shade of it (a drop shadow or glow, black at partial opacity over the background)
   become translucent black instead of opaque grey, and so does their steep rim next to the
   artwork (:func:`_shadow_rim`). On the evaluation set's graphics on a solid colour: IoU
   0.9767 -> 0.9803, alpha MAE 0.0055 -> 0.0046 (regions); -> 0.9830 / 0.0042 (rims); ->
   0.9849 / 0.0037 (a stricter second pass that splits a shadow from a light face).

Full-frame work is kept to a few 8-bit OpenCV passes (range test, flood fill, dilation), so a
12 MP graphic is keyed in well under a second on one core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from stolentee.removal.imaging.arrays import F32, U8, u8

HoleVote = Callable[[], U8 | None]  # a segmentation matte of the whole image, or no opinion

_BORDER_SAMPLES = 4096
_MIN_PLAIN_FRACTION = 0.88  # share of border pixels that must sit on the background surface
_MAX_NOISE = 14.0  # border noise (after the fit) above which the background is not "plain"
_FLAT_EDGE_CONTRAST = 0.5  # band pixels whose local contrast is under this x tolerance ...
_MAX_FLAT_EDGES = 0.1  # ... may make up this share of the band; more: the key is implausible
_MIN_HOLE_SHARE = 0.0005  # enclosed regions smaller than this share of the image are kept ...
_MIN_HOLE_PX = 64  # ... and so are those under this many pixels (letter counters)
_HOLE_MAX_DISTANCE = 1.0  # mean distance to the background of a hole, above the border noise
_HOLE_MAX_VOTE = 0.3  # an enclosed region is a hole when the model's mean alpha is below this
_HOLE_MAX_SHARE = 0.3  # ... and it is at most this share of the artwork (holes included)
_CHUNK_STACK_PX = 1 << 19  # band tiles are processed this many stacked pixels at a time
_SHADOW_MIN_BACKGROUND = 96  # no shadow search on darker backgrounds (brightest channel)
_SHADOW_MIN_CHANNEL = 40  # background channels darker than this do not measure the shade
_SHADOW_MIN_RATIO = 0.35  # a shadow darkens the background to at least this share of it
_SHADOW_TOLERANCE_SHARE = 0.6  # a shade: channels within this share of the key's tolerance
_SHADOW_MAX_SLOPE = 0.05  # most change of the shade per pixel, per 1,000 px of the long side
_SHADOW_MAX_SHARE = 0.3  # a shadow region is at most this share of the artwork
_SHADOW_DETECT_PX = 1024  # long side of the copy on which shadow regions are found
# Steepness limits of the shadow search, as shares of the one the slope gives: regions too
# large at one limit are searched again at the next (a shadow joined to a light face of the
# artwork by an edge too gentle for the first limit), keeping pieces of some body only.
_SHADOW_PASSES = (1.0, 0.5)
_SPLIT_MIN_BODY_PX = 5  # such a piece holds a 5x5 square (on the detection copy)
_NEIGHBOURS = np.array(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx], dtype=np.intp
)


@dataclass(frozen=True, slots=True)
class BorderAnalysis:
    """What the image border says about the background."""

    plain_fraction: float  # share of border pixels on the fitted background surface
    noise: float  # 90th percentile of |border - surface| (max over channels) on those pixels
    coefficients: F32  # (3, 6) quadratic surface per channel over normalised x, y
    is_gradient: bool  # the surface varies by more than a few levels across the image
    mean_color: tuple[int, int, int]

    @property
    def is_plain(self) -> bool:
        return self.plain_fraction >= _MIN_PLAIN_FRACTION and self.noise <= _MAX_NOISE

    @property
    def tolerance(self) -> float:
        """Distance to the background under which a pixel counts as background."""
        return float(np.clip(3.0 * self.noise + 10.0, 10.0, 48.0))


@dataclass(frozen=True, slots=True)
class GraphicCut:
    alpha: U8  # HxW, 0 background .. 255 artwork
    rgb: U8  # HxWx3, edge pixels decontaminated
    holes: int = 0  # enclosed regions made transparent on the segmentation model's word
    flat_edges: float = 0.0  # share of the artwork's edge with no contrast across it

    @property
    def plausible(self) -> bool:
        """False when much of the cut follows no visible edge: the background model is wrong
        (a radial gradient's bright centre kept as artwork, say) and a segmentation model
        should decide instead."""
        return self.flat_edges <= _MAX_FLAT_EDGES


def _design(xs: F32, ys: F32) -> F32:
    ones = np.ones_like(xs)
    return np.stack([ones, xs, ys, xs * xs, ys * ys, xs * ys], axis=1).astype(np.float32)


def _border_samples(rgb: U8) -> tuple[F32, F32, F32]:
    """Coordinates (normalised to 0..1) and colours of a two-pixel frame, evenly subsampled."""
    height, width = rgb.shape[:2]
    thickness = 2 if min(height, width) > 8 else 1
    ys_list, xs_list = [], []
    rows = np.arange(width)
    cols = np.arange(height)
    for t in range(thickness):
        ys_list += [np.full(width, t), np.full(width, height - 1 - t), cols, cols]
        xs_list += [rows, rows, np.full(height, t), np.full(height, width - 1 - t)]
    ys_all = np.concatenate(ys_list)
    xs_all = np.concatenate(xs_list)
    step = max(1, len(ys_all) // _BORDER_SAMPLES)
    ys_idx, xs_idx = ys_all[::step], xs_all[::step]
    colours = rgb[ys_idx, xs_idx].astype(np.float32)
    xs = (xs_idx / max(width - 1, 1)).astype(np.float32)
    ys = (ys_idx / max(height - 1, 1)).astype(np.float32)
    return xs, ys, colours


def _fit_surface(design: F32, colours: F32) -> F32:
    """Least-squares coefficients (3, 6) of ``colours ~ design @ coefficients.T``.

    Solved through the 6x6 normal equations in float64: the minimum-norm solution of those is
    the least-squares solution of the full system (``pinv(A'A) A' = pinv(A)``), also when the
    samples leave the surface underdetermined (inliers on one edge only). ``lstsq`` on the
    4096x6 system costs ~3 ms of CPU and, through the multi-threaded BLAS, up to several times
    that in wall time on a busy machine; this costs a few microseconds.
    """
    a = design.astype(np.float64)
    gram = a.T @ a
    moments = a.T @ colours.astype(np.float64)
    solution, *_ = np.linalg.lstsq(gram, moments, rcond=None)
    return cast(F32, solution.T.astype(np.float32))


def analyse_border(rgb: U8) -> BorderAnalysis:
    """Fit the background surface to the border, robustly (artwork may touch the border)."""
    xs, ys, colours = _border_samples(rgb)
    design = _design(xs, ys)
    inliers = np.ones(len(xs), dtype=bool)
    # Start from the median colour: artwork touching the border must not pull the first fit.
    median = np.median(colours, axis=0)
    inliers = np.max(np.abs(colours - median), axis=1) <= 24
    coefficients = np.zeros((3, 6), dtype=np.float32)
    coefficients[:, 0] = median
    for _ in range(3):
        if inliers.sum() < 12:
            break
        coefficients = _fit_surface(design[inliers], colours[inliers])
        residual = np.max(np.abs(design @ coefficients.T - colours), axis=1)
        inliers = residual <= 12
    residual = np.max(np.abs(design @ coefficients.T - colours), axis=1)
    on_surface = residual <= 16
    plain_fraction = float(on_surface.mean()) if len(on_surface) else 0.0
    noise = float(np.percentile(residual[on_surface], 90)) if on_surface.any() else 255.0
    corners = _design(
        np.array([0, 1, 0, 1, 0.5], dtype=np.float32), np.array([0, 0, 1, 1, 0.5], np.float32)
    )
    spread = float(np.ptp(corners @ coefficients.T, axis=0).max())
    mean = np.clip(corners @ coefficients.T, 0, 255).mean(axis=0)
    return BorderAnalysis(
        plain_fraction=plain_fraction,
        noise=noise,
        coefficients=coefficients,
        is_gradient=spread > 4.0,
        mean_color=(int(mean[0]), int(mean[1]), int(mean[2])),
    )


def background_image(analysis: BorderAnalysis, height: int, width: int) -> U8:
    """The fitted background at full size (HxWx3 uint8).

    A plain background is a read-only broadcast of one colour (no memory); a gradient is
    evaluated on a coarse grid and upscaled in 8 bits.
    """
    if not analysis.is_gradient:
        colour = np.array(analysis.mean_color, dtype=np.uint8)
        flat: U8 = np.broadcast_to(colour, (height, width, 3))
        return flat
    grid_h, grid_w = min(height, 64), min(width, 64)
    gy, gx = np.meshgrid(
        np.linspace(0, 1, grid_h, dtype=np.float32),
        np.linspace(0, 1, grid_w, dtype=np.float32),
        indexing="ij",
    )
    coarse = _design(gx.ravel(), gy.ravel()) @ analysis.coefficients.T
    coarse_img = np.clip(coarse + 0.5, 0, 255).astype(np.uint8).reshape(grid_h, grid_w, 3)
    return u8(cv2.resize(coarse_img, (width, height), interpolation=cv2.INTER_LINEAR))


def _near_background(rgb: U8, background: U8, analysis: BorderAnalysis, tolerance: int) -> U8:
    """255 where every channel is within ``tolerance`` of the background, else 0."""
    if not analysis.is_gradient:
        low = tuple(float(max(c - tolerance, 0)) for c in analysis.mean_color)
        high = tuple(float(min(c + tolerance, 255)) for c in analysis.mean_color)
        return u8(cv2.inRange(rgb, low, high))
    offset = np.array([tolerance, tolerance, tolerance, 0], dtype=np.float64)  # a cv2 scalar
    lower, upper = cv2.subtract(background, offset), cv2.add(background, offset)
    return u8(cv2.inRange(rgb, lower, upper))


def _border_connected(candidate: U8) -> U8:
    """255 on candidate pixels connected (4-neighbourhood) to the image border, else 0.

    A one-pixel frame of candidates around the image joins every border-touching region, so a
    single flood fill from a frame corner reaches all of them.
    """
    padded = cv2.copyMakeBorder(candidate, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8)  # write 255 into the mask, not the image
    cv2.floodFill(padded, mask, (0, 0), 0, loDiff=0, upDiff=0, flags=flags)
    return mask[2:-2, 2:-2]


def _has_islands(region: NDArray[np.bool_]) -> bool:
    """Whether ``region`` (a connected mask in its bounding box) surrounds other pixels."""
    outside = np.where(region, 0, 255).astype(np.uint8)
    padded = cv2.copyMakeBorder(outside, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
    reached, *_ = cv2.floodFill(padded, mask, (0, 0), 0, loDiff=0, upDiff=0, flags=flags)
    return int(reached) < cv2.countNonZero(padded)


_Hole = tuple[tuple[slice, slice], NDArray[np.bool_]]  # a window of the image, the region in it


def _hole_candidates(
    rgb: U8, background: U8, candidate: U8, is_bg: U8, noise: float
) -> list[_Hole]:
    """Large enclosed background-coloured regions that may be holes, to put to the model.

    Regions of the background colour that the border flood fill did not reach are either part
    of the artwork (white text inside a badge, a white face or body, a blank screen) or real
    holes (a ring's centre, the gap in a gear). A region is kept, without asking the model, when

    - it is small (under ``_MIN_HOLE_SHARE`` of the image or ``_MIN_HOLE_PX``): letter counters;
    - it surrounds other artwork (eyes in a face, buttons on a snowman, content on a screen);
    - it is a large part of the artwork (over ``_HOLE_MAX_SHARE``): a blank screen or sign;
    - its colour is not the background's to within the border noise plus
      ``_HOLE_MAX_DISTANCE`` on average: a white fill on an off-white background. The region
      includes its anti-aliased rim, so thin shapes (white letters) seldom pass this test.

    The remaining candidates are returned, for the segmentation model to decide.
    """
    height, width = is_bg.shape
    min_area = max(_MIN_HOLE_PX, _MIN_HOLE_SHARE * height * width)
    enclosed = u8(cv2.subtract(candidate, is_bg))
    if cv2.countNonZero(enclosed) < min_area:
        return []
    left, top, box_w, box_h = cv2.boundingRect(enclosed)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        enclosed[top : top + box_h, left : left + box_w], connectivity=4
    )
    holes: list[_Hole] = []
    artwork_area = height * width - cv2.countNonZero(is_bg)
    for label in range(1, count):
        area = int(stats[label, cv2.CC_STAT_AREA])
        if area < min_area or area > _HOLE_MAX_SHARE * artwork_area:
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        region = labels[y : y + h, x : x + w] == label
        if _has_islands(region):
            continue
        window = (slice(top + y, top + y + h), slice(left + x, left + x + w))
        shade = np.ascontiguousarray(background[window])  # a plain background is a broadcast
        distance = _channel_max(u8(cv2.absdiff(rgb[window], shade)))
        if float(distance[region].mean()) > noise + _HOLE_MAX_DISTANCE:
            continue
        holes.append((window, region))
    return holes


def _open_holes(holes: list[_Hole], is_bg: U8, vote: HoleVote) -> int:
    """Ask the segmentation model about the hole candidates: one whose mean model alpha is below
    ``_HOLE_MAX_VOTE`` becomes background (``is_bg`` is updated in place). Returns the number of
    regions opened (``vote`` may return None: no opinion, every region is kept)."""
    if not holes:
        return 0
    matte = vote()
    if matte is None:
        return 0
    height, width = is_bg.shape
    matte_h, matte_w = matte.shape[:2]
    opened = 0
    for window, region in holes:
        ys, xs = np.nonzero(region)  # sample the matte (any size) at the region's pixels
        ys = (ys + window[0].start) * matte_h // height
        xs = (xs + window[1].start) * matte_w // width
        if float(matte[ys, xs].mean()) < 255 * _HOLE_MAX_VOTE:
            is_bg[window][region] = 255
            opened += 1
    return opened


def band_width_px(height: int, width: int) -> int:
    """Width of the anti-aliasing band: about 2 px per 1,000 px of the long side, at least 2."""
    return max(2, round(max(height, width) / 500))


@dataclass(frozen=True, slots=True)
class _Tiles:
    """Square tiles of the image that hold band pixels, gathered with a margin into one stack.

    The band is a thin curve, so its neighbourhood statistics are computed on these tiles only
    (a few per cent of a large image) instead of on the whole frame. Tile ``i`` occupies rows
    ``i*side .. (i+1)*side`` of the stack. A band pixel's window (at most the margin wide)
    stays inside its own tile. Pixels outside the image are filled so that they count as
    neither solid artwork nor distant from the background (zero in both the image and the
    background, 255 in the near-background mask).
    """

    origins: NDArray[np.intp]  # (N, 2) image row, column of each tile's top-left margin corner
    side: int  # tile size plus both margins
    rows: NDArray[np.intp]  # stack row of each band pixel
    cols: NDArray[np.intp]  # stack column of each band pixel

    @classmethod
    def around(cls, ys: NDArray[np.intp], xs: NDArray[np.intp], tile: int, margin: int) -> _Tiles:
        columns = int(xs.max()) // tile + 1
        keys, index = np.unique((ys // tile) * columns + xs // tile, return_inverse=True)
        origins = np.stack([(keys // columns) * tile - margin, (keys % columns) * tile - margin], 1)
        side = tile + 2 * margin
        rows = index * side + (ys - origins[index, 0])
        cols = xs - origins[index, 1]
        return cls(origins=origins, side=side, rows=rows, cols=cols)

    def chunks(self, max_tiles: int) -> Iterator[tuple[_Tiles, NDArray[np.intp]]]:
        """These tiles in groups of at most ``max_tiles``, each with the indices (into this
        object's pixels) of the band pixels it holds."""
        count = len(self.origins)
        if count <= max_tiles:
            yield self, np.arange(len(self.rows), dtype=np.intp)
            return
        tile_of = self.rows // self.side
        order = np.argsort(tile_of, kind="stable")
        starts = np.arange(0, count, max_tiles)
        bounds = np.searchsorted(tile_of[order], np.append(starts, count))
        for number, first in enumerate(starts.tolist()):
            picked = order[bounds[number] : bounds[number + 1]]
            part = _Tiles(
                origins=self.origins[first : first + max_tiles],
                side=self.side,
                rows=self.rows[picked] - first * self.side,
                cols=self.cols[picked],
            )
            yield part, picked

    def gather(self, image: U8, outside: int = 0) -> U8:
        """The tiles of ``image`` (HxW or HxWxC) stacked vertically; ``outside`` beyond it."""
        height, width = image.shape[:2]
        side = self.side
        shape = (len(self.origins) * side, side, *image.shape[2:])
        stack = np.full(shape, outside, dtype=np.uint8)
        for number, (top, left) in enumerate(self.origins.tolist()):
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + side, height), min(left + side, width)
            row = number * side + y0 - top
            stack[row : row + y1 - y0, x0 - left : x1 - left] = image[y0:y1, x0:x1]
        return stack


def _channel_max(image: U8) -> U8:
    """The largest channel of an HxWx3 uint8 image (cv2 is ~20x faster than numpy here)."""
    first, second, third = cv2.split(image)
    return u8(cv2.max(cv2.max(first, second), third))


def colour_key(
    rgb: U8, analysis: BorderAnalysis, *, hole_vote: HoleVote | None = None
) -> GraphicCut:
    """Cut the artwork out of ``rgb`` (HxWx3 uint8) given its border analysis.

    ``hole_vote``, when given, is called at most once, and only when the artwork encloses
    regions that may be holes (see :func:`_open_holes`). It returns a segmentation matte of the
    whole image (2-D uint8, 255 = foreground) at the image's size or any other size covering the
    same frame, such as the model's own 320x320 (it is sampled where needed), or None for no opinion
    (no model installed): then every enclosed region is kept, as without a vote.

    Check :attr:`GraphicCut.plausible` before using the result.
    """
    height, width = rgb.shape[:2]
    background = background_image(analysis, height, width)
    tolerance = int(analysis.tolerance)
    candidate = _near_background(rgb, background, analysis, tolerance)
    is_bg = _border_connected(candidate)
    holes = 0
    if hole_vote is not None:
        found = _hole_candidates(rgb, background, candidate, is_bg, analysis.noise)
        if found:
            # The model runs now: hold no more full-size buffers than needed while it does (its
            # tensors are the largest allocation of the whole cut). A gradient is cheap to redo.
            del candidate
            if analysis.is_gradient:
                del background
            holes = _open_holes(found, is_bg, hole_vote)
            background = background_image(analysis, height, width)

    alpha = u8(cv2.bitwise_not(is_bg))
    out_rgb = rgb.copy()
    radius = band_width_px(height, width)
    kernel = u8(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    near_bg = u8(cv2.dilate(is_bg, kernel))  # background and the band; the rest is solid artwork
    points = cv2.findNonZero(cv2.subtract(near_bg, is_bg))
    if points is None:
        return GraphicCut(alpha=alpha, rgb=out_rgb, holes=holes)
    points = points.reshape(-1, 2)  # (x, y) pairs; the shape differs between OpenCV versions
    xs = points[:, 0].astype(np.intp)
    ys = points[:, 1].astype(np.intp)

    # Neighbourhood statistics on the tiles around the band only, a bounded number of tiles at
    # a time: every statistic is local to a band pixel's own tile, so the chunks give exactly
    # the whole-stack result while the float32 stacks stay small even when the band covers
    # most of the image (a starfield, halftone dots).
    half_window = 2 * radius + 1
    tiles = _Tiles.around(ys, xs, tile=max(32, 2 * half_window), margin=half_window)
    flat = 0
    for part, picked in tiles.chunks(max(1, _CHUNK_STACK_PX // (tiles.side * tiles.side))):
        flat += _matte_band(
            part,
            ys[picked],
            xs[picked],
            rgb,
            background,
            near_bg,
            kernel,
            tolerance,
            half_window,
            alpha,
            out_rgb,
        )
    flat_edges = flat / len(ys)
    _soft_shadows(rgb, is_bg, analysis, alpha, out_rgb)
    return GraphicCut(alpha=alpha, rgb=out_rgb, holes=holes, flat_edges=flat_edges)


class _Shade:
    """How a colour relates to a plain background B: the brightness ratio k (measured over the
    channels where B is not dark) and the distance from the shade k * B."""

    def __init__(self, background: tuple[int, int, int]) -> None:
        colour = np.array(background, dtype=np.float32)
        usable = (colour > _SHADOW_MIN_CHANNEL).astype(np.float32)
        self.to_ratio = (usable / max(float(colour @ usable), 1.0)).reshape(1, 3)
        self.to_shade = np.outer(colour, self.to_ratio).astype(np.float32)  # k * B, 3x3

    def frame(self, rgb: U8) -> tuple[U8, U8]:
        """k (as 0..255) and the distance to k * B of every pixel of an HxWx3 image, in 8-bit
        OpenCV passes (rounded: for finding regions; :meth:`pixels` is exact)."""
        ratio = u8(cv2.transform(rgb, self.to_ratio * 255.0))
        shade = u8(cv2.transform(rgb, self.to_shade))
        return ratio, _channel_max(u8(cv2.absdiff(rgb, shade)))

    def pixels(self, rgb: U8) -> tuple[F32, F32]:
        """The same for an Nx3 array of pixels."""
        pixels = rgb.astype(np.float32)
        ratio = (pixels @ self.to_ratio.T)[:, 0]
        off = np.abs(pixels - pixels @ self.to_shade.T).max(axis=1)
        return ratio, off


def _soft_shadows(rgb: U8, is_bg: U8, analysis: BorderAnalysis, alpha: U8, out_rgb: U8) -> int:
    """Turn soft drop shadows and glows on a plain background into translucent black
    (``alpha`` and ``out_rgb`` are updated in place); returns how many pixels were changed.

    A shadow of black at opacity a over the background B is the pixel (1 - a) * B: a darker
    shade of the background itself. The colour key keeps such pixels as opaque artwork once
    they differ from B by more than its tolerance. Here, regions that are (1) a shade of the
    background (every channel within a fraction of the tolerance of k * B, k >= 0.35),
    (2) smooth (no 3x3 window at full size changes faster than a soft shadow does, so an
    artwork's outline stops them), (3) connected to the border's background, and (4) each at
    most ``_SHADOW_MAX_SHARE`` of the artwork (a large light-grey shape is artwork, not
    shadow) get alpha 1 - k and colour black. A region too large at the first steepness limit
    is searched again at half of it (``_SHADOW_PASSES``): a shadow touching a light face of
    the artwork through an edge too gentle for the first limit comes apart from it there; of
    that pass only pieces with some body count (a light shape's soft edge falls apart into
    slivers). The regions are found on a copy of at most ~1,000 px on the long side, then each
    of their pixels is checked and matted at full size, and the shadow is grown into its rim
    (:func:`_shadow_rim`). Dark backgrounds (no room for a visible shadow) and gradients are
    left alone.
    """
    if analysis.is_gradient or max(analysis.mean_color) < _SHADOW_MIN_BACKGROUND:
        return 0
    full_height, full_width = is_bg.shape
    slope = _SHADOW_MAX_SLOPE * 1000.0 / max(full_height, full_width)  # of k, per pixel
    artwork = cv2.bitwise_not(is_bg)
    artwork_px = cv2.countNonZero(artwork)
    left, top, box_width, box_height = cv2.boundingRect(artwork)
    if not artwork_px:
        return 0
    # Work on the artwork's box plus one pixel of background where the image has it: what lies
    # outside is background connected to the border, which that pixel carries into the box.
    x0, y0 = max(left - 1, 0), max(top - 1, 0)
    x1, y1 = min(left + box_width + 1, full_width), min(top + box_height + 1, full_height)
    rgb, is_bg = rgb[y0:y1, x0:x1], is_bg[y0:y1, x0:x1]
    alpha, out_rgb = alpha[y0:y1, x0:x1], out_rgb[y0:y1, x0:x1]  # views: written through
    height, width = is_bg.shape
    factor = max(1, -(-max(height, width) // _SHADOW_DETECT_PX))
    size = (max(1, width // factor), max(1, height // factor))
    shade = _Shade(analysis.mean_color)
    # Steepness at full size: the brightness range of each 3x3 window, against the most a
    # shadow's shade may change over two pixels; any steep pixel marks its block.
    brightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rise = cv2.morphologyEx(brightness, cv2.MORPH_GRADIENT, np.ones((3, 3), dtype=np.uint8))
    limit = max(1.0, 2.0 * slope * float(np.mean(analysis.mean_color)))
    if factor > 1:
        small_rgb = u8(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
        small_is_bg = u8(cv2.resize(is_bg, size, interpolation=cv2.INTER_AREA))
    else:
        small_rgb, small_is_bg = rgb, is_bg
    ratio, off = shade.frame(small_rgb)
    shade_tolerance = _SHADOW_TOLERANCE_SHARE * analysis.tolerance
    # Each test as a 0/255 mask (8-bit OpenCV passes): not background, a shade (not steep:
    # per pass below).
    background = u8(cv2.threshold(small_is_bg, 127, 255, cv2.THRESH_BINARY)[1])
    shaded = cv2.threshold(off, shade_tolerance, 255, cv2.THRESH_BINARY_INV)[1]
    darker = cv2.inRange(ratio, round(_SHADOW_MIN_RATIO * 255), 254)
    allowed = u8(cv2.bitwise_and(cv2.bitwise_and(shaded, darker), cv2.bitwise_not(background)))
    found = np.zeros_like(allowed)
    for number, share in enumerate(_SHADOW_PASSES):
        steep = cv2.threshold(rise, max(1.0, share * limit), 255, cv2.THRESH_BINARY)[1]
        if factor > 1:
            steep = cv2.resize(steep, size, interpolation=cv2.INTER_AREA)
        flat = cv2.threshold(steep, 0, 255, cv2.THRESH_BINARY_INV)[1]
        candidate = u8(cv2.bitwise_and(allowed, flat))
        if not cv2.countNonZero(candidate):
            break
        # Candidates reached from the border through the background and other candidates.
        grown = _border_connected(u8(cv2.bitwise_or(candidate, background)))
        reached = u8(cv2.bitwise_and(grown, candidate))
        count, regions, stats, _ = cv2.connectedComponentsWithStats(reached, connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA] * factor * factor
        small_enough = areas <= _SHADOW_MAX_SHARE * artwork_px
        small_enough[0] = False
        too_large = ~small_enough
        too_large[0] = False
        if number:
            # A split pass also cuts a light shape's soft edge into thin slivers reached from
            # the background: only regions with some body are shadows.
            thick = np.zeros(count, dtype=bool)
            body = cv2.erode(reached, np.ones((_SPLIT_MIN_BODY_PX,) * 2, dtype=np.uint8))
            thick[np.unique(regions[body != 0])] = True
            small_enough &= thick
        found = u8(cv2.bitwise_or(found, np.where(small_enough, 255, 0).astype(np.uint8)[regions]))
        # The next, stricter pass looks again at the regions that were too large only.
        allowed = u8(np.where(too_large, 255, 0).astype(np.uint8)[regions])
        if not cv2.countNonZero(allowed):
            break
    if not cv2.countNonZero(found):
        return 0
    shadow = found
    if factor > 1:
        shadow = u8(cv2.resize(shadow, (width, height), interpolation=cv2.INTER_NEAREST))
    shadow[is_bg != 0] = 0
    points = cv2.findNonZero(shadow)
    if points is None:
        return 0
    points = points.reshape(-1, 2)
    xs, ys = points[:, 0].astype(np.intp), points[:, 1].astype(np.intp)
    ratio_px, off_px = shade.pixels(rgb[ys, xs])
    keep = (off_px <= shade_tolerance) & (ratio_px >= _SHADOW_MIN_RATIO) & (ratio_px < 1.0)
    ys, xs, ratio_px = ys[keep], xs[keep], ratio_px[keep]
    alpha[ys, xs] = np.round((1.0 - ratio_px) * 255).astype(np.uint8)
    out_rgb[ys, xs] = 0
    steps = 3 * band_width_px(full_height, full_width)
    rim = _shadow_rim(rgb, is_bg, shade, shade_tolerance, steps, ys, xs, ratio_px)
    for rim_ys, rim_xs, rim_ratio in rim:
        alpha[rim_ys, rim_xs] = np.round((1.0 - rim_ratio) * 255).astype(np.uint8)
        out_rgb[rim_ys, rim_xs] = 0
    return len(ys) + sum(len(part[0]) for part in rim)


def _shadow_rim(
    rgb: U8,
    is_bg: U8,
    shade: _Shade,
    shade_tolerance: float,
    steps: int,
    ys: NDArray[np.intp],
    xs: NDArray[np.intp],
    ratio_px: F32,
) -> list[tuple[NDArray[np.intp], NDArray[np.intp], F32]]:
    """The rim of the shadow ``ys, xs`` (brightness ratios ``ratio_px``): the pixels between
    it and the artwork that casts it, up to ``steps`` pixels deep, as (rows, columns, ratios)
    per step.

    A shadow is darkest, and changes fastest, right at the artwork's edge, so its last few
    pixels fail the steepness test and were kept as opaque grey artwork (a light ring around
    every icon with a soft drop shadow). A pixel joins the rim when it is a shade of the
    background, next to the shadow (or to the rim found so far) and strictly darker than its
    darkest such neighbour: the shadow keeps darkening towards the artwork. The growth stops
    where the artwork begins: a colour, a lighter pixel, or a flat grey (a grey outline loses
    at most its first, anti-aliased pixel). The work is confined to the shadow's bounding box
    plus ``steps``; pixels are visited a ring at a time, starting from the shadow's boundary.
    """
    if not len(ys):
        return []
    height, width = is_bg.shape
    top, left = max(int(ys.min()) - steps, 0), max(int(xs.min()) - steps, 0)
    bottom = min(int(ys.max()) + steps + 1, height)
    right = min(int(xs.max()) + steps + 1, width)
    box_height, box_width = bottom - top, right - left
    # Ratios of the shadow and rim so far in the box, padded by one pixel so that every
    # neighbour exists; 2.0 (no ratio reaches it) marks pixels that are neither.
    known = np.full((box_height + 2, box_width + 2), 2.0, dtype=np.float32)
    known[ys - top + 1, xs - left + 1] = ratio_px
    inside = u8(cv2.inRange(known, 0.0, 1.5))
    edge = cv2.findNonZero(cv2.subtract(inside, cv2.erode(inside, np.ones((3, 3), np.uint8))))
    if edge is None:
        return []
    edge = edge.reshape(-1, 2)
    front_ys, front_xs = edge[:, 1].astype(np.intp), edge[:, 0].astype(np.intp)  # padded coords
    found: list[tuple[NDArray[np.intp], NDArray[np.intp], F32]] = []
    for _ in range(steps):
        near_ys = (front_ys[:, None] + _NEIGHBOURS[:, 0]).ravel()
        near_xs = (front_xs[:, None] + _NEIGHBOURS[:, 1]).ravel()
        # Neither shadow nor rim yet, and inside the box (not its padding): most neighbours of
        # the front are already shadow, so this comes before the de-duplication.
        free = (known[near_ys, near_xs] > 1.5) & (near_ys >= 1) & (near_ys <= box_height)
        free &= (near_xs >= 1) & (near_xs <= box_width)
        index = np.unique(near_ys[free] * (box_width + 2) + near_xs[free])
        cand_ys, cand_xs = index // (box_width + 2), index % (box_width + 2)
        image_ys, image_xs = cand_ys - 1 + top, cand_xs - 1 + left
        artwork = is_bg[image_ys, image_xs] == 0
        cand_ys, cand_xs = cand_ys[artwork], cand_xs[artwork]
        image_ys, image_xs = image_ys[artwork], image_xs[artwork]
        if not len(cand_ys):
            break
        ratio, off = shade.pixels(rgb[image_ys, image_xs])
        darkest = known[
            cand_ys[:, None] + _NEIGHBOURS[:, 0], cand_xs[:, None] + _NEIGHBOURS[:, 1]
        ].min(axis=1)
        grow = (off <= shade_tolerance) & (ratio >= _SHADOW_MIN_RATIO) & (ratio < darkest)
        if not grow.any():
            break
        front_ys, front_xs, ratio = cand_ys[grow], cand_xs[grow], ratio[grow]
        known[front_ys, front_xs] = ratio
        found.append((image_ys[grow], image_xs[grow], ratio))
    return found


def _matte_band(
    tiles: _Tiles,
    ys: NDArray[np.intp],
    xs: NDArray[np.intp],
    rgb: U8,
    background: U8,
    near_bg: U8,
    kernel: U8,
    tolerance: int,
    half_window: int,
    alpha: U8,
    out_rgb: U8,
) -> int:
    """Partial alpha and decontaminated colour of the band pixels ``ys, xs`` (all inside
    ``tiles``), written into ``alpha`` and ``out_rgb``; returns how many of them have no
    contrast across the edge."""
    rgb_t = tiles.gather(rgb)
    bg_t = tiles.gather(background)
    solid_t = (tiles.gather(near_bg, outside=255) == 0).astype(np.float32)
    rows, cols = tiles.rows, tiles.cols

    distance_t = _channel_max(u8(cv2.absdiff(rgb_t, bg_t)))  # to the background, 0..255

    # Contrast across the band: along a real edge the distance to the background rises from
    # under the tolerance to well over it; a cut through a smooth shade of the background (a
    # background surface that does not fit) rises by almost nothing. Measured over the square
    # around the band's disc: OpenCV runs a square separably (a 12 MP graphic's key 10-20 %
    # faster), and no plausibility verdict on the evaluation set changed.
    square = np.ones_like(kernel)
    spread = u8(cv2.morphologyEx(distance_t, cv2.MORPH_GRADIENT, square))[rows, cols]
    flat = int(np.count_nonzero(spread < _FLAT_EDGE_CONTRAST * tolerance))

    # Foreground colour near each band pixel: mean colour of solid artwork in a window.
    window = (2 * half_window + 1, 2 * half_window + 1)
    weight = cv2.boxFilter(solid_t, -1, window, normalize=False)
    fg_sum = cv2.boxFilter(
        rgb_t.astype(np.float32) * solid_t[..., None], -1, window, normalize=False
    )
    w = weight[rows, cols]
    has_fg = w > 0.5
    fg = fg_sum[rows, cols] / np.maximum(w, 1e-6)[:, None]
    p = rgb[ys, xs].astype(np.float32)
    b = bg_t[rows, cols].astype(np.float32)

    # Partial alpha from p = a*F + (1-a)*B, by projection onto F - B.
    f_minus_b = fg - b
    norm2 = np.einsum("ij,ij->i", f_minus_b, f_minus_b)
    usable = has_fg & (np.sqrt(norm2) > tolerance)
    a = np.ones(len(ys), dtype=np.float32)
    a[usable] = np.einsum("ij,ij->i", p[usable] - b[usable], f_minus_b[usable]) / norm2[usable]
    # Thin strokes with no solid pixel nearby: compare with the farthest colour in the window.
    if not usable.all():
        local_max = cv2.dilate(distance_t, kernel)[rows, cols].astype(np.float32)
        d = distance_t[rows, cols].astype(np.float32)
        fallback = np.where(local_max > tolerance, d / np.maximum(local_max, 1.0), 1.0)
        a[~usable] = fallback[~usable]
    a = np.clip(a, 0.0, 1.0)
    alpha[ys, xs] = np.round(a * 255).astype(np.uint8)

    # Decontaminate: remove the background's share from edge pixels.
    recovered = b + (p - b) / np.maximum(a, 0.05)[:, None]
    colour = np.where(usable[:, None], fg, recovered)
    out_rgb[ys, xs] = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    return flat
