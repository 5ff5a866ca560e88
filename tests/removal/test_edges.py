"""Photo edges at full resolution: the guided refinement and the foreground colour estimate, on
synthetic images whose truth is known, and their wiring into the engine."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stolentee.removal.base import ImageKind, RemovalOptions
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.imaging import edges

from .conftest import photo_bytes

RED = np.array([220, 40, 30], np.float32)
BLUE = np.array([30, 60, 200], np.float32)


def _disc(size: int = 512, radius: int = 150) -> np.ndarray:
    """The true alpha of a disc, anti-aliased (supersampled 4x)."""
    big = np.zeros((size * 4, size * 4), np.uint8)
    cv2.circle(big, (size * 2, size * 2), radius * 4, 255, -1)
    return np.asarray(cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA), np.uint8)


def _blend(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255
    return np.clip(fg * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def _as_a_model_sees_it(alpha: np.ndarray, side: int = 64) -> np.ndarray:
    """The truth brought down to a model's resolution and back up: soft, blind to detail."""
    small = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, alpha.shape[::-1], interpolation=cv2.INTER_CUBIC))


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255)


def test_refinement_follows_the_image_edges() -> None:
    truth = _disc()
    image = _blend(truth, RED, BLUE)
    soft = _as_a_model_sees_it(truth)
    refined = edges.refine_matte(image, soft)
    # (A disc's edge is hard: near-opaque pixels left unsnapped cost it a little here.)
    assert _mae(refined, truth) < 0.6 * _mae(soft, truth)
    # Away from the edge band the matte is only snapped: faint residue to 0 or 1, the rest kept.
    band = edges.edge_band(soft, 3) > 0
    snapped = np.where(soft <= 5, 0, np.where(soft >= 250, 255, soft))
    assert np.array_equal(refined[~band], snapped[~band])
    assert ((soft[~band] > 0) & (soft[~band] <= 5)).any()  # there was residue to snap


def _block_means(image: np.ndarray, block: int = 4) -> np.ndarray:
    """The mean of each whole ``block`` x ``block`` block (rows and columns left over dropped),
    rounded as OpenCV's area filter rounds."""
    height, width = max(1, image.shape[0] // block), max(1, image.shape[1] // block)
    whole = image[: height * block, : width * block]
    return np.asarray(cv2.resize(whole, (width, height), interpolation=cv2.INTER_AREA))


def _upsampled(values: np.ndarray, shape: tuple[int, int], block: int = 4) -> np.ndarray:
    """Grid ``values`` bilinearly interpolated at every pixel of an image of ``shape`` (cell
    centres at the blocks' centres, edges clamped)."""
    ys, xs = np.indices(shape, dtype=np.float32)
    map_y, map_x = (ys + 0.5) / block - 0.5, (xs + 0.5) / block - 0.5
    sampled = cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(sampled, np.float32)


def _dense_foreground(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The blur-fusion estimate computed the plain way: both passes over the whole image."""
    unit = np.float32(1 / 255)
    small = _block_means(rgb).astype(np.float32) * unit
    small_alpha = _block_means(alpha).astype(np.float32) * unit
    wide = max(1, round(45 * max(rgb.shape[:2]) / 1024) // 4)
    fg, bg = edges._fusion_pass(small, small, small, small_alpha, wide)
    fg_full, bg_full = _upsampled(fg, alpha.shape), _upsampled(bg, alpha.shape)
    narrow = max(1, round(3 * max(rgb.shape[:2]) / 1024))
    image, matte = rgb.astype(np.float32) * unit, alpha.astype(np.float32) * unit
    estimate, _ = edges._fusion_pass(image, fg_full, bg_full, matte, narrow)
    out = rgb.copy()
    partial = (alpha > 0) & (alpha < 255)
    out[partial] = np.clip(estimate * 255 + 0.5, 0, 255).astype(np.uint8)[partial]
    return out


@pytest.mark.parametrize("shape", [(512, 512), (333, 777), (1100, 45), (6, 90)])
def test_tiled_foreground_estimate_matches_the_dense_one(shape: tuple[int, int]) -> None:
    """Only the tiles holding semi-transparent pixels are worked on, with reflected margins at
    the image's border: the same colours as the whole-image computation."""
    height, width = shape
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    truth = np.zeros((height, width), np.uint8)
    cv2.ellipse(truth, (width // 2, height // 2), (width // 2, height // 3), 20, 0, 360, 255, -1)
    soft = cv2.GaussianBlur(truth, (0, 0), 2)  # partial pixels along the outline and borders
    assert ((soft > 0) & (soft < 255)).mean() < 0.5
    expected = _dense_foreground(image, soft)
    got = edges.estimate_foreground(image, soft)
    assert np.abs(got.astype(int) - expected).max() <= 2


@pytest.mark.parametrize("shape", [(70, 90), (6, 90), (45, 1100)])
def test_tile_margins_reflect_at_the_image_border(shape: tuple[int, int]) -> None:
    """Semi-transparent everywhere, over noise: every tile's margin reaches past the border
    somewhere, and only a reflected margin gives the whole-image colours."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    soft = rng.integers(1, 255, shape, dtype=np.uint8)
    expected = _dense_foreground(image, soft)
    got = edges.estimate_foreground(image, soft)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_threads_share_the_tiles_for_the_same_colours() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (640, 600, 3), dtype=np.uint8)
    soft = rng.integers(1, 255, (640, 600), dtype=np.uint8)
    tiles = edges._Tiles(np.asarray(cv2.inRange(soft, 1, 254)), 2)
    assert [len(part.ys) for part in tiles.split(3)] == [127, 126, 127]  # 380 tiles
    alone = edges.estimate_foreground(image, soft)
    assert np.array_equal(edges.estimate_foreground(image, soft, threads=3), alone)
    assert not np.array_equal(alone, image)


def test_both_steps_together_give_what_each_gives_alone() -> None:
    """``photo_edges`` shares the photo at the grid size between the two steps: the same alpha
    and colours as the steps run one after the other, each resizing the photo itself."""
    truth = _disc()
    image = _blend(truth, RED, BLUE)
    soft = _as_a_model_sees_it(truth)
    refined, colours = edges.photo_edges(image, soft)
    alone = edges.refine_matte(image, soft)
    assert np.array_equal(refined, alone)
    assert np.array_equal(colours, edges.estimate_foreground(image, alone))
    assert not np.array_equal(refined, soft) and not np.array_equal(colours, image)
    # Outside the band the faint residue is snapped: only 0, 255 and the band's values remain.
    band = edges.edge_band(soft, 3) > 0
    assert set(np.unique(refined[~band])) <= {0, 255}


@pytest.mark.parametrize(
    ("level", "expected"),
    [(13, 0), (30, 30), (242, 242), (247, 247)],
)
def test_refinement_snaps_haze_to_0_and_keeps_near_opaque_edges(level: int, expected: int) -> None:
    """On a flat photo the guided filter returns the matte's local mean: a uniform matte stays
    itself unless it is within the snap of 0 (0.1) or 1 (0.02). A 0.95 edge stays 0.95 (it was
    snapped to 1 before, which showed the estimated colour at full strength)."""
    image = np.full((64, 64, 3), 128, np.uint8)
    matte = np.full((64, 64), level, np.uint8)
    refined = edges.refine_matte(image, matte)
    assert np.abs(refined.astype(int) - expected).max() <= 1


def test_refinement_of_a_certain_matte_is_a_no_op() -> None:
    truth = (_disc() > 127).astype(np.uint8) * 255
    image = _blend(truth, RED, BLUE)
    assert edges.refine_matte(image, truth) is truth


def test_foreground_colour_loses_the_background() -> None:
    truth = _disc()
    image = _blend(truth, RED, BLUE)
    estimated = edges.estimate_foreground(image, truth)
    partial = (truth > 25) & (truth < 230)
    assert partial.sum() > 500
    before = np.abs(image[partial].astype(np.float32) - RED).mean()
    after = np.abs(estimated[partial].astype(np.float32) - RED).mean()
    assert after < 0.25 * before
    # Opaque and fully transparent pixels keep their colours.
    certain = (truth == 0) | (truth == 255)
    assert np.array_equal(estimated[certain], image[certain])


def test_foreground_estimate_without_partial_pixels_is_a_no_op() -> None:
    truth = (_disc() > 127).astype(np.uint8) * 255
    image = _blend(truth, RED, BLUE)
    assert edges.estimate_foreground(image, truth) is image


@pytest.mark.parametrize("size", [(1, 1), (3, 700), (700, 2)])
def test_tiny_and_thin_images(size: tuple[int, int]) -> None:
    height, width = size
    image = np.full((height, width, 3), 128, np.uint8)
    alpha = np.full((height, width), 128, np.uint8)
    assert edges.refine_matte(image, alpha).shape == alpha.shape
    assert edges.estimate_foreground(image, alpha).shape == image.shape


def test_engine_refines_photos_only_when_configured(engine: RemovalEngine) -> None:
    data = photo_bytes("chelsea.png")
    plain_engine = RemovalEngine(
        settings=engine.settings.model_copy(update={"refine_edges": False})
    )
    try:
        refined, kind = engine.matte(data, ImageKind.PHOTO)
        plain, _ = plain_engine.matte(data, ImageKind.PHOTO)
        assert kind is ImageKind.PHOTO
        assert not np.array_equal(refined, plain)
        # The refinement works in the edge band: the confident interior is only made opaque.
        interior = cv2.erode((plain >= 250).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        assert interior.sum() > 5_000
        assert (refined[interior] == 255).all()
        assert (plain[interior] < 255).any()
        # And the cutout's edge colours change with the estimate (alpha-only output does not).
        on = engine.remove(data, RemovalOptions(kind=ImageKind.PHOTO)).data
        off = plain_engine.remove(data, RemovalOptions(kind=ImageKind.PHOTO)).data
        assert on != off
    finally:
        plain_engine.close()
