"""Matte quality metrics, in plain numpy.

Every function takes alpha mattes as arrays of the same height and width: ``uint8`` (0..255),
``bool``, or floating point on the 0..1 scale. Masks are the mattes binarised at ``alpha > 0.5``.

* :func:`iou`: intersection over union of the two masks (1.0 when both are empty).
* :func:`alpha_mae`: mean absolute difference of the mattes on the 0..1 scale.
* :func:`boundary_f`: the boundary F-measure of the DAVIS benchmark (Perazzi et al., 2016):
  precision and recall of the masks' boundary pixels, a boundary pixel counting as matched when
  the other mask has a boundary pixel within ``tolerance_px`` (Euclidean distance).
* :func:`agreement_iou`: the IoU of two predictions (ours against another tool's).
* :func:`edge_colour_error`: how a cutout looks at the subject's edges on a new background: the
  mean absolute difference (0..1) between the cutout and the true foreground, each composited over
  white and over black, in the *edge region* (pixels that either matte makes neither clearly
  background nor clearly subject, widened by 2 px). It catches what alpha metrics cannot: edges
  that carry the old background's colour.

A mask's boundary is its inner 4-connected contour: mask pixels with at least one 4-neighbour
outside the mask. The image edge is not a boundary (an object cut by the frame has no contour
there), so the image is padded by replicating its edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

from stolentee.bench.names import DEFAULT_TOLERANCE_PX

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float32]

DEFAULT_THRESHOLD = 0.5


def to_unit(alpha: NDArray[np.generic]) -> FloatArray:
    """The matte as float32 on the 0..1 scale."""
    if alpha.ndim != 2:
        raise ValueError(f"a matte must be a 2-D array; got shape {alpha.shape}")
    if alpha.dtype == np.bool_:
        return alpha.astype(np.float32)
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) * np.float32(1.0 / 255.0)
    if np.issubdtype(alpha.dtype, np.floating):
        unit = alpha.astype(np.float32)
        if unit.size and (float(unit.min()) < 0.0 or float(unit.max()) > 1.0):
            raise ValueError("a floating-point matte must lie in 0..1")
        return unit
    raise TypeError(f"unsupported matte dtype {alpha.dtype}; use uint8, bool or float")


def binarise(alpha: NDArray[np.generic], threshold: float = DEFAULT_THRESHOLD) -> BoolArray:
    """The mask ``alpha > threshold`` (on the 0..1 scale)."""
    unit = to_unit(alpha)
    if alpha.dtype == np.bool_:
        return unit > np.float32(0.5)
    return unit > np.float32(threshold)


def _check_shapes(a: NDArray[np.generic], b: NDArray[np.generic]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"mattes differ in shape: {a.shape} vs {b.shape}")


def mask_iou(a: BoolArray, b: BoolArray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    _check_shapes(a, b)
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


def iou(
    predicted: NDArray[np.generic],
    truth: NDArray[np.generic],
    threshold: float = DEFAULT_THRESHOLD,
) -> float:
    """IoU of ``predicted > threshold`` and ``truth > threshold``."""
    return mask_iou(binarise(predicted, threshold), binarise(truth, threshold))


def agreement_iou(
    first: NDArray[np.generic],
    second: NDArray[np.generic],
    threshold: float = DEFAULT_THRESHOLD,
) -> float:
    """How much two predictions agree: the IoU of their masks."""
    return iou(first, second, threshold)


def alpha_mae(predicted: NDArray[np.generic], truth: NDArray[np.generic]) -> float:
    """Mean absolute error of the mattes on the 0..1 scale."""
    _check_shapes(predicted, truth)
    if predicted.size == 0:
        return 0.0
    return float(np.mean(np.abs(to_unit(predicted) - to_unit(truth)), dtype=np.float64))


def boundary(mask: BoolArray) -> BoolArray:
    """Mask pixels with a 4-neighbour outside the mask (the image edge is not a boundary)."""
    padded = np.pad(mask, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


@cache
def _disk_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    return tuple(
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius
    )


def dilate(mask: BoolArray, radius: int) -> BoolArray:
    """Binary dilation by a Euclidean disk of ``radius`` pixels."""
    if radius < 0:
        raise ValueError("radius must be >= 0")
    if radius == 0:
        return mask.copy()
    height, width = mask.shape
    padded = np.pad(mask, radius, mode="constant", constant_values=False)
    out = np.zeros_like(mask)
    for dy, dx in _disk_offsets(radius):
        out |= padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
    return out


@dataclass(frozen=True, slots=True)
class BoundaryScore:
    precision: float
    recall: float
    f: float


def boundary_f_masks(
    predicted: BoolArray, truth: BoolArray, tolerance_px: int = DEFAULT_TOLERANCE_PX
) -> BoundaryScore:
    """Boundary precision, recall and F-measure of two boolean masks."""
    _check_shapes(predicted, truth)
    pred_b = boundary(predicted)
    true_b = boundary(truth)
    n_pred = int(np.count_nonzero(pred_b))
    n_true = int(np.count_nonzero(true_b))
    if n_pred == 0 and n_true == 0:
        return BoundaryScore(1.0, 1.0, 1.0)
    if n_pred == 0:
        return BoundaryScore(1.0, 0.0, 0.0)
    if n_true == 0:
        return BoundaryScore(0.0, 1.0, 0.0)
    precision = int(np.count_nonzero(pred_b & dilate(true_b, tolerance_px))) / n_pred
    recall = int(np.count_nonzero(true_b & dilate(pred_b, tolerance_px))) / n_true
    total = precision + recall
    f = 0.0 if total == 0 else 2 * precision * recall / total
    return BoundaryScore(precision, recall, f)


def boundary_f(
    predicted: NDArray[np.generic],
    truth: NDArray[np.generic],
    tolerance_px: int = DEFAULT_TOLERANCE_PX,
    threshold: float = DEFAULT_THRESHOLD,
) -> BoundaryScore:
    """Boundary F-measure of two mattes binarised at ``threshold``."""
    return boundary_f_masks(
        binarise(predicted, threshold), binarise(truth, threshold), tolerance_px
    )


@dataclass(frozen=True, slots=True)
class Scores:
    """All the quality metrics of one predicted matte against its ground truth."""

    iou: float
    mae: float
    boundary_f: float


def score(
    predicted: NDArray[np.generic],
    truth: NDArray[np.generic],
    tolerance_px: int = DEFAULT_TOLERANCE_PX,
    threshold: float = DEFAULT_THRESHOLD,
) -> Scores:
    """IoU, alpha MAE and boundary F of ``predicted`` against ``truth``."""
    _check_shapes(predicted, truth)
    pred_mask = binarise(predicted, threshold)
    true_mask = binarise(truth, threshold)
    return Scores(
        iou=mask_iou(pred_mask, true_mask),
        mae=alpha_mae(predicted, truth),
        boundary_f=boundary_f_masks(pred_mask, true_mask, tolerance_px).f,
    )


EDGE_REGION_BOUNDS = (0.02, 0.98)  # the edge region: not below the first or above the second


def edge_colour_error(
    rgb: NDArray[np.uint8],
    alpha: NDArray[np.generic],
    true_rgb: NDArray[np.uint8],
    truth: NDArray[np.generic],
) -> float:
    """The cutout (``rgb``, ``alpha``) against the true foreground (``true_rgb``, ``truth``), over
    white and black, in the edge region (module docstring); 0.0 when there is no edge region."""
    _check_shapes(alpha, truth)
    if rgb.shape != (*alpha.shape, 3) or true_rgb.shape != rgb.shape:
        raise ValueError(
            f"colours must be HxWx3 of the mattes' size; got {rgb.shape}, {true_rgb.shape}"
        )
    a, t = to_unit(alpha), to_unit(truth)
    low, high = EDGE_REGION_BOUNDS
    region = dilate(((a > low) | (t > low)) & ~((a > high) & (t > high)), 2)
    if not region.any():
        return 0.0
    a_r, t_r = a[region][:, np.newaxis], t[region][:, np.newaxis]
    ours = rgb[region].astype(np.float32) / 255 * a_r
    true = true_rgb[region].astype(np.float32) / 255 * t_r
    # Over black a composite is the premultiplied colour; over white it adds (1 - alpha).
    over_black = np.abs(ours - true)
    over_white = np.abs(ours + (1 - a_r) - true - (1 - t_r))
    return float((over_black.mean(dtype=np.float64) + over_white.mean(dtype=np.float64)) / 2)
