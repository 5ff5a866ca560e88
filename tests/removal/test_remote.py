"""The remote providers against real HTTP: our own removal service, started in-process with
uvicorn, behind a fault-injecting proxy. Our API is Remove.bg-compatible, so the same server
stands in for Remove.bg (``REMOVEBG_API_URL`` = its ``/v1.0``).

No assertion depends on wall-clock time: retries sleep through a recording fake, and what
reached the server is counted at the proxy.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from stolentee.config import (
    EngineSettings,
    RemovalSettings,
)
from stolentee.errors import ClientError, ConfigurationError
from stolentee.removal.base import (
    CENTER,
    ImageKind,
    Length,
    OutputFormat,
    OutputSize,
    Position,
    RemovalOptions,
    Roi,
)
from stolentee.removal.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderOutOfCreditsError,
    ProviderRejectedError,
)
from stolentee.removal.providers.http import build_http_client, parse_retry_after
from stolentee.removal.providers.rembg_service import RembgServiceRemover
from stolentee.removal.providers.remote import RETRY_AFTER_CAP_S, model_from_header
from stolentee.removal.providers.removebg import RemoveBgRemover
from stolentee.removal.removebg_wire import form_fields, kind_from_header, options_from_fields
from tests.fakes.faultproxy import FaultProxy
from tests.fakes.removal_service import API_KEY, start_removal_server
from tests.removal.conftest import composite, draw_logo, encode, photo_bytes

REMOVE_PATH = "/v1.0/removebg"
OUT_OF_CREDITS = {
    "errors": [{"title": "Insufficient credits", "code": "insufficient_credits", "detail": "x"}]
}


# --- the server and the proxy in front of it ----------------------------------------------------


@pytest.fixture(scope="module")
def removal_server(
    engine_settings: EngineSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    server = start_removal_server(engine_settings, tmp_path_factory.mktemp("removal-service"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def proxy(removal_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(removal_server) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with build_http_client(RemovalSettings(read_timeout_s=30)) as shared:
        yield shared


@pytest.fixture(scope="module")
def logo() -> bytes:
    """A 600x400 graphic on white: the colour-key path, fast and deterministic."""
    return encode(composite(draw_logo(), (255, 255, 255)))


class Sleeps(list[float]):
    """Records the waits instead of sleeping."""


def rembg_service(
    base_url: str, client: httpx.Client, **overrides: Any
) -> tuple[RembgServiceRemover, Sleeps]:
    sleeps = Sleeps()
    values = {"max_attempts": 3, "retry_backoff_s": 0.01, **overrides}
    settings = RemovalSettings(rembg_endpoint=base_url, rembg_api_key=API_KEY, **values)
    return RembgServiceRemover(settings=settings, http_client=client, sleep=sleeps.append), sleeps


def removebg(
    base_url: str, client: httpx.Client, *, api_key: str = API_KEY, **overrides: Any
) -> tuple[RemoveBgRemover, Sleeps]:
    sleeps = Sleeps()
    values = {"max_attempts": 3, "retry_backoff_s": 0.01, **overrides}
    settings = RemovalSettings(removebg_api_url=base_url, removebg_api_key=api_key, **values)
    return RemoveBgRemover(settings=settings, http_client=client, sleep=sleeps.append), sleeps


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- successful removals ------------------------------------------------------------------------


def test_rembg_service_removes_over_http(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    remover, sleeps = rembg_service(proxy.url, client)
    result = remover.remove(logo, RemovalOptions())
    assert result.provider == "rembg-service"
    assert result.method == "remote:rembg-service"
    assert result.content_type == "image/png"
    assert (result.width, result.height) == (600, 400)
    assert (result.input_width, result.input_height) == (600, 400)
    assert result.kind is ImageKind.GRAPHIC
    assert result.foreground is not None and result.foreground.width > 0
    assert result.credits_charged == 0  # self-hosted, whatever X-Credits-Charged said
    assert set(result.timings_ms) == {"remote", "total"}
    image = opened(result.data)
    assert image.mode == "RGBA" and image.getchannel("A").getpixel((0, 0)) == 0
    assert proxy.count(REMOVE_PATH, method="POST") == 1 and sleeps == []
    sent = proxy.received[0]
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["content-type"].startswith("multipart/form-data")


def test_jpg_with_a_background_colour(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    remover, _ = rembg_service(proxy.url, client)
    options = RemovalOptions(format=OutputFormat.JPG, bg_color=(0, 128, 255, 255))
    result = remover.remove(logo, options)
    assert result.content_type == "image/jpeg"
    image = opened(result.data)
    assert image.format == "JPEG" and image.size == (600, 400)
    corner = image.convert("RGB").getpixel((2, 2))
    assert isinstance(corner, tuple)
    assert all(abs(got - want) <= 6 for got, want in zip(corner, (0, 128, 255), strict=True))


def test_preview_size_and_credits_of_each_provider(proxy: FaultProxy, client: httpx.Client) -> None:
    big = encode(composite(draw_logo((1000, 700)), (255, 255, 255)))
    preview = RemovalOptions(size=OutputSize.PREVIEW)
    service, _ = rembg_service(proxy.url, client)
    paid, _ = removebg(f"{proxy.url}/v1.0", client)

    from_service = service.remove(big, preview)
    assert from_service.width * from_service.height <= 250_000
    assert (from_service.input_width, from_service.input_height) == (1000, 700)
    assert from_service.credits_charged == 0

    from_paid = paid.remove(big, preview)
    assert from_paid.provider == "removebg" and from_paid.method == "remote:removebg"
    assert (from_paid.width, from_paid.height) == (from_service.width, from_service.height)
    assert from_paid.credits_charged == 0.25  # the stand-in's X-Credits-Charged
    assert paid.remove(big, RemovalOptions(size=OutputSize.FULL)).credits_charged == 1.0
    assert proxy.count(REMOVE_PATH) == 3


def test_crop_trims_to_the_subject(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    remover, _ = rembg_service(proxy.url, client)
    plain = remover.remove(logo, RemovalOptions())
    cropped = remover.remove(logo, RemovalOptions(crop=True, crop_margin_px=10))
    assert plain.foreground is not None and cropped.foreground is not None
    assert (cropped.width, cropped.height) == (
        plain.foreground.width + 20,
        plain.foreground.height + 20,
    )
    assert (cropped.foreground.left, cropped.foreground.top) == (10, 10)


def test_alpha_roi_scale_position_and_background_image(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    remover, _ = rembg_service(proxy.url, client)
    alpha = remover.remove(logo, RemovalOptions(alpha_only=True))
    assert opened(alpha.data).mode == "L"

    background = encode(Image.new("RGB", (64, 64), (0, 200, 0)))
    options = RemovalOptions(
        roi=Roi(Length(0, True), Length(0, True), Length(100, True), Length(100, True)),
        scale=0.5,
        position=CENTER,
        bg_image=background,
    )
    placed = remover.remove(logo, options)
    image = opened(placed.data).convert("RGBA")
    assert image.getpixel((1, 1)) == (0, 200, 0, 255)  # the background image shows
    assert placed.foreground is not None
    box = placed.foreground
    assert box.width <= 301  # scaled to half the canvas, centred
    assert abs((box.left + box.width / 2) - 300) <= 2
    assert abs((box.top + box.height / 2) - 200) <= 2


OPTION_CASES = [
    RemovalOptions(),
    RemovalOptions(kind=ImageKind.PHOTO, size=OutputSize.PREVIEW, format=OutputFormat.WEBP),
    RemovalOptions(kind=ImageKind.GRAPHIC, size=OutputSize.MP50, format=OutputFormat.ZIP),
    RemovalOptions(size=OutputSize.AUTO, format=OutputFormat.AUTO, alpha_only=True),
    RemovalOptions(bg_color=(129, 212, 250, 255), format=OutputFormat.JPG),
    RemovalOptions(bg_color=(1, 2, 3, 119)),
    RemovalOptions(crop=True, crop_margin_px=30),
    RemovalOptions(crop=True, crop_margin_percent=12.5),
    RemovalOptions(
        roi=Roi(Length(10, False), Length(20, False), Length(90.5, True), Length(300, False))
    ),
    RemovalOptions(scale=0.29, position=Position(0.25, 1.0)),
    RemovalOptions(scale=1.0, position=CENTER),
    RemovalOptions(position=Position(0.0, 0.0)),
    RemovalOptions(bg_image=b"background bytes"),
]


@pytest.mark.parametrize("options", OPTION_CASES)
def test_form_fields_parse_back_to_the_same_options(options: RemovalOptions) -> None:
    """What we send is exactly what our API's own parser reads back."""
    fields: dict[str, Any] = form_fields(options)
    assert all(isinstance(value, str) for value in fields.values())
    assert options_from_fields(fields, bg_image=options.bg_image) == options


def test_remove_bg_gets_its_own_type_names() -> None:
    assert form_fields(RemovalOptions(kind=ImageKind.PHOTO), photo_type="auto")["type"] == "auto"
    assert form_fields(RemovalOptions(kind=ImageKind.GRAPHIC), photo_type="auto")["type"] == (
        "graphic"
    )
    assert form_fields(RemovalOptions())["size"] == "full"  # the wire default is preview


def test_remove_bg_response_headers(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    """Remove.bg's own answer: X-Type names the subject; credits from X-Credits-Charged."""
    cutout = encode(Image.new("RGBA", (320, 200), (0, 0, 0, 0)))
    proxy.status(
        200,
        body=cutout,
        headers={
            "Content-Type": "image/png",
            "X-Type": "person",
            "X-Credits-Charged": "1",
            "X-Width": "320",
            "X-Height": "200",
            "X-Foreground-Top": "5",
            "X-Foreground-Left": "6",
            "X-Foreground-Width": "70",
            "X-Foreground-Height": "80",
        },
    )
    remover, _ = removebg(proxy.url, client)
    result = remover.remove(logo, RemovalOptions())
    assert result.kind is ImageKind.PHOTO and result.credits_charged == 1.0
    assert (result.width, result.height) == (320, 200)
    assert result.foreground is not None
    assert (result.foreground.top, result.foreground.left) == (5, 6)
    assert proxy.received[0].path == "/removebg"
    assert proxy.received[0].headers["x-api-key"] == API_KEY

    # No X-Width/X-Height: read from the image; no X-Credits-Charged: Remove.bg's pricing.
    proxy.status(200, body=cutout, headers={"Content-Type": "image/png", "X-Type": "graphics"})
    result = remover.remove(logo, RemovalOptions(size=OutputSize.PREVIEW))
    assert result.kind is ImageKind.GRAPHIC and (result.width, result.height) == (320, 200)
    assert result.foreground is None and result.credits_charged == 0.25


@pytest.mark.parametrize(
    ("header", "requested", "expected"),
    [
        ("person", ImageKind.AUTO, ImageKind.PHOTO),
        ("car_interior", ImageKind.AUTO, ImageKind.PHOTO),
        ("other", ImageKind.GRAPHIC, ImageKind.PHOTO),
        ("graphics", ImageKind.AUTO, ImageKind.GRAPHIC),
        ("graphic", ImageKind.AUTO, ImageKind.GRAPHIC),
        (None, ImageKind.AUTO, ImageKind.PHOTO),
        (None, ImageKind.GRAPHIC, ImageKind.GRAPHIC),
    ],
)
def test_kind_from_x_type(header: str | None, requested: ImageKind, expected: ImageKind) -> None:
    assert kind_from_header(header, requested) is expected


# --- failures: classification and retries ------------------------------------------------------


def test_input_rejection_is_not_retried(proxy: FaultProxy, client: httpx.Client) -> None:
    too_big = encode(Image.new("RGB", (1500, 1400), (255, 255, 255)))  # 2.1 MP > 2 MP
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderRejectedError) as caught:
        remover.remove(too_big, RemovalOptions())
    error = caught.value
    assert isinstance(error, ClientError)
    assert error.status_code == 400 and error.code == "resolution_too_high"
    assert error.title == "Resolution too high" and "MP" in error.detail
    assert error.kind == "rejected" and not error.retryable
    assert proxy.url not in error.detail  # fit for the client: no internal URL
    assert error.to_dict()["code"] == "resolution_too_high"
    assert proxy.count(REMOVE_PATH) == 1 and sleeps == []


def test_remote_status_and_code_are_kept(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    body = {"errors": [{"title": "Invalid file type", "code": "invalid_file_type", "detail": "d"}]}
    proxy.status(415, body=body)
    remover, _ = rembg_service(proxy.url, client)
    with pytest.raises(ProviderRejectedError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.status_code == 415
    assert caught.value.to_dict() == {
        "title": "Invalid file type",
        "code": "invalid_file_type",
        "detail": "d",
    }
    assert proxy.requests == 1


def test_intermittent_5xx_is_retried(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    proxy.error(502, every_nth=2)  # the 1st request fails, the 2nd passes
    remover, sleeps = rembg_service(proxy.url, client)
    result = remover.remove(logo, RemovalOptions())
    assert result.width == 600
    assert proxy.count(REMOVE_PATH) == 2
    assert len(sleeps) == 1 and 0.005 <= sleeps[0] <= 0.01


def test_persistent_5xx_gives_up_after_max_attempts(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    proxy.error(503, body={"errors": [{"title": "Busy", "code": "server_busy", "detail": "x"}]})
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    error = caught.value
    assert error.kind == "server_error" and error.retryable and error.http_status == 503
    assert "rembg-service" in str(error) and proxy.url in str(error) and "server_busy" in str(error)
    assert API_KEY not in str(error)
    assert proxy.count(REMOVE_PATH) == 3
    assert len(sleeps) == 2
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # doubling, jittered


def test_dropped_connections_are_retried_then_classified(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    proxy.drop()
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "connect" and "dropped the connection" in str(caught.value)
    assert proxy.count(REMOVE_PATH) == 3 and len(sleeps) == 2


def test_timeouts_are_retried_then_classified(proxy: FaultProxy, logo: bytes) -> None:
    settings = RemovalSettings(read_timeout_s=0.3)
    proxy.slow(30)
    with build_http_client(settings) as short:
        remover, sleeps = rembg_service(proxy.url, short, max_attempts=2, read_timeout_s=0.3)
        with pytest.raises(ProviderError) as caught:
            remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert proxy.count(REMOVE_PATH) == 2 and len(sleeps) == 1


def test_connection_refused_is_a_connect_failure(client: httpx.Client, logo: bytes) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remover, sleeps = rembg_service(f"http://127.0.0.1:{port}", client, max_attempts=2)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "connect" and "could not connect" in str(caught.value)
    assert len(sleeps) == 1


def test_429_honours_retry_after(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    proxy.status(429, headers={"Retry-After": "2"}, body={"errors": [{"title": "Rate limited"}]})
    remover, sleeps = rembg_service(proxy.url, client, max_attempts=2)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "rate_limited" and caught.value.retry_after_s == 2
    assert proxy.count(REMOVE_PATH) == 2
    assert sleeps == [2.0]  # exactly what the server asked


def test_429_then_success(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    proxy.error(429, headers={"Retry-After": "1"}, every_nth=2)
    remover, sleeps = rembg_service(proxy.url, client)
    assert remover.remove(logo, RemovalOptions()).width == 600
    assert proxy.count(REMOVE_PATH) == 2 and sleeps == [1.0]


def test_429_asking_too_long_gives_up_at_once(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    proxy.status(429, headers={"Retry-After": str(int(RETRY_AFTER_CAP_S) + 90)})
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "rate_limited" and caught.value.retry_after_s == 120
    assert proxy.count(REMOVE_PATH) == 1 and sleeps == []


def test_402_is_out_of_credits_and_not_retried(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    proxy.status(402, body=OUT_OF_CREDITS)
    remover, sleeps = removebg(proxy.url, client)
    with pytest.raises(ProviderOutOfCreditsError) as caught:
        remover.remove(logo, RemovalOptions())
    error = caught.value
    assert error.kind == "out_of_credits" and not error.retryable
    assert "removebg" in str(error) and f"{proxy.url}/removebg" in str(error)
    assert "insufficient_credits" in str(error) and API_KEY not in str(error)
    assert proxy.requests == 1 and sleeps == []


def test_refused_key_is_an_auth_failure(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    remover, sleeps = removebg(f"{proxy.url}/v1.0", client, api_key="wrong-key-123")
    with pytest.raises(ProviderAuthError) as caught:
        remover.remove(logo, RemovalOptions())
    error = caught.value
    assert error.http_status == 403 and error.code == "provider_auth_failed"
    assert "auth_failed" in str(error) and "wrong-key-123" not in str(error)
    assert "wrong-key-123" not in repr(remover)
    assert proxy.requests == 1 and sleeps == []


def test_wrong_url_is_not_retried(proxy: FaultProxy, client: httpx.Client, logo: bytes) -> None:
    remover, sleeps = rembg_service(f"{proxy.url}/nowhere", client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "server_error" and caught.value.http_status == 404
    assert not caught.value.retryable and not isinstance(caught.value, ClientError)
    assert proxy.requests == 1 and sleeps == []


def test_json_instead_of_an_image_is_a_bad_response(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    proxy.status(200, body={"data": {"result_b64": ""}})
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions())
    assert caught.value.kind == "bad_response" and "not an image" in str(caught.value)
    assert proxy.requests == 1 and sleeps == []


def test_unreadable_input_is_refused_before_sending(
    proxy: FaultProxy, client: httpx.Client
) -> None:
    remover, _ = rembg_service(proxy.url, client)
    with pytest.raises(ClientError):
        remover.remove(b"not an image", RemovalOptions())
    assert proxy.requests == 0


# --- probes -------------------------------------------------------------------------------------


def test_rembg_service_probe(proxy: FaultProxy, client: httpx.Client) -> None:
    remover, _ = rembg_service(proxy.url, client)
    good = remover.probe()
    assert good.ok and good.detail == "ready" and good.latency_ms >= 0
    assert proxy.count("/readyz", method="GET") == 1

    proxy.status(503, body={"status": "fail", "output": "database not ready"})
    bad = remover.probe()
    assert not bad.ok and "503" in bad.detail and "database not ready" in bad.detail

    proxy.drop()
    assert not remover.probe().ok


def test_removebg_probe(proxy: FaultProxy, client: httpx.Client) -> None:
    remover, _ = removebg(f"{proxy.url}/v1.0", client)
    account = remover.probe()
    assert account.ok and account.credits == 0  # our stand-in reports no credit balance
    assert proxy.count("/v1.0/account") == 1
    assert proxy.received[0].headers["x-api-key"] == API_KEY

    refused, _ = removebg(f"{proxy.url}/v1.0", client, api_key="wrong-key-123")
    result = refused.probe()
    assert not result.ok and "API key refused" in result.detail

    proxy.status(402, body=OUT_OF_CREDITS)
    result = remover.probe()
    assert not result.ok and "out of credits" in result.detail


def test_removebg_probe_accepts_a_stand_in_without_account(
    proxy: FaultProxy, client: httpx.Client
) -> None:
    remover, _ = removebg(proxy.url, client)  # no /v1.0: GET /account is a 404
    result = remover.probe()
    assert result.ok and "reachable" in result.detail and result.credits is None


# --- small parts --------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    now = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("Sat, 14 Mar 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("Sat, 14 Mar 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_respects_the_cap(client: httpx.Client) -> None:
    remover, _ = rembg_service("http://127.0.0.1:9", client, retry_backoff_s=1.0)
    failure = ProviderError("x", provider="rembg-service", kind="server_error")
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, RETRY_AFTER_CAP_S)):
        delay = remover.retry_delay_s(attempt, failure)
        assert delay is not None and ceiling / 2 <= delay <= ceiling
    limited = ProviderError("x", provider="p", kind="rate_limited", retry_after_s=30)
    assert remover.retry_delay_s(1, limited) == 30
    too_long = ProviderError("x", provider="p", kind="rate_limited", retry_after_s=30.5)
    assert remover.retry_delay_s(1, too_long) is None


def test_http_client_timeouts_come_from_settings() -> None:
    settings = RemovalSettings(connect_timeout_s=1.5, read_timeout_s=42)
    with build_http_client(settings) as built:
        assert built.timeout.connect == 1.5 and built.timeout.read == 42
        assert not built.follow_redirects


def test_providers_need_their_settings(client: httpx.Client, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="REMBG_ENDPOINT"):
        RembgServiceRemover(settings=RemovalSettings(), http_client=client)
    with pytest.raises(ConfigurationError, match="REMOVEBG_API_KEY"):
        RemoveBgRemover(settings=RemovalSettings(), http_client=client)
    remover, _ = removebg("https://api.remove.bg/v1.0", client, api_key="secret-value")
    assert "secret-value" not in repr(remover)
    assert remover.remove_url == "https://api.remove.bg/v1.0/removebg"


# --- the model --------------------------------------------------------------------------------

ABSENT_MODEL = "u2net_human_seg"  # a known model no test machine installs (176 MB)


def test_the_model_the_service_used_is_reported(proxy: FaultProxy, client: httpx.Client) -> None:
    remover, _ = rembg_service(proxy.url, client)
    data = photo_bytes("coffee.png")
    result = remover.remove(data, RemovalOptions(kind=ImageKind.PHOTO, model="fast"))
    assert result.model == "u2netp"
    graphic = remover.remove(encode(composite(draw_logo(), (255, 255, 255))), RemovalOptions())
    assert graphic.model == "none"  # the colour key alone


def test_a_model_the_service_lacks_is_the_providers_failure_not_the_callers(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    """The field is forwarded: the service answers 400 invalid_model, which is its installation
    (the chain moves on), not a bad input to hand back to the caller."""
    remover, sleeps = rembg_service(proxy.url, client)
    with pytest.raises(ProviderError) as caught:
        remover.remove(logo, RemovalOptions(model=ABSENT_MODEL))
    assert not isinstance(caught.value, ProviderRejectedError)
    assert caught.value.kind == "server_error" and not caught.value.retryable
    assert "invalid_model" in caught.value.detail
    assert proxy.count(REMOVE_PATH, method="POST") == 1 and sleeps == []


def test_remove_bg_is_not_sent_our_model_field(
    proxy: FaultProxy, client: httpx.Client, logo: bytes
) -> None:
    remover, _ = removebg(f"{proxy.url}/v1.0", client)
    result = remover.remove(logo, RemovalOptions(model=ABSENT_MODEL))  # refused if it were sent
    assert result.provider == "removebg"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("isnet", "isnet"),
        (" u2netp ", "u2netp"),
        ("<script>", "none"),
        ("", "none"),
        (None, "none"),
    ],
)
def test_x_model_is_untrusted(header: str | None, expected: str) -> None:
    assert model_from_header(header) == expected
