"""The background as the border of an image shows it: the colours sampled along the edge, the
smooth surface fitted to them, and whether it is plain enough to key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from stolentee.removal.imaging.arrays import F32, U8, u8

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
    samples leave the surface underdetermined (inliers on one edge only). ``lstsq`` on the full
    system costs milliseconds (more on a busy machine, through the multi-threaded BLAS); this
    costs microseconds (benchmarks/decisions.md, "small image operations").
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


def border_connected(candidate: U8) -> U8:
    """255 on candidate pixels connected (4-neighbourhood) to the image border, else 0.

    A one-pixel frame of candidates around the image joins every border-touching region, so a
    single flood fill from a frame corner reaches all of them.
    """
    padded = cv2.copyMakeBorder(candidate, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8)  # write 255 into the mask, not the image
    cv2.floodFill(padded, mask, (0, 0), 0, loDiff=0, upDiff=0, flags=flags)
    return mask[2:-2, 2:-2]


def band_width_px(height: int, width: int) -> int:
    """Width of the anti-aliasing band: about 2 px per 1,000 px of the long side, at least 2."""
    return max(2, round(max(height, width) / 500))


def channel_max(image: U8) -> U8:
    """The largest channel of an HxWx3 uint8 image (cv2: far faster than numpy's ``max(axis)``)."""
    first, second, third = cv2.split(image)
    return u8(cv2.max(cv2.max(first, second), third))
