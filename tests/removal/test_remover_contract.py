"""One contract, every Remover: what any removal provider must do, run against each of them.

The contenders are the local engine, the removal-service client against a real
``stolentee removal-service``, the Remove.bg client against the project's own Remove.bg-compatible
server (the same app: a client written for Remove.bg must work against it), and the provider
chain (removal service first, the engine behind it). What each returns for the same request must
agree: the same cutout size, kind, foreground box and pixels where the image is unambiguous.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from stolentee.config import EngineSettings, RemovalSettings
from stolentee.errors import ClientError
from stolentee.removal.base import (
    ImageKind,
    OutputFormat,
    OutputSize,
    RemovalOptions,
    RemovalResult,
    Remover,
)
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.providers.chain import build_chain
from stolentee.removal.providers.http import build_http_client
from stolentee.removal.providers.rembg_service import RembgServiceRemover
from stolentee.removal.providers.removebg import RemoveBgRemover
from tests.fakes.removal_service import API_KEY, start_removal_server

from .conftest import composite, draw_logo, encode

CONTENDERS = ("engine", "removal-service", "removebg-client", "chain")
LOGO_SIZE = (600, 400)


@pytest.fixture(scope="module")
def removal_service_url(
    engine_settings: EngineSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    server = start_removal_server(engine_settings, tmp_path_factory.mktemp("contract-service"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def http_client() -> Iterator[httpx.Client]:
    with build_http_client(RemovalSettings(read_timeout_s=60)) as client:
        yield client


def _no_sleep(_seconds: float) -> None:
    """Retries in a contract test do not wait."""


@pytest.fixture(scope="module")
def contenders(
    engine: RemovalEngine, removal_service_url: str, http_client: httpx.Client
) -> dict[str, Remover]:
    service = RemovalSettings(
        rembg_endpoint=removal_service_url, rembg_api_key=API_KEY, max_attempts=1
    )
    removebg = RemovalSettings(
        removebg_api_url=f"{removal_service_url}/v1.0", removebg_api_key=API_KEY, max_attempts=1
    )
    chain = build_chain(
        service.model_copy(update={"providers": "rembg-service,local"}),
        engine=engine,
        http_client=http_client,
        sleep=_no_sleep,
    )
    return {
        "engine": engine,
        "removal-service": RembgServiceRemover(
            settings=service, http_client=http_client, sleep=_no_sleep
        ),
        "removebg-client": RemoveBgRemover(
            settings=removebg, http_client=http_client, sleep=_no_sleep
        ),
        "chain": chain,
    }


@pytest.fixture(params=CONTENDERS)
def remove(
    request: pytest.FixtureRequest, contenders: dict[str, Remover]
) -> Callable[[bytes, RemovalOptions], RemovalResult]:
    remover = contenders[request.param]
    return remover.remove


@pytest.fixture(scope="module")
def logo() -> bytes:
    """Artwork on white: the colour-key path, deterministic on every contender."""
    return encode(composite(draw_logo(LOGO_SIZE), (255, 255, 255)))


def _decoded(result: RemovalResult) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def test_a_graphic_comes_back_cut_out_at_full_size(
    remove: Callable[[bytes, RemovalOptions], RemovalResult], logo: bytes
) -> None:
    result = remove(logo, RemovalOptions(size=OutputSize.FULL))
    image = _decoded(result)
    assert result.content_type == "image/png" and image.format == "PNG"
    assert image.mode == "RGBA" and image.size == LOGO_SIZE == (result.width, result.height)
    assert result.kind is ImageKind.GRAPHIC
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # the white background is gone
    box = result.foreground
    assert box is not None
    assert 0 <= box.left < box.left + box.width <= LOGO_SIZE[0]
    assert 0 <= box.top < box.top + box.height <= LOGO_SIZE[1]
    centre = alpha[box.top + box.height // 2, box.left + box.width // 2]
    assert alpha.max() == 255 and centre > 0


def test_every_contender_cuts_the_same_graphic_the_same_way(
    contenders: dict[str, Remover], logo: bytes
) -> None:
    options = RemovalOptions(size=OutputSize.FULL)
    results = {name: remover.remove(logo, options) for name, remover in contenders.items()}
    # Each went where it says: the chain through the removal service it leads with.
    assert {name: result.provider for name, result in results.items()} == {
        "engine": "local",
        "removal-service": "rembg-service",
        "removebg-client": "removebg",
        "chain": "rembg-service",
    }
    reference = np.asarray(_decoded(results["engine"]))[:, :, 3]
    for name, result in results.items():
        assert result.foreground == results["engine"].foreground, name
        alpha = np.asarray(_decoded(result))[:, :, 3]
        assert np.array_equal(alpha, reference), f"{name}'s matte differs from the engine's"


def test_the_matte_alone(
    remove: Callable[[bytes, RemovalOptions], RemovalResult], logo: bytes
) -> None:
    image = _decoded(remove(logo, RemovalOptions(size=OutputSize.FULL, alpha_only=True)))
    assert image.mode == "L" and image.size == LOGO_SIZE


def test_a_jpeg_on_a_colour(
    remove: Callable[[bytes, RemovalOptions], RemovalResult], logo: bytes
) -> None:
    options = RemovalOptions(
        size=OutputSize.FULL, format=OutputFormat.JPG, bg_color=(255, 0, 0, 255)
    )
    result = remove(logo, options)
    image = _decoded(result)
    assert result.content_type == "image/jpeg" and image.mode == "RGB"
    red, green, blue = image.getpixel((0, 0))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_cropped_to_the_subject(
    remove: Callable[[bytes, RemovalOptions], RemovalResult], logo: bytes
) -> None:
    result = remove(logo, RemovalOptions(size=OutputSize.FULL, crop=True))
    image = _decoded(result)
    assert image.size == (result.width, result.height)
    assert image.width < LOGO_SIZE[0] and image.height < LOGO_SIZE[1]


def test_something_that_is_not_an_image_is_the_clients_error(
    remove: Callable[[bytes, RemovalOptions], RemovalResult],
) -> None:
    with pytest.raises(ClientError):
        remove(b"%PDF-1.7 not an image at all", RemovalOptions())
