"""Slow and piled-up uploads over real connections (issue 23, item 5): a half-sent body is cut
off with 408 after STOLENTEE_BODY_READ_TIMEOUT_S, and one address may have only so many bodies
in flight at once (429 too_many_uploads); other clients and later uploads are served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from stolentee.api.app import create_app
from tests.fakes.faultproxy import LiveServer

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode

KEY = "st_upload_limits_key"
LOGO = encode(composite(draw_logo(), (255, 255, 255)))


@pytest.fixture
def server(make_settings: SettingsFactory) -> Iterator[LiveServer]:
    settings = make_settings(
        api={
            "api_keys": KEY,
            "body_read_timeout_s": 1.5,
            "max_incomplete_uploads_per_client": 2,
        },
        queue={"run_worker": False},
    )
    with LiveServer(create_app(settings)) as live:
        yield live


def half_sent_upload(server: LiveServer) -> socket.socket:
    """A connection that announced a 100 kB multipart body and sent its first part's head."""
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=10)
    head = (
        "POST /v1/designs HTTP/1.1\r\nHost: shop\r\n"
        f"X-Api-Key: {KEY}\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        "Content-Length: 100000\r\n\r\n"
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    )
    sock.sendall(head.encode() + LOGO[:100])
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def test_a_half_sent_body_is_cut_off_with_408(server: LiveServer) -> None:
    started = time.monotonic()
    sock = half_sent_upload(server)
    with sock:
        status, headers, body = read_answer(sock)
        waited = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    assert body["errors"][0]["code"] == "request_timeout"  # type: ignore[index]
    assert waited < 30  # cut off, not held open (the limit itself is 1.5 s)


def test_one_address_may_have_only_so_many_uploads_in_flight(server: LiveServer) -> None:
    first, second = half_sent_upload(server), half_sent_upload(server)
    time.sleep(0.3)  # both bodies have started
    with httpx.Client(base_url=server.url, timeout=10) as client:
        third = client.post(
            "/v1/designs", files={"file": ("logo.png", LOGO)}, headers={"X-Api-Key": KEY}
        )
        assert third.status_code == 429, third.text
        assert third.json()["errors"][0]["code"] == "too_many_uploads"
        assert third.headers["retry-after"] == "5"
        assert client.get("/health").status_code == 200  # requests without a body pass
        for sock in (first, second):
            with sock:
                assert read_answer(sock)[0] == 408  # they time out and free their places
        again = client.post(
            "/v1/designs", files={"file": ("logo.png", LOGO)}, headers={"X-Api-Key": KEY}
        )
        assert again.status_code == 202, again.text
