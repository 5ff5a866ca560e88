"""The Remove.bg-compatible API: parameters, error codes, keys, rate limits, usage."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stolentee.api.app import create_app
from tests.fakes.removebg_client import RemoveBgClient

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode, photo_bytes

KEY = "st_test_key_for_the_removebg_api"
LOGO = encode(composite(draw_logo(), (255, 255, 255)))  # 600x400 = 0.24 MP


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    opened: list[TestClient] = []

    def factory(*, loopback: bool = False, **api: Any) -> TestClient:
        settings = make_settings(api={"api_keys": KEY, **api})
        client = TestClient(
            create_app(settings),
            client=("127.0.0.1", 50000) if loopback else ("203.0.113.9", 50000),
        )
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


def post(client: TestClient, *, files: Any = None, data: Any = None, **kw: Any) -> Any:
    headers = {"X-Api-Key": KEY, **kw.pop("headers", {})}
    return client.post("/v1.0/removebg", files=files, data=data, headers=headers, **kw)


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"errors"}
    entry = body["errors"][0]
    assert entry["title"] and entry["detail"]
    code: str = entry["code"]
    return code


def test_multipart_upload_returns_png_and_headers(client: TestClient) -> None:
    response = post(client, files={"image_file": ("logo.png", LOGO)})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGBA"
    assert response.headers["X-Width"] == str(image.width)
    assert response.headers["X-Height"] == str(image.height)
    assert response.headers["X-Type"] == "graphic"
    assert response.headers["X-Credits-Charged"] == "0.25"  # size=preview by default
    assert int(response.headers["X-Foreground-Width"]) > 100
    assert image.width * image.height <= 250_000
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.headers[name].isdigit()


def test_full_size_costs_one_credit(client: TestClient) -> None:
    big = encode(composite(draw_logo((900, 600)), (255, 255, 255)))
    response = post(client, files={"image_file": ("logo.png", big)}, data={"size": "full"})
    assert response.status_code == 200
    assert (response.headers["X-Width"], response.headers["X-Height"]) == ("900", "600")
    assert response.headers["X-Credits-Charged"] == "1"


def test_photo_goes_through_the_model(client: TestClient) -> None:
    response = post(client, files={"image_file": ("cat.png", photo_bytes("chelsea.png"))})
    assert response.status_code == 200
    assert response.headers["X-Type"] == "photo"


def test_remove_bg_client_works_by_changing_only_the_base_url(client: TestClient) -> None:
    removebg = RemoveBgClient(client, api_key=KEY, base_url=str(client.base_url))
    by_file = removebg.remove_file(LOGO)
    assert by_file.status_code == 200 and by_file.headers["content-type"] == "image/png"
    by_b64 = removebg.remove_base64(LOGO, format="jpg", bg_color="81d4fa")
    assert by_b64.status_code == 200
    assert Image.open(io.BytesIO(by_b64.content)).format == "JPEG"
    as_json = removebg.remove_json(LOGO, crop=True)
    data = as_json["data"]
    result = Image.open(io.BytesIO(base64.b64decode(data["result_b64"])))
    assert (data["foreground_width"], data["foreground_height"]) == result.size  # cropped
    account = removebg.account()["data"]["attributes"]
    assert account["usage"]["all_time"]["images"] == 3
    assert (
        account["usage"]["all_time"]["credits_charged"] == 0.75
    )  # 3 previews (size=auto, 0.24 MP)
    assert account["credits"]["total"] == 0


def test_json_body_with_boolean_and_numbers(client: TestClient) -> None:
    response = client.post(
        "/v1.0/removebg",
        json={"image_file_b64": base64.b64encode(LOGO).decode(), "crop": True, "crop_margin": 10},
        headers={"X-Api-Key": KEY},
    )
    assert response.status_code == 200, response.text
    width = int(response.headers["X-Foreground-Width"])
    assert int(response.headers["X-Width"]) == width + 20


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"crop": 1}, 400, "crop must be true or false"),
        ({"crop": "yes"}, 400, "crop must be true or false"),
        ({"bg_color": 123}, 400, "bg_color must be a string"),
        ({"size": ["full"]}, 400, "size must be a string"),
        ({"type_level": [1, 2]}, 400, "type_level must be a string, number or boolean"),
        ({"crop": "true", "crop_margin": 10.0, "scale": 50}, 200, None),  # 10.0 is the int 10
        ({"size": None, "shadow_type": 2, "an_unknown_field": {"any": ["thing"]}}, 200, None),
        ({"channels": "  "}, 200, None),  # blank: the default
    ],
)
def test_json_fields_take_the_types_the_schema_names(
    client: TestClient, fields: dict[str, Any], status: int, detail: str | None
) -> None:
    body = {"image_file_b64": base64.b64encode(LOGO).decode(), **fields}
    response = client.post("/v1.0/removebg", json=body, headers={"X-Api-Key": KEY})
    assert response.status_code == status, response.text
    if detail is not None:
        assert error_code(response) == "invalid_request"
        assert response.json()["errors"][0]["detail"] == detail


def test_text_fields_sent_as_file_parts_are_read_as_text(client: TestClient) -> None:
    files = {"image_file": ("l.png", LOGO), "format": ("f.txt", b"webp")}
    response = post(client, files=files)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    files = {"image_file": ("l.png", LOGO), "format": ("f.txt", b"\xff\xfe")}
    response = post(client, files=files)
    assert response.status_code == 400 and "format must be UTF-8 text" in response.text


def test_zip_format_and_alpha_channel(client: TestClient) -> None:
    zipped = post(client, files={"image_file": ("l.png", LOGO)}, data={"format": "zip"})
    assert zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
    alpha = post(client, files={"image_file": ("l.png", LOGO)}, data={"channels": "alpha"})
    assert Image.open(io.BytesIO(alpha.content)).mode == "L"


def test_roi_limits_the_subject(client: TestClient) -> None:
    response = post(
        client,
        files={"image_file": ("l.png", LOGO)},
        data={"roi": "0% 0% 50% 100%", "size": "full"},
    )
    alpha = np.asarray(Image.open(io.BytesIO(response.content)).getchannel("A"))
    assert alpha[:, 300:].max() == 0 and alpha[:, :300].max() == 255


def test_ignored_parameters_are_accepted(client: TestClient) -> None:
    response = post(
        client,
        files={"image_file": ("l.png", LOGO)},
        data={
            "shadow_type": "3D",
            "add_shadow": "true",
            "type_level": "2",
            "semitransparency": "1",
        },
    )
    assert response.status_code == 200


def test_background_image_file(client: TestClient) -> None:
    backdrop = encode(Image.new("RGB", (64, 64), (0, 200, 0)))
    response = post(
        client,
        files={"image_file": ("l.png", LOGO), "bg_image_file": ("bg.png", backdrop)},
        data={"format": "png"},
    )
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGB" and image.getpixel((2, 2)) == (0, 200, 0)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"size": "huge"}, "invalid_size"),
        ({"format": "gif"}, "invalid_format"),
        ({"channels": "rgb"}, "invalid_channels"),
        ({"roi": "0 0 10"}, "invalid_roi"),
        ({"crop_margin": "90%"}, "invalid_crop_margin"),
        ({"bg_color": "no-such-colour"}, "invalid_bg_color"),
        ({"type": "spaceship"}, "invalid_type"),
        ({"scale": "5%"}, "invalid_scale"),
        ({"position": "left"}, "invalid_position"),
        ({"crop": "maybe"}, "invalid_crop"),
    ],
)
def test_bad_parameters(client: TestClient, data: dict[str, str], code: str) -> None:
    response = post(client, files={"image_file": ("l.png", LOGO)}, data=data)
    assert response.status_code == 400
    assert error_code(response) == code


@pytest.mark.parametrize(
    ("files", "data", "code"),
    [
        (None, {"size": "preview"}, "missing_source"),
        ({"image_file": ("l.png", LOGO)}, {"image_file_b64": "aGVsbG8="}, "multiple_sources"),
        ({"image_file": ("l.png", b"")}, None, "failed_to_read_image"),
        ({"image_file": ("l.png", LOGO[:300])}, None, "failed_to_read_image"),
        ({"image_file": ("notes.png", b"just some text, named .png")}, None, "invalid_file_type"),
        (None, {"image_file_b64": "***not base64***"}, "failed_to_read_image"),
        (None, {"image_url": "http://127.0.0.1/cat.png"}, "image_url_disabled"),
    ],
)
def test_bad_sources(client: TestClient, files: Any, data: Any, code: str) -> None:
    response = post(client, files=files, data=data)
    assert response.status_code == 400, response.text
    assert error_code(response) == code


def test_decompression_bomb_is_refused(client: TestClient) -> None:
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")
    response = post(client, files={"image_file": ("bomb.png", bomb)})
    assert response.status_code == 400
    assert error_code(response) == "resolution_too_high"


def test_resolution_over_the_limit(client: TestClient, make_settings: SettingsFactory) -> None:
    settings = make_settings(api={"api_keys": KEY}, engine={"max_input_megapixels": 0.1})
    with TestClient(create_app(settings)) as limited:
        response = post(limited, files={"image_file": ("l.png", LOGO)})
    assert response.status_code == 400 and error_code(response) == "resolution_too_high"


def test_unknown_foreground(client: TestClient) -> None:
    blank = encode(Image.new("RGB", (300, 200), (255, 255, 255)))
    response = post(client, files={"image_file": ("blank.png", blank)})
    assert response.status_code == 400
    assert error_code(response) == "unknown_foreground"


def test_oversize_body_is_413(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=50_000)
    big = bytes(60_000)
    response = post(client, files={"image_file": ("big.png", big)})
    assert response.status_code == 413
    assert error_code(response) == "file_too_large"


def test_oversize_chunked_body_is_413(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=50_000)

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield bytes(10_000)

    response = client.post(
        "/v1.0/removebg",
        content=chunks(),
        headers={"X-Api-Key": KEY, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 413


def test_unsupported_content_type(client: TestClient) -> None:
    response = client.post(
        "/v1.0/removebg", content=b"x", headers={"X-Api-Key": KEY, "Content-Type": "text/plain"}
    )
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/v1.0/removebg",
        content=b"{not json",
        headers={"X-Api-Key": KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_missing_and_unknown_keys_are_403(client: TestClient) -> None:
    missing = client.post("/v1.0/removebg", files={"image_file": ("l.png", LOGO)})
    assert missing.status_code == 403 and error_code(missing) == "auth_failed"
    wrong = client.post(
        "/v1.0/removebg", files={"image_file": ("l.png", LOGO)}, headers={"X-Api-Key": "nope"}
    )
    assert wrong.status_code == 403
    assert client.get("/v1.0/account").status_code == 403


def test_without_keys_only_loopback_is_served(make_settings: SettingsFactory) -> None:
    settings = make_settings()  # no STOLENTEE_API_KEYS, no keys in the database
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as local:
        assert (
            local.post("/v1.0/removebg", files={"image_file": ("l.png", LOGO)}).status_code == 200
        )
    with TestClient(create_app(settings), client=("198.51.100.7", 1)) as remote:
        refused = remote.post("/v1.0/removebg", files={"image_file": ("l.png", LOGO)})
        assert refused.status_code == 403
        assert "only loopback clients" in refused.json()["errors"][0]["detail"]


def test_rate_limit_in_megapixels(make_client: ClientFactory) -> None:
    client = make_client(rate_limit_megapixels_per_minute=0.4)
    first = post(client, files={"image_file": ("l.png", LOGO)})  # 0.24 MP
    assert first.status_code == 200
    second = post(client, files={"image_file": ("l.png", LOGO)})
    assert second.status_code == 429
    assert error_code(second) == "rate_limit_exceeded"
    assert int(second.headers["Retry-After"]) >= 1
    assert second.headers["X-RateLimit-Limit"] == "0"  # 0.4 MP/min, shown as whole megapixels
    assert second.headers["X-RateLimit-Remaining"] == "0"


def test_image_url_refused_for_private_addresses(make_client: ClientFactory) -> None:
    client = make_client(image_url_enabled=True, image_url_allowed_hosts="*")
    for url in ("http://127.0.0.1/x.png", "http://10.0.0.8/x.png", "http://169.254.169.254/"):
        response = post(client, data={"image_url": url})
        assert response.status_code == 400, url
        assert error_code(response) == "invalid_image_url"


def test_rembg_compatible_upload(client: TestClient) -> None:
    response = client.post(
        "/api/remove", files={"file": ("l.png", LOGO)}, headers={"X-Api-Key": KEY}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (600, 400)  # rembg: full size
    mask = client.post(
        "/api/remove",
        files={"file": ("l.png", LOGO)},
        data={"om": "true"},
        headers={"X-Api-Key": KEY},
    )
    assert Image.open(io.BytesIO(mask.content)).mode == "L"
    coloured = client.post(
        "/api/remove?bgc=0,0,255,255",
        files={"file": ("l.png", LOGO)},
        data={"a": "true", "ppm": "true"},
        headers={"X-Api-Key": KEY},
    )
    assert Image.open(io.BytesIO(coloured.content)).getpixel((1, 1))[:3] == (0, 0, 255)


@pytest.mark.parametrize(
    ("query", "code"),
    [("bgc=1,2,3", "invalid_bg_color"), ("model=u3net", "invalid_model")],
)
def test_rembg_bad_options(client: TestClient, query: str, code: str) -> None:
    response = client.post(
        f"/api/remove?{query}" if query.startswith("bgc") else "/api/remove",
        files={"file": ("l.png", LOGO)},
        data={} if query.startswith("bgc") else {"model": "u3net"},
        headers={"X-Api-Key": KEY},
    )
    assert response.status_code == 400 and error_code(response) == code


def test_rembg_url_route_exists_only_with_image_urls(make_client: ClientFactory) -> None:
    disabled = make_client()
    response = disabled.get("/api/remove?url=http://127.0.0.1/x.png", headers={"X-Api-Key": KEY})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert "get" not in disabled.get("/openapi.json").json()["paths"]["/api/remove"]
    enabled = make_client(image_url_enabled=True)
    response = enabled.get("/api/remove?url=http://127.0.0.1/x.png", headers={"X-Api-Key": KEY})
    assert response.status_code == 400 and error_code(response) == "invalid_image_url"
    assert "get" in enabled.get("/openapi.json").json()["paths"]["/api/remove"]
