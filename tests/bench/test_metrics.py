"""Quality metrics on hand-made masks whose values are worked out by hand in each test."""

from __future__ import annotations

import numpy as np
import pytest

from stolentee.bench import metrics


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[top : top + side, left : left + side] = 255
    return mask


def test_iou_of_overlapping_squares() -> None:
    # Two 4x4 squares, the second shifted right by 2: overlap 4x2 = 8, union 16 + 16 - 8 = 24.
    truth = square(10, 0, 0, 4)
    predicted = square(10, 0, 2, 4)
    assert metrics.iou(predicted, truth) == pytest.approx(8 / 24)


def test_iou_identical_disjoint_and_empty() -> None:
    truth = square(10, 2, 2, 3)
    assert metrics.iou(truth, truth) == 1.0
    assert metrics.iou(square(10, 0, 0, 2), square(10, 5, 5, 2)) == 0.0
    empty = np.zeros((10, 10), dtype=np.uint8)
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.iou(empty, truth) == 0.0


def test_threshold_is_strictly_above_half() -> None:
    # 128/255 = 0.502 is inside the mask, 127/255 = 0.498 is not.
    inside = np.full((2, 2), 128, dtype=np.uint8)
    outside = np.full((2, 2), 127, dtype=np.uint8)
    full = np.full((2, 2), 255, dtype=np.uint8)
    assert metrics.iou(inside, full) == 1.0
    assert metrics.iou(outside, full) == 0.0
    assert metrics.binarise(np.array([[0.5, 0.51]], dtype=np.float32)).tolist() == [[False, True]]


def test_alpha_mae_on_unit_scale() -> None:
    truth = np.zeros((10, 10), dtype=np.uint8)
    truth[0, :] = 255  # 10 of 100 pixels fully opaque
    predicted = np.zeros((10, 10), dtype=np.uint8)
    assert metrics.alpha_mae(predicted, truth) == pytest.approx(0.1)
    # Half-transparent everywhere against opaque everywhere: 127/255 off on every pixel.
    half = np.full((4, 4), 128, dtype=np.uint8)
    assert metrics.alpha_mae(half, np.full((4, 4), 255, dtype=np.uint8)) == pytest.approx(127 / 255)
    # Float and uint8 mattes mix.
    assert metrics.alpha_mae(np.full((4, 4), 0.25, dtype=np.float32), half) == pytest.approx(
        abs(0.25 - 128 / 255), abs=1e-6
    )


def test_boundary_is_the_inner_contour_not_the_image_edge() -> None:
    mask = square(30, 10, 10, 10) > 0
    # The perimeter of a 10x10 square: 4 * 10 - 4 = 36 pixels.
    assert int(metrics.boundary(mask).sum()) == 36
    full = np.ones((8, 8), dtype=bool)
    assert not metrics.boundary(full).any()
    # A square in the corner has contour only on its two inner sides: 5 + 5 - 1 = 9 pixels.
    corner = square(20, 0, 0, 5) > 0
    assert int(metrics.boundary(corner).sum()) == 9


def test_dilate_by_disk_of_radius_two() -> None:
    point = np.zeros((7, 7), dtype=bool)
    point[3, 3] = True
    grown = metrics.dilate(point, 2)
    # A Euclidean disk of radius 2 holds 13 pixels: (±1, ±2) is sqrt(5) > 2 away.
    assert int(grown.sum()) == 13
    assert grown[3, 1] and grown[1, 3] and grown[2, 2]
    assert not grown[2, 1] and not grown[1, 1]


def test_boundary_f_with_a_shift_within_tolerance_is_perfect() -> None:
    truth = square(30, 10, 10, 10)
    shifted = square(30, 10, 11, 10)
    score = metrics.boundary_f(shifted, truth, tolerance_px=2)
    assert (score.precision, score.recall, score.f) == (1.0, 1.0, 1.0)
    # With no tolerance only the shared top and bottom rows match (9 of 10 pixels on each)
    # plus nothing on the sides: 18 of 36 boundary pixels.
    strict = metrics.boundary_f(shifted, truth, tolerance_px=0)
    assert strict.precision == pytest.approx(18 / 36)


def test_boundary_f_with_a_shift_beyond_tolerance() -> None:
    # Truth: rows and columns 10..19. Prediction: same rows, columns 15..24. Of the prediction's
    # 36 boundary pixels, within 2 px of the truth's contour: its left side at rows 10-12 and
    # 17-19 (6), its top row at columns 16-21 (6), its bottom row likewise (6), its right side
    # (5 px away) none: 18 of 36. By symmetry recall is also 1/2, so F = 1/2.
    truth = square(30, 10, 10, 10)
    predicted = square(30, 10, 15, 10)
    score = metrics.boundary_f(predicted, truth, tolerance_px=2)
    assert score.precision == pytest.approx(0.5)
    assert score.recall == pytest.approx(0.5)
    assert score.f == pytest.approx(0.5)


def test_boundary_f_precision_and_recall_differ_for_a_spurious_blob() -> None:
    # The prediction has the true square (36 boundary px) plus a far-away 3x3 blob (8 boundary
    # px): precision 36/44, recall 1, F = 2 * (36/44) / (36/44 + 1) = 72/80.
    truth = square(40, 5, 5, 10)
    predicted = truth.copy()
    predicted[30:33, 30:33] = 255
    score = metrics.boundary_f(predicted, truth, tolerance_px=2)
    assert score.precision == pytest.approx(36 / 44)
    assert score.recall == 1.0
    assert score.f == pytest.approx(72 / 80)


def test_boundary_f_empty_cases() -> None:
    empty = np.zeros((10, 10), dtype=np.uint8)
    some = square(10, 2, 2, 4)
    assert metrics.boundary_f(empty, empty).f == 1.0
    missed = metrics.boundary_f(empty, some)
    assert (missed.precision, missed.recall, missed.f) == (1.0, 0.0, 0.0)
    spurious = metrics.boundary_f(some, empty)
    assert (spurious.precision, spurious.recall, spurious.f) == (0.0, 1.0, 0.0)


def test_score_combines_the_metrics() -> None:
    truth = square(10, 0, 0, 4)
    predicted = square(10, 0, 2, 4)
    scores = metrics.score(predicted, truth, tolerance_px=2)
    assert scores.iou == pytest.approx(8 / 24)
    # 16 pixels differ by 1.0 each (8 only in the truth, 8 only in the prediction).
    assert scores.mae == pytest.approx(16 / 100)
    assert scores.boundary_f == metrics.boundary_f(predicted, truth, tolerance_px=2).f


def test_agreement_iou_is_symmetric() -> None:
    a = square(12, 1, 1, 6)
    b = square(12, 3, 3, 6)
    # Overlap 4x4 = 16, union 36 + 36 - 16 = 56.
    assert metrics.agreement_iou(a, b) == pytest.approx(16 / 56)
    assert metrics.agreement_iou(b, a) == metrics.agreement_iou(a, b)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(np.zeros((3, 3), dtype=np.uint8), np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        metrics.to_unit(np.zeros((3, 3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        metrics.to_unit(np.full((2, 2), 2.0))
    with pytest.raises(TypeError):
        metrics.to_unit(np.zeros((2, 2), dtype=np.int64))


def test_edge_colour_error_sees_the_old_background() -> None:
    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = 255
    truth[10:30, 9] = truth[10:30, 30] = 128  # a soft edge, left and right
    red = np.zeros((40, 40, 3), np.uint8)
    red[...] = (220, 30, 30)
    assert metrics.edge_colour_error(red, truth, red, truth) == pytest.approx(0.0, abs=1e-7)
    blended = red.copy()
    blended[truth == 128] = (125, 45, 115)  # red half over blue: the old background mixed in
    carried = metrics.edge_colour_error(blended, truth, red, truth)
    assert carried > 0.0
    hard = np.where(truth == 128, 0, truth).astype(np.uint8)  # the soft edge cut away
    assert metrics.edge_colour_error(red, hard, red, truth) > 0.0
    empty = np.zeros((40, 40), np.uint8)
    assert metrics.edge_colour_error(red, empty, red, empty) == 0.0
    with pytest.raises(ValueError, match="HxWx3"):
        metrics.edge_colour_error(red[:, :20], truth, red, truth)
