"""Soft drop shadows and glows on a plain background: found on a reduced copy, they become
translucent black instead of opaque grey."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from stolentee.removal.imaging.arrays import F32, U8, u8
from stolentee.removal.imaging.border import (
    BorderAnalysis,
    band_width_px,
    border_connected,
    channel_max,
)

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
        return ratio, channel_max(u8(cv2.absdiff(rgb, shade)))

    def pixels(self, rgb: U8) -> tuple[F32, F32]:
        """The same for an Nx3 array of pixels."""
        pixels = rgb.astype(np.float32)
        ratio = (pixels @ self.to_ratio.T)[:, 0]
        off = np.abs(pixels - pixels @ self.to_shade.T).max(axis=1)
        return ratio, off


def soft_shadows(rgb: U8, is_bg: U8, analysis: BorderAnalysis, alpha: U8, out_rgb: U8) -> int:
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
        grown = border_connected(u8(cv2.bitwise_or(candidate, background)))
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
