"""Graphic-aware cutouts: artwork on a plain (or smoothly shaded) background, cut by colour key.

Most T-shirt uploads are logos and clip-art on a plain background. For those a segmentation
model is both slower and worse than keying out the background colour:

1. **Detect** (:func:`analyse_border`): fit a smooth surface (constant, linear or quadratic in x
   and y, per channel) to the pixels of the image border, ignoring the artwork that touches the
   border. When nearly all border pixels sit on that surface the background is plain or a smooth
   gradient, and the image is a graphic.
2. **Segment**: pixels within a tolerance of the background that are *connected to the border*
   are background. Regions of the background colour enclosed by artwork are kept (white text
   inside a logo stays). One flood fill over a one-pixel frame finds every border-connected
   region at once.
3. **Matte the edges**: in a thin band of artwork pixels next to the background, estimate the
   local foreground colour F from nearby solid artwork and solve p = a*F + (1-a)*B for the
   partial alpha a of anti-aliased pixels.
4. **Decontaminate**: give band pixels the foreground colour instead of the background-tinted
   one, so no halo of the old background is left on a dark T-shirt.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

U8 = NDArray[np.uint8]
F32 = NDArray[np.float32]

_BORDER_SAMPLES = 4096
_MIN_PLAIN_FRACTION = 0.88  # share of border pixels that must sit on the background surface
_MAX_NOISE = 14.0  # border noise (after the fit) above which the background is not "plain"


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
        solution, *_ = np.linalg.lstsq(design[inliers], colours[inliers], rcond=None)
        coefficients = solution.T.astype(np.float32)
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
    """The fitted background at full size (HxWx3), computed on a coarse grid and upscaled."""
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
    coarse_img = np.clip(coarse, 0, 255).reshape(grid_h, grid_w, 3).astype(np.float32)
    full = cv2.resize(coarse_img, (width, height), interpolation=cv2.INTER_LINEAR)
    shaded: U8 = np.clip(full + 0.5, 0, 255).astype(np.uint8)
    return shaded


def _distance(rgb: U8, background: U8) -> U8:
    """Per-pixel distance to the background: the largest channel difference (0..255)."""
    diff = cv2.absdiff(rgb, np.ascontiguousarray(background))
    distance: U8 = np.max(diff, axis=2)
    return distance


def _border_connected(candidate: U8) -> NDArray[np.bool_]:
    """Candidate pixels connected (4-neighbourhood) to the image border.

    A one-pixel frame of candidates around the image joins every border-touching region, so a
    single flood fill from a frame corner reaches all of them.
    """
    padded = cv2.copyMakeBorder(candidate, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    cv2.floodFill(padded, mask, (0, 0), 128, loDiff=0, upDiff=0, flags=4)
    connected: NDArray[np.bool_] = padded[1:-1, 1:-1] == 128
    return connected


def band_width_px(height: int, width: int) -> int:
    """Width of the anti-aliasing band: about 2 px per 1,000 px of the long side, at least 2."""
    return max(2, round(max(height, width) / 500))


def colour_key(rgb: U8, analysis: BorderAnalysis) -> GraphicCut:
    """Cut the artwork out of ``rgb`` (HxWx3 uint8) given its border analysis."""
    height, width = rgb.shape[:2]
    background = background_image(analysis, height, width)
    distance = _distance(rgb, background)
    tolerance = analysis.tolerance
    candidate = np.where(distance <= tolerance, 255, 0).astype(np.uint8)
    is_bg = _border_connected(candidate)

    radius = band_width_px(height, width)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    bg_u8 = is_bg.astype(np.uint8)
    band = (cv2.dilate(bg_u8, kernel) > 0) & ~is_bg
    alpha = np.where(is_bg, 0, 255).astype(np.uint8)
    out_rgb = rgb.copy()
    if not band.any():
        return GraphicCut(alpha=alpha, rgb=out_rgb)

    # Foreground colour near each band pixel: mean colour of solid artwork in a window.
    solid = (~is_bg & ~band).astype(np.float32)
    window = (4 * radius + 3, 4 * radius + 3)
    weight = cv2.boxFilter(solid, -1, window, normalize=False)
    ys, xs = np.nonzero(band)
    fg_sum = cv2.boxFilter(rgb.astype(np.float32) * solid[..., None], -1, window, normalize=False)
    w = weight[ys, xs]
    has_fg = w > 0.5
    fg = fg_sum[ys, xs] / np.maximum(w, 1e-6)[:, None]
    p = rgb[ys, xs].astype(np.float32)
    b = background[ys, xs].astype(np.float32)

    # Partial alpha from p = a*F + (1-a)*B, by projection onto F - B.
    f_minus_b = fg - b
    norm2 = np.einsum("ij,ij->i", f_minus_b, f_minus_b)
    usable = has_fg & (np.sqrt(norm2) > tolerance)
    a = np.ones(len(ys), dtype=np.float32)
    a[usable] = np.einsum("ij,ij->i", p[usable] - b[usable], f_minus_b[usable]) / norm2[usable]
    # Thin strokes with no solid pixel nearby: compare with the farthest colour in the window.
    if (~usable).any():
        local_max = cv2.dilate(distance, kernel).astype(np.float32)
        d = distance[ys, xs].astype(np.float32)
        fallback = d / np.maximum(local_max[ys, xs], 1.0)
        a[~usable] = np.where(local_max[ys, xs][~usable] > tolerance, fallback[~usable], 1.0)
    a = np.clip(a, 0.0, 1.0)
    alpha[ys, xs] = np.round(a * 255).astype(np.uint8)

    # Decontaminate: remove the background's share from edge pixels.
    recovered = b + (p - b) / np.maximum(a, 0.05)[:, None]
    colour = np.where(usable[:, None], fg, recovered)
    out_rgb[ys, xs] = np.clip(colour + 0.5, 0, 255).astype(np.uint8)
    return GraphicCut(alpha=alpha, rgb=out_rgb)
