"""The engine end to end with the real u2netp model, compared with rembg on the same model."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stolentee.config import EngineSettings
from stolentee.removal.base import (
    ImageKind,
    OutputFormat,
    OutputSize,
    RemovalOptions,
)
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.models import ModelNotInstalledError

from .conftest import PHOTOS, composite, draw_logo, encode, iou, photo_bytes


@pytest.fixture(scope="module")
def rembg_session() -> object:
    rembg = pytest.importorskip("rembg")
    return rembg.new_session("u2netp")


def rembg_alpha(data: bytes, session: object) -> np.ndarray:
    from rembg import remove

    output = remove(data, session=session)
    return np.asarray(Image.open(io.BytesIO(output)).getchannel("A"))


@pytest.fixture(scope="module")
def unrefined(engine: RemovalEngine) -> Iterator[RemovalEngine]:
    plain = RemovalEngine(settings=engine.settings.model_copy(update={"refine_edges": False}))
    yield plain
    plain.close()


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_masks_agree_with_rembg(
    engine: RemovalEngine, unrefined: RemovalEngine, rembg_session: object, name: str
) -> None:
    """The model's own matte is rembg's (same file); the edge refinement moves only edges."""
    data = photo_bytes(name)
    peer = rembg_alpha(data, rembg_session)
    plain, kind = unrefined.matte(data)
    assert kind is ImageKind.PHOTO
    assert iou(plain, peer) >= 0.98
    refined, _ = engine.matte(data)
    assert iou(refined, peer) >= 0.95


def test_auto_routes_logos_to_the_colour_key(engine: RemovalEngine) -> None:
    logo = draw_logo()
    result = engine.remove(encode(composite(logo, (255, 255, 255))))
    assert result.kind is ImageKind.GRAPHIC and result.method == "colour-key"
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
    assert iou(alpha, np.asarray(logo.getchannel("A"))) >= 0.99


def test_photo_type_forces_the_model(engine: RemovalEngine) -> None:
    result = engine.remove(
        encode(composite(draw_logo(), (255, 255, 255))), RemovalOptions(kind=ImageKind.PHOTO)
    )
    assert result.method == "model:u2netp"


def test_already_transparent_input_keeps_its_alpha(engine: RemovalEngine) -> None:
    logo = draw_logo()
    result = engine.remove(encode(logo))
    assert result.method == "input-alpha"
    alpha = np.asarray(Image.open(io.BytesIO(result.data)).getchannel("A"))
    assert np.array_equal(alpha, np.asarray(logo.getchannel("A")))


def test_png_output_is_full_size_rgba(engine: RemovalEngine) -> None:
    data = photo_bytes("chelsea.png")
    result = engine.remove(data)
    image = Image.open(io.BytesIO(result.data))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == Image.open(io.BytesIO(data)).size == (result.width, result.height)
    assert result.content_type == "image/png"
    assert result.foreground is not None


def test_alpha_only_output(engine: RemovalEngine) -> None:
    result = engine.remove(photo_bytes("coffee.png"), RemovalOptions(alpha_only=True))
    assert Image.open(io.BytesIO(result.data)).mode == "L"


def test_background_colour_fills_transparency(engine: RemovalEngine) -> None:
    options = RemovalOptions(bg_color=(0, 128, 255, 255))
    result = engine.remove(encode(composite(draw_logo(), (255, 255, 255))), options)
    image = Image.open(io.BytesIO(result.data))
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (0, 128, 255)


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [(OutputFormat.JPG, "JPEG"), (OutputFormat.WEBP, "WEBP")]
)
def test_other_formats(engine: RemovalEngine, fmt: OutputFormat, pil_format: str) -> None:
    result = engine.remove(photo_bytes("coffee.png"), RemovalOptions(format=fmt))
    assert Image.open(io.BytesIO(result.data)).format == pil_format


def test_crop_trims_to_the_subject_with_margin(engine: RemovalEngine) -> None:
    art = Image.new("RGBA", (400, 300), (0, 0, 0, 0))
    art.paste((200, 0, 0, 255), (100, 50, 200, 150))
    source = encode(composite(art, (255, 255, 255)))
    result = engine.remove(source, RemovalOptions(crop=True, crop_margin_px=10))
    assert (result.width, result.height) == (120, 120)
    assert result.foreground is not None
    assert (result.foreground.left, result.foreground.top) == (10, 10)
    assert (result.foreground.width, result.foreground.height) == (100, 100)


def test_preview_size_is_at_most_a_quarter_megapixel(engine: RemovalEngine) -> None:
    big = Image.open(io.BytesIO(photo_bytes("astronaut.png"))).resize((1600, 1600))
    result = engine.remove(encode(big, "JPEG"), RemovalOptions(size=OutputSize.PREVIEW))
    assert result.width * result.height <= 250_000
    assert result.width == result.height


def test_concurrent_calls_match_serial(engine: RemovalEngine) -> None:
    inputs = [photo_bytes(name) for name in PHOTOS] + [
        encode(composite(draw_logo(), colour)) for colour in ((255, 255, 255), (0, 0, 0))
    ]
    inputs = (inputs * 2)[:8]
    serial = [engine.matte(data)[0] for data in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda data: engine.matte(data)[0], inputs))
    for one, other in zip(serial, parallel, strict=True):
        assert np.array_equal(one, other)


def test_missing_model_names_the_install_command(tmp_path: Path) -> None:
    engine = RemovalEngine(settings=EngineSettings(models_dir=tmp_path))
    with pytest.raises(ModelNotInstalledError, match="stolentee models install u2netp"):
        engine.remove(photo_bytes("coffee.png"))
    # Graphics need no model at all.
    result = engine.remove(encode(composite(draw_logo(), (255, 255, 255))))
    assert result.method == "colour-key"


def test_fully_transparent_pixels_carry_no_colour(engine: RemovalEngine) -> None:
    result = engine.remove(photo_bytes("chelsea.png"))
    pixels = np.asarray(Image.open(io.BytesIO(result.data)))
    hidden = pixels[..., 3] == 0
    assert hidden.sum() > 1000
    assert not pixels[hidden, :3].any()
    visible = pixels[..., 3] > 0
    assert pixels[visible, :3].any()


@pytest.mark.skipif(
    not __import__("sys").platform.startswith("linux"), reason="glibc malloc tuning is Linux-only"
)
def test_inference_reuses_heap_memory(engine: RemovalEngine) -> None:
    """onnxruntime's arena is off; with malloc tuned, u2netp's ~240 MB of tensors stay in the
    heap between runs: a warm inference faults in few fresh pages (the default glibc
    settings would fault ~40,000-70,000 per run)."""
    import resource

    from stolentee.removal.memory import tune_malloc

    assert tune_malloc()
    session = engine.session()
    image = np.asarray(Image.open(io.BytesIO(photo_bytes("astronaut.png"))).convert("RGB"))
    for _ in range(2):
        session.predict(image)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    session.predict(image)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 20_000


@pytest.mark.skipif(
    not __import__("sys").platform.startswith("linux"), reason="malloc_trim is glibc-only"
)
def test_memory_beyond_the_reserve_is_handed_back_after_each_image(
    engine: RemovalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare inference leaves its ~240 MB of tensors in the heap for reuse; after a whole
    image the engine hands back the heap's free pages beyond the reserve (none here), so a long
    run holds no more than the current image needs."""
    import psutil

    from stolentee.removal import memory as module

    monkeypatch.setattr(module, "KEEP_FREE_HEAP_BYTES", 0)
    process = psutil.Process()
    image = np.asarray(Image.open(io.BytesIO(photo_bytes("astronaut.png"))).convert("RGB"))
    engine.session().predict(image)
    held = process.memory_info().rss
    engine.remove(photo_bytes("coffee.png"))
    assert held - process.memory_info().rss > 100 * (1 << 20)


@pytest.mark.skipif(
    not __import__("sys").platform.startswith("linux"), reason="malloc_trim is glibc-only"
)
def test_a_model_sized_reserve_is_kept_between_images(
    engine: RemovalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the reserve the heap is not trimmed: the next photo's inference reuses the free
    heap instead of faulting its tensors in again (~25,000-70,000 pages when trimmed)."""
    import resource

    from stolentee.removal import memory as module

    free = module.free_heap_bytes()
    if free is None:
        pytest.skip("mallinfo2 needs glibc 2.33+")
    monkeypatch.setattr(module, "KEEP_FREE_HEAP_BYTES", free + (1 << 30))
    data = photo_bytes("coffee.png")
    for _ in range(2):
        engine.remove(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    engine.remove(data)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 15_000


@pytest.mark.skipif(
    not __import__("sys").platform.startswith("linux"), reason="malloc_trim is glibc-only"
)
def test_release_trims_only_beyond_the_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    from stolentee.removal import memory as module

    calls: list[int] = []
    monkeypatch.setattr(module, "_MALLOC_TRIM", calls.append)
    monkeypatch.setattr(module, "_FREE_HEAP", lambda: 300 << 20)
    assert not module.release_free_memory(keep=300 << 20)
    assert calls == []
    assert module.release_free_memory(keep=299 << 20)
    assert calls == [0]
    monkeypatch.setattr(module, "KEEP_FREE_HEAP_BYTES", 400 << 20)
    assert not module.release_free_memory()
    monkeypatch.setattr(module, "_FREE_HEAP", None)  # unknown: trim after every image
    assert module.release_free_memory()
    assert len(calls) == 2
