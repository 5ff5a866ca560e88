"""The SSRF-hardened image URL fetcher (netsafe.py), against a real HTTP server on 127.0.0.1.

Nothing here reaches the internet. The fetcher refuses loopback, so the success paths give it a
fake public host name: an injected resolver answers ``images.example.test -> PUBLIC_IP`` (a global
unicast address: documentation ranges such as 203.0.113.0/24 are themselves refused as
non-public), and :class:`LoopbackTransport` dials 127.0.0.1 for that address only, failing the
test on any other destination. The address checks run on the resolver's answer before the
transport sees anything, which is what the refusal tests prove.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stolentee.config import ApiSettings
from stolentee.errors import ClientError, FileTooLargeError
from stolentee.netsafe import (
    FetchedImage,
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlDisabledError,
    ImageUrlError,
    Resolver,
    TooManyRedirectsError,
    UrlPolicy,
    fetch_image_url,
    forbidden_address_reason,
)

PUBLIC_IP = "93.184.215.14"  # global unicast; never contacted (LoopbackTransport dials loopback)
IMAGE_HOST = "images.example.test"
INTERNAL_HOST = "internal.example.test"  # resolves to a private address


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


# --- a real local HTTP server --------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes: images, redirects, slow and huge answers, header echo."""

    server_version = "netsafe-test"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        name = "route_" + parts.path.strip("/").replace("-", "_").replace(".", "_")
        route = getattr(self, name, None)
        if route is None:
            self._send(404, b"not found")
            return
        with contextlib.suppress(OSError):  # the client gave up (size cap, timeout): expected
            route(query)

    def route_image_png(self, query: dict[str, str]) -> None:
        self._send(200, PNG, {"Content-Type": "image/png"})

    def route_redirect(self, query: dict[str, str]) -> None:
        self._send(int(query.get("status", "302")), headers={"Location": query["to"]})

    def route_chain(self, query: dict[str, str]) -> None:
        left = int(query["n"])
        if left == 0:
            self.route_image_png(query)
        else:
            self._send(302, headers={"Location": f"/chain?n={left - 1}"})

    def route_no_location(self, query: dict[str, str]) -> None:
        self._send(302)

    def route_status(self, query: dict[str, str]) -> None:
        self._send(int(query["code"]), b"nope")

    def route_headers(self, query: dict[str, str]) -> None:
        body = json.dumps({name.lower(): value for name, value in self.headers.items()})
        self._send(200, body.encode(), {"Content-Type": "application/json"})

    def route_set_cookie(self, query: dict[str, str]) -> None:
        self._send(302, headers={"Set-Cookie": "session=secret; Path=/", "Location": "/headers"})

    def route_gzip(self, query: dict[str, str]) -> None:
        self._send(
            200, gzip.compress(PNG), {"Content-Type": "image/png", "Content-Encoding": "gzip"}
        )

    def route_exact(self, query: dict[str, str]) -> None:
        self._send(200, b"x" * int(query["n"]), {"Content-Type": "image/png"})

    def route_declared_huge(self, query: dict[str, str]) -> None:
        self._send(200, b"x" * 4096, {"Content-Type": "image/png", "Content-Length": "1000000000"})

    def route_stream_huge(self, query: dict[str, str]) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        chunk = b"x" * 65536
        for _ in range(1024):  # up to 64 MiB, far beyond any cap the tests set
            self.wfile.write(chunk)

    def route_slow_headers(self, query: dict[str, str]) -> None:
        time.sleep(3)
        self.route_image_png(query)

    def route_trickle(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.flush()
        for _ in range(100):  # one byte every 50 ms for 5 s: each read is fast, the whole is slow
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def route_dribble_headers(self, query: dict[str, str]) -> None:
        # Each byte arrives well within any read timeout; only a wall-clock limit stops this.
        head = b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"p" * 200
        for byte in head:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.05)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # aborted connections are part of the tests


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """Port of a plain HTTP test server on 127.0.0.1."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# --- test hooks: resolver and transport ----------------------------------------------------------


@dataclass
class FakeResolver:
    """A DNS table; unknown names fail like getaddrinfo does. Records every lookup."""

    table: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test table")
        return list(self.table[host])


def make_resolver(**extra: list[str]) -> FakeResolver:
    table = {IMAGE_HOST: [PUBLIC_IP], INTERNAL_HOST: ["10.0.0.7"], "localhost": ["127.0.0.1"]}
    table.update({name.replace("_", "."): answers for name, answers in extra.items()})
    return FakeResolver(table)


class LoopbackTransport(httpx.BaseTransport):
    """Sends requests for PUBLIC_IP to 127.0.0.1 instead; any other destination fails the test."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self.inner = httpx.HTTPTransport(trust_env=False, retries=0, verify=verify)
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host != PUBLIC_IP:
            raise AssertionError(f"the fetcher tried to connect to {request.url.host}")
        forwarded = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            extensions=request.extensions,
        )
        return self.inner.handle_request(forwarded)

    def close(self) -> None:
        self.inner.close()


class NoNetworkTransport(httpx.BaseTransport):
    """For tests that must be refused before any connection is attempted."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the fetcher tried to connect to {request.url}")


def policy(**overrides: Any) -> UrlPolicy:
    values: dict[str, Any] = {
        "enabled": True,
        "allowed_hosts": ("*",),
        "timeout_s": 5.0,
        "max_redirects": 3,
        "max_bytes": 1024 * 1024,
    }
    values.update(overrides)
    return UrlPolicy(**values)


Fetch = Callable[..., FetchedImage]


@pytest.fixture
def transport() -> Iterator[LoopbackTransport]:
    loopback = LoopbackTransport()
    yield loopback
    loopback.close()


@pytest.fixture
def fetch(transport: LoopbackTransport) -> Fetch:
    """``fetch(url, **policy_overrides, resolver=...)`` through the loopback transport."""

    def run(url: str, *, resolver: Resolver | None = None, **overrides: Any) -> FetchedImage:
        return fetch_image_url(
            url,
            policy=policy(**overrides),
            resolver=resolver or make_resolver(),
            transport=transport,
        )

    return run


def image_url(port: int, path: str = "/image.png", host: str = IMAGE_HOST) -> str:
    return f"http://{host}:{port}{path}"


def redirect_to(port: int, target: str, status: int = 302) -> str:
    return image_url(port, f"/redirect?status={status}&to={quote(target, safe='')}")


# --- success paths -------------------------------------------------------------------------------


def test_fetches_an_image_from_an_allowed_host(fetch: Fetch, port: int) -> None:
    fetched = fetch(image_url(port), allowed_hosts=(IMAGE_HOST,))
    assert fetched.content == PNG
    assert fetched.content_type == "image/png"
    assert fetched.final_url == image_url(port)


def test_connects_to_the_vetted_address_and_names_the_host(
    transport: LoopbackTransport, port: int
) -> None:
    resolver = make_resolver()
    fetched = fetch_image_url(
        image_url(port, "/headers"), policy=policy(), resolver=resolver, transport=transport
    )
    assert resolver.calls == [(IMAGE_HOST, port)]  # resolved once, by us
    (request,) = transport.requests
    assert request.url.host == PUBLIC_IP  # the socket goes to the address that was checked
    seen = json.loads(fetched.content)
    assert seen["host"] == f"{IMAGE_HOST}:{port}"
    assert seen["accept-encoding"] == "identity"
    assert seen["connection"] == "close"
    assert "cookie" not in seen and "authorization" not in seen


def test_dns_rebinding_between_hops_is_refused(transport: LoopbackTransport, port: int) -> None:
    """Every hop resolves again and vets the new answer: a rebinding record gains nothing."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    with pytest.raises(ImageUrlError, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        fetch_image_url(
            redirect_to(port, "/image.png"),
            policy=policy(),
            resolver=rebinding,
            transport=transport,
        )
    assert calls == [IMAGE_HOST, IMAGE_HOST]
    assert [request.url.host for request in transport.requests] == [PUBLIC_IP]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_each_redirect_status(fetch: Fetch, port: int, status: int) -> None:
    fetched = fetch(redirect_to(port, image_url(port), status))
    assert fetched.content == PNG
    assert fetched.final_url == image_url(port)


def test_follows_relative_redirects_and_keeps_no_cookie(fetch: Fetch, port: int) -> None:
    fetched = fetch(image_url(port, "/set-cookie"))
    assert fetched.final_url == image_url(port, "/headers")
    assert "cookie" not in json.loads(fetched.content)


def test_follows_redirects_up_to_the_limit(fetch: Fetch, port: int) -> None:
    assert fetch(image_url(port, "/chain?n=3"), max_redirects=3).content == PNG


@pytest.mark.parametrize(("hops", "limit"), [(4, 3), (1, 0), (11, 10)])
def test_too_many_redirects_are_refused(fetch: Fetch, port: int, hops: int, limit: int) -> None:
    with pytest.raises(TooManyRedirectsError) as caught:
        fetch(image_url(port, f"/chain?n={hops}"), max_redirects=limit)
    assert caught.value.code == "invalid_image_url"
    assert f"more than {limit} times" in caught.value.detail


def test_a_body_exactly_at_the_limit_is_accepted(fetch: Fetch, port: int) -> None:
    assert len(fetch(image_url(port, "/exact?n=1000"), max_bytes=1000).content) == 1000


def test_the_default_transport_ignores_proxy_variables_and_is_closed(
    monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """Without a transport argument the fetcher builds its own: no proxy, closed afterwards."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a dead proxy: using it would fail
    built: list[tuple[dict[str, Any], bool]] = []
    real_transport = httpx.HTTPTransport

    class Recording(real_transport):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.record = (kwargs, False)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            assert request.url.host == PUBLIC_IP
            request.url = request.url.copy_with(host="127.0.0.1")
            response: httpx.Response = super().handle_request(request)
            return response

        def close(self) -> None:
            built.append((self.record[0], True))
            super().close()

    monkeypatch.setattr(httpx, "HTTPTransport", Recording)
    fetched = fetch_image_url(image_url(port), policy=policy(), resolver=make_resolver())
    assert fetched.content == PNG
    assert built == [({"trust_env": False, "retries": 0}, True)]


# --- refusals before any connection --------------------------------------------------------------

REFUSED_LITERALS = [
    ("http://127.0.0.1/", "127.0.0.1, a loopback address"),
    ("http://127.0.0.1:8080/image.png", "127.0.0.1, a loopback address"),
    ("http://127.254.3.4/", "127.254.3.4, a loopback address"),
    ("http://[::1]/", "::1, a loopback address"),
    ("http://[::1]:8080/x", "::1, a loopback address"),
    ("http://10.0.0.1/", "10.0.0.1, a private address"),
    ("http://10.255.255.255/", "a private address"),
    ("http://172.16.0.1/", "172.16.0.1, a private address"),
    ("http://172.31.255.254/", "a private address"),
    ("http://192.168.1.1/", "192.168.1.1, a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://[fc00::1]/", "a private address"),
    ("http://[fd12:3456:789a::1]/", "a private address"),
    ("http://0.0.0.0/", "0.0.0.0, an unspecified address"),
    ("http://[::]/", "an unspecified address"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://[ff02::1]/", "a multicast address"),
    ("http://240.0.0.1/", "240.0.0.1, a reserved address"),
    ("http://255.255.255.255/", "255.255.255.255, the broadcast address"),
    ("http://192.0.2.1/", "192.0.2.1"),  # documentation range: not routable
    # IPv6 spellings of refused IPv4 addresses.
    ("http://[::ffff:127.0.0.1]/", "an IPv6 form of 127.0.0.1, a loopback address"),
    ("http://[::ffff:7f00:1]/", "an IPv6 form of 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "an IPv6 form of 169.254.169.254"),
    ("http://[::ffff:10.0.0.1]/", "an IPv6 form of 10.0.0.1, a private address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "an IPv6 form of 169.254.169.254"),
    ("http://[2002:7f00:1::]/", "an IPv6 form of 127.0.0.1"),
    # Numeric spellings a resolver (inet_aton) reads as IPv4: normalised, then refused.
    ("http://2130706433/", "127.0.0.1, a loopback address"),
    ("http://0x7f000001/", "127.0.0.1, a loopback address"),
    ("http://0x7f.1/", "127.0.0.1, a loopback address"),
    ("http://017700000001/", "127.0.0.1, a loopback address"),
    ("http://0177.0.0.1/", "127.0.0.1, a loopback address"),
    ("http://0177.0.0.01/", "127.0.0.1, a loopback address"),
    ("http://127.1/", "127.0.0.1, a loopback address"),
    ("http://127.0.1/", "127.0.0.1, a loopback address"),
    ("http://0/", "0.0.0.0, an unspecified address"),
    ("http://2852039166/", "169.254.169.254, a link-local address"),
    ("http://0xa9fea9fe/", "169.254.169.254, a link-local address"),
    ("http://0xA9.0xFE.0xA9.0xFE/", "169.254.169.254, a link-local address"),
    ("http://167772161/", "10.0.0.1, a private address"),
    ("http://127.0.0.1./", "127.0.0.1, a loopback address"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1, a loopback address"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED_LITERALS)
def test_refuses_internal_addresses_in_the_url(url: str, why: str) -> None:
    resolver = make_resolver()
    with pytest.raises(ImageUrlError) as caught:
        fetch_image_url(url, policy=policy(), resolver=resolver, transport=NoNetworkTransport())
    assert caught.value.code == "invalid_image_url"
    assert caught.value.status_code == 400
    assert why in caught.value.detail
    assert resolver.calls == []  # a literal address is checked as written, never looked up


def test_refuses_localhost_through_the_system_resolver() -> None:
    """The real getaddrinfo (no network needed for localhost) and the default resolver path."""
    with pytest.raises(ImageUrlError, match=r"'localhost' resolves to .*a loopback address"):
        fetch_image_url("http://localhost/", policy=policy(), transport=NoNetworkTransport())


@pytest.mark.parametrize(
    "answers",
    [
        ["127.0.0.1"],
        ["::1"],
        ["10.0.0.7"],
        ["172.16.5.4"],
        ["192.168.0.10"],
        ["169.254.169.254"],
        ["fe80::1%eth0"],
        ["fd00::5"],
        ["0.0.0.0"],
        ["100.64.1.1"],
        ["::ffff:10.0.0.1"],
        ["::ffff:127.0.0.1"],
        [PUBLIC_IP, "10.0.0.7"],  # one bad answer among good ones is enough
        ["2606:4700:4700::1111", "::1"],
    ],
)
def test_refuses_a_host_name_that_resolves_to_an_internal_address(answers: list[str]) -> None:
    resolver = FakeResolver({"sneaky.example.test": answers})
    with pytest.raises(ImageUrlError, match=r"'sneaky\.example\.test' resolves to") as caught:
        fetch_image_url(
            "https://sneaky.example.test/cat.png",
            policy=policy(),
            resolver=resolver,
            transport=NoNetworkTransport(),
        )
    assert caught.value.code == "invalid_image_url"


def test_the_allow_list_cannot_allow_internal_addresses() -> None:
    allowed = policy(allowed_hosts=("localhost", "127.0.0.1", INTERNAL_HOST, "*"))
    for url in ("http://localhost/", "http://127.0.0.1/", f"http://{INTERNAL_HOST}/"):
        with pytest.raises(ImageUrlError, match="address"):
            fetch_image_url(
                url, policy=allowed, resolver=make_resolver(), transport=NoNetworkTransport()
            )


def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    resolver = FakeResolver({"odd.example.test": ["not-an-ip"]})
    with pytest.raises(ImageUrlError, match="not an address"):
        fetch_image_url(
            "http://odd.example.test/",
            policy=policy(),
            resolver=resolver,
            transport=NoNetworkTransport(),
        )


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "ftp://images.example.test/cat.png",
        "gopher://images.example.test:70/_GET%20/",
        "dict://images.example.test:11211/stat",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "images.example.test/cat.png",
        "//images.example.test/cat.png",
        "ws://images.example.test/",
    ],
)
def test_refuses_schemes_other_than_http_and_https(url: str) -> None:
    with pytest.raises(ImageUrlError, match="Only http and https") as caught:
        fetch_image_url(
            url, policy=policy(), resolver=make_resolver(), transport=NoNetworkTransport()
        )
    assert caught.value.code == "invalid_image_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@images.example.test/cat.png",
        "http://user@images.example.test/cat.png",
        "http://:hunter2@images.example.test/",
        "https://images.example.test@127.0.0.1/",
        "http://images.example.test:80@10.0.0.1/",
    ],
)
def test_refuses_user_info(url: str) -> None:
    with pytest.raises(ImageUrlError, match="user name or password") as caught:
        fetch_image_url(
            url, policy=policy(), resolver=make_resolver(), transport=NoNetworkTransport()
        )
    assert "hunter2" not in caught.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "http://",
        "http:///cat.png",
        "http://[::1",
        "http://[::1]x/",
        "http://[not-v6]/",
        "http://[fe80::1%25eth0]/",
        "http://exa mple.test/",
        "http://images.example.test/cat\n.png",
        "http://images.example.test:port/",
        "http://images.example.test:0/",
        "http://images.example.test:65536/",
        "http://images.example.test:-1/",
        "http://images.example.test:\uff11\uff12/",  # full-width digits
        "http://::1/",
        "http://a..b/",
        "http://-bad.example.test/",
        "http://bad-.example.test/",
        "http://" + "a" * 64 + ".example.test/",
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://0x100000000/",
        "http://images.example.test\\@evil.test/",
        "http://images.example.test%2F@evil.test/",
        "http://images.example.test/" + "a" * 9000,
        "http://xn--/",
    ],
)
def test_refuses_malformed_urls(url: str) -> None:
    with pytest.raises(ImageUrlError) as caught:
        fetch_image_url(
            url, policy=policy(), resolver=make_resolver(), transport=NoNetworkTransport()
        )
    assert caught.value.code == "invalid_image_url"


@pytest.mark.parametrize(
    ("allowed", "host", "ok"),
    [
        (("images.example.test",), "images.example.test", True),
        (("IMAGES.example.test",), "images.EXAMPLE.test.", True),
        (("images.example.test",), "other.example.test", False),
        (("images.example.test",), "images.example.test.evil.test", False),
        (("*.example.test",), "cdn.images.example.test", True),
        (("*.example.test",), "example.test", False),
        (("*.example.test",), "badexample.test", False),
        (("cdn.example.test", "*.img.test"), "a.img.test", True),
        (("*",), "anything.test", True),
        (("93.184.215.14",), "93.184.215.14", True),
        (("93.184.215.14",), "1572394766", True),  # the same address, spelt as one number
        (("*.example.test",), "93.184.215.14", False),
        (("bücher.example.test",), "xn--bcher-kva.example.test", True),  # IDNA on both sides
        (("*.example.test",), "bücher.example.test", True),
    ],
)
def test_allow_list_entries(allowed: tuple[str, ...], host: str, ok: bool) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})

    resolver = FakeResolver({"xn--bcher-kva.example.test": [PUBLIC_IP]})
    resolver.table.update(
        {name: [PUBLIC_IP] for name in (host.lower().rstrip("."), "example.test")}
    )
    url = f"http://{host}/cat.png"

    def run() -> FetchedImage:
        return fetch_image_url(
            url,
            policy=policy(allowed_hosts=allowed),
            resolver=resolver,
            transport=httpx.MockTransport(answer),
        )

    if ok:
        assert run().content == PNG
        assert seen[0].url.host == PUBLIC_IP
    else:
        with pytest.raises(ImageUrlError, match="not in the image URL allow-list"):
            run()
        assert seen == [] and resolver.calls == []


def test_an_empty_allow_list_allows_nothing_and_names_the_setting() -> None:
    with pytest.raises(ImageUrlError, match="STOLENTEE_IMAGE_URL_ALLOWED_HOSTS"):
        fetch_image_url(
            f"http://{IMAGE_HOST}/",
            policy=policy(allowed_hosts=()),
            resolver=make_resolver(),
            transport=NoNetworkTransport(),
        )


def test_disabled_policy_refuses_everything() -> None:
    resolver = make_resolver()
    with pytest.raises(ImageUrlDisabledError) as caught:
        fetch_image_url(
            f"http://{IMAGE_HOST}/",
            policy=policy(enabled=False),
            resolver=resolver,
            transport=NoNetworkTransport(),
        )
    assert caught.value.code == "image_url_disabled"
    assert caught.value.status_code == 400
    assert resolver.calls == []


# --- refusals on redirect ------------------------------------------------------------------------

REDIRECT_TARGETS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://0.0.0.0/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://[::ffff:127.0.0.1]/",
    f"http://{INTERNAL_HOST}/",
    "file:///etc/passwd",
    "ftp://images.example.test/",
    "gopher://images.example.test/",
    "http://user:pw@images.example.test/image.png",
    "http://[::1",
]


@pytest.mark.parametrize("target", REDIRECT_TARGETS)
def test_refuses_redirects_to_forbidden_places(
    fetch: Fetch, transport: LoopbackTransport, port: int, target: str
) -> None:
    with pytest.raises(ImageUrlError) as caught:
        fetch(redirect_to(port, target))
    assert caught.value.code == "invalid_image_url"
    assert len(transport.requests) == 1  # the redirect itself; its target was never contacted


def test_refuses_a_redirect_to_the_local_server_by_its_real_address(
    fetch: Fetch, transport: LoopbackTransport, port: int
) -> None:
    with pytest.raises(ImageUrlError, match="loopback"):
        fetch(redirect_to(port, f"http://127.0.0.1:{port}/image.png"))
    assert len(transport.requests) == 1


def test_refuses_a_redirect_to_a_host_outside_the_allow_list(
    fetch: Fetch, transport: LoopbackTransport, port: int
) -> None:
    resolver = make_resolver(elsewhere_example_test=[PUBLIC_IP])
    with pytest.raises(ImageUrlError, match=r"'elsewhere\.example\.test' is not in"):
        fetch(
            redirect_to(port, f"http://elsewhere.example.test:{port}/image.png"),
            allowed_hosts=(IMAGE_HOST,),
            resolver=resolver,
        )
    assert len(transport.requests) == 1
    assert resolver.calls == [(IMAGE_HOST, port)]


# --- size caps and time limits -------------------------------------------------------------------


def test_refuses_a_declared_content_length_above_the_cap(fetch: Fetch, port: int) -> None:
    started = time.monotonic()
    with pytest.raises(FileTooLargeError) as caught:
        fetch(image_url(port, "/declared-huge"), max_bytes=100_000)
    assert caught.value.status_code == 413
    assert caught.value.code == "file_too_large"
    assert "1000000000 bytes" in caught.value.detail
    assert time.monotonic() - started < 2


def test_stops_reading_a_streamed_body_at_the_cap(fetch: Fetch, port: int) -> None:
    started = time.monotonic()
    with pytest.raises(FileTooLargeError, match="larger than the limit of 100000 bytes"):
        fetch(image_url(port, "/stream-huge"), max_bytes=100_000)
    assert time.monotonic() - started < 2


def test_a_body_one_byte_over_the_cap_is_refused(fetch: Fetch, port: int) -> None:
    with pytest.raises(FileTooLargeError):
        fetch(image_url(port, "/exact?n=1001"), max_bytes=1000)


def test_times_out_waiting_for_headers(fetch: Fetch, port: int) -> None:
    started = time.monotonic()
    with pytest.raises(ImageDownloadTimeoutError) as caught:
        fetch(image_url(port, "/slow-headers"), timeout_s=0.5)
    assert caught.value.code == "failed_to_download_image"
    assert time.monotonic() - started < 1.5


def test_the_time_limit_covers_the_whole_body(fetch: Fetch, port: int) -> None:
    """Each byte arrives quickly, so only the wall-clock budget can stop this one."""
    started = time.monotonic()
    with pytest.raises(ImageDownloadTimeoutError):
        fetch(image_url(port, "/trickle"), timeout_s=0.5)
    assert time.monotonic() - started < 1.5


def test_the_time_limit_covers_dribbled_headers(fetch: Fetch, port: int) -> None:
    """httpx reads headers until they are complete; the watchdog has to cut the socket."""
    started = time.monotonic()
    with pytest.raises(ImageDownloadTimeoutError):
        fetch(image_url(port, "/dribble-headers"), timeout_s=0.5)
    assert time.monotonic() - started < 1.5


def test_the_time_limit_covers_dribbled_headers_over_tls(
    tls_transport: LoopbackTransport, tls_port: int
) -> None:
    started = time.monotonic()
    with pytest.raises(ImageDownloadTimeoutError):
        fetch_image_url(
            f"https://{IMAGE_HOST}:{tls_port}/dribble-headers",
            policy=policy(timeout_s=0.5),
            resolver=make_resolver(),
            transport=tls_transport,
        )
    assert time.monotonic() - started < 1.5


def test_the_time_limit_covers_dns() -> None:
    def slow(host: str, port: int) -> list[str]:
        time.sleep(2)
        return [PUBLIC_IP]

    started = time.monotonic()
    with pytest.raises(ImageDownloadTimeoutError, match="Resolving"):
        fetch_image_url(
            f"http://{IMAGE_HOST}/",
            policy=policy(timeout_s=0.3),
            resolver=slow,
            transport=NoNetworkTransport(),
        )
    assert time.monotonic() - started < 1


def test_the_time_limit_covers_redirect_chains(fetch: Fetch, port: int) -> None:
    with pytest.raises(ImageDownloadTimeoutError):
        fetch(redirect_to(port, "/slow-headers"), timeout_s=0.5)


# --- download failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 403, 500, 204, 304])
def test_non_2xx_answers_are_download_failures(fetch: Fetch, port: int, code: int) -> None:
    if code == 204:
        assert fetch(image_url(port, "/status?code=204")).content == b""  # 2xx: the decoder's job
        return
    with pytest.raises(ImageDownloadError, match=f"HTTP {code}") as caught:
        fetch(image_url(port, f"/status?code={code}"))
    assert caught.value.code == "failed_to_download_image"
    assert caught.value.status_code == 400


def test_a_redirect_without_location_is_a_download_failure(fetch: Fetch, port: int) -> None:
    with pytest.raises(ImageDownloadError, match="without a Location"):
        fetch(image_url(port, "/no-location"))


def test_compressed_answers_are_refused(fetch: Fetch, port: int) -> None:
    with pytest.raises(ImageDownloadError, match="'gzip'-compressed"):
        fetch(image_url(port, "/gzip"))


def test_an_unknown_host_is_a_download_failure(fetch: Fetch) -> None:
    with pytest.raises(ImageDownloadError, match=r"Could not resolve 'nowhere\.example\.test'"):
        fetch("http://nowhere.example.test/cat.png")


def test_a_refused_connection_is_a_download_failure(fetch: Fetch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ImageDownloadError, match="Could not connect"):
        fetch(image_url(closed_port))


def test_tries_the_next_vetted_address_when_one_does_not_connect() -> None:
    dialled: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        dialled.append(request.url.host)
        if request.url.host == "2606:4700:4700::1111":
            raise httpx.ConnectError("unreachable", request=request)
        return httpx.Response(200, content=PNG)

    resolver = FakeResolver({IMAGE_HOST: ["2606:4700:4700::1111", PUBLIC_IP]})
    fetched = fetch_image_url(
        f"http://{IMAGE_HOST}/",
        policy=policy(),
        resolver=resolver,
        transport=httpx.MockTransport(answer),
    )
    assert fetched.content == PNG
    assert dialled == ["2606:4700:4700::1111", PUBLIC_IP]


# --- https: pinned to the IP, verified against the name -----------------------------------------


@dataclass(frozen=True)
class _Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> _Pki:
    """A throw-away CA and a server certificate for IMAGE_HOST, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    folder = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=stolentee test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={IMAGE_HOST}")
    (folder / "server.ext").write_text(
        f"subjectAltName=DNS:{IMAGE_HOST}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2",
        "-CAcreateserial", "-out", "server.pem", "-extfile", "server.ext")  # fmt: skip
    return _Pki(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")


@pytest.fixture(scope="module")
def tls_port(pki: _Pki) -> Iterator[int]:
    """Port of an HTTPS test server on 127.0.0.1 presenting the certificate for IMAGE_HOST."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_transport(pki: _Pki) -> Iterator[LoopbackTransport]:
    loopback = LoopbackTransport(verify=ssl.create_default_context(cafile=str(pki.ca)))
    yield loopback
    loopback.close()


def test_https_is_pinned_and_verified_against_the_host_name(
    tls_transport: LoopbackTransport, tls_port: int
) -> None:
    url = f"https://{IMAGE_HOST}:{tls_port}/image.png"
    fetched = fetch_image_url(
        url, policy=policy(), resolver=make_resolver(), transport=tls_transport
    )
    assert fetched.content == PNG
    (request,) = tls_transport.requests
    assert request.url.host == PUBLIC_IP
    assert request.extensions["sni_hostname"] == IMAGE_HOST


def test_https_certificate_for_another_name_is_refused(
    tls_transport: LoopbackTransport, tls_port: int
) -> None:
    """The IP in the request URL does not loosen the check: the certificate must name the host."""
    resolver = make_resolver(mirror_example_test=[PUBLIC_IP])
    with pytest.raises(ImageDownloadError, match="Could not connect"):
        fetch_image_url(
            f"https://mirror.example.test:{tls_port}/image.png",
            policy=policy(),
            resolver=resolver,
            transport=tls_transport,
        )


# --- policy, settings and errors -----------------------------------------------------------------


def test_policy_from_settings() -> None:
    api = ApiSettings.model_validate(
        {
            "STOLENTEE_IMAGE_URL_ENABLED": "true",
            "STOLENTEE_IMAGE_URL_ALLOWED_HOSTS": " cdn.example.test, *.img.example.test ,",
            "STOLENTEE_IMAGE_URL_TIMEOUT_S": "4.5",
            "STOLENTEE_IMAGE_URL_MAX_REDIRECTS": "2",
            "STOLENTEE_MAX_BODY_BYTES": "5000",
        }
    )
    assert UrlPolicy.from_settings(api) == UrlPolicy(
        enabled=True,
        allowed_hosts=("cdn.example.test", "*.img.example.test"),
        timeout_s=4.5,
        max_redirects=2,
        max_bytes=5000,
    )


def test_policy_defaults_are_off() -> None:
    assert UrlPolicy.from_settings(ApiSettings()).enabled is False


@pytest.mark.parametrize("overrides", [{"timeout_s": 0}, {"max_redirects": -1}, {"max_bytes": 0}])
def test_policy_rejects_nonsense(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        policy(**overrides)


def test_error_codes_and_statuses() -> None:
    cases = {
        ImageUrlError: ("invalid_image_url", 400),
        TooManyRedirectsError: ("invalid_image_url", 400),
        ImageUrlDisabledError: ("image_url_disabled", 400),
        ImageDownloadError: ("failed_to_download_image", 400),
        ImageDownloadTimeoutError: ("failed_to_download_image", 400),
        FileTooLargeError: ("file_too_large", 413),
    }
    for cls, (code, status) in cases.items():
        assert issubclass(cls, ClientError)
        assert (cls.code, cls.status_code) == (code, status)


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_address_reason(ipaddress.ip_address(address)) is None


# --- fuzzing -------------------------------------------------------------------------------------

OWN_ERRORS = (ImageUrlError, ImageUrlDisabledError, ImageDownloadError, FileTooLargeError)


def _offline_resolver(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "the fuzz tests have no DNS")


def _answering_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})

    return httpx.MockTransport(answer)


def _assert_only_public_destinations(seen: list[httpx.Request]) -> None:
    for request in seen:
        ip = ipaddress.ip_address(request.url.host)
        assert forbidden_address_reason(ip) is None, request.url


_hosts = st.one_of(
    st.text(max_size=30),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
    st.integers(min_value=0, max_value=2**33).map(str),
    st.integers(min_value=0, max_value=2**32).map(hex),
    st.sampled_from(["localhost", IMAGE_HOST, "[::1]", "0x7f.1", "example.test.", "Ⅷ.test"]),
)
_urls = st.builds(
    lambda scheme, sep, userinfo, host, port, path: f"{scheme}{sep}{userinfo}{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "hTtPs", "file", "ftp", "gopher", "data", ""]),
    st.sampled_from(["://", ":/", ":", "//", ":\\\\", ":///"]),
    st.sampled_from(["", "user@", "user:pw@", "@", "a@b@"]),
    _hosts,
    st.one_of(
        st.just(""),
        st.integers(min_value=-5, max_value=70000).map(lambda p: f":{p}"),
        st.text(max_size=6).map(lambda p: f":{p}"),
    ),
    st.one_of(st.just(""), st.text(max_size=40).map(lambda p: "/" + p)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=st.one_of(st.text(max_size=200), _urls))
def test_fuzz_any_string_gives_our_errors_or_a_public_fetch(url: str) -> None:
    seen: list[httpx.Request] = []
    with contextlib.suppress(*OWN_ERRORS):
        fetch_image_url(
            url, policy=policy(), resolver=_offline_resolver, transport=_answering_transport(seen)
        )
    _assert_only_public_destinations(seen)


@settings(max_examples=400, deadline=None)
@given(address=st.ip_addresses())
def test_fuzz_resolved_addresses_are_vetted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    """An independent oracle: anything ipaddress calls non-public must be refused."""
    embedded = getattr(address, "ipv4_mapped", None)
    must_refuse = any(
        (
            not address.is_global,
            address.is_private,
            address.is_loopback,
            address.is_link_local,
            address.is_multicast,
            address.is_unspecified,
            address.is_reserved,
            embedded is not None and not embedded.is_global,
        )
    )
    seen: list[httpx.Request] = []
    resolver = FakeResolver({IMAGE_HOST: [str(address)]})
    try:
        fetch_image_url(
            f"https://{IMAGE_HOST}/cat.png",
            policy=policy(),
            resolver=resolver,
            transport=_answering_transport(seen),
        )
    except ImageUrlError:
        assert seen == []
        assert forbidden_address_reason(address) is not None
    else:
        assert not must_refuse, address
        assert [request.url.host for request in seen] == [address.compressed]


def _spell(value: int, style: int, bases: list[int]) -> str:
    """``value`` (a 32-bit address) as inet_aton reads it: 1 to 4 parts, each in some base."""
    octets = value.to_bytes(4, "big")
    parts = {
        1: [value],
        2: [octets[0], int.from_bytes(octets[1:], "big")],
        3: [octets[0], octets[1], int.from_bytes(octets[2:], "big")],
        4: list(octets),
    }[style]
    rendered = []
    for part, base in zip(parts, bases, strict=False):
        rendered.append({10: str(part), 16: hex(part), 8: "0" + format(part, "o")}[base])
    return ".".join(rendered)


_internal_ints = st.one_of(
    st.integers(0x7F000000, 0x7FFFFFFF),  # 127/8
    st.integers(0x0A000000, 0x0AFFFFFF),  # 10/8
    st.integers(0xA9FE0000, 0xA9FEFFFF),  # 169.254/16
    st.integers(0xC0A80000, 0xC0A8FFFF),  # 192.168/16
    st.integers(0xAC100000, 0xAC1FFFFF),  # 172.16/12
    st.integers(0x00000000, 0x00FFFFFF),  # 0/8
)


@settings(max_examples=300, deadline=None)
@given(
    value=_internal_ints,
    style=st.integers(1, 4),
    bases=st.lists(st.sampled_from([8, 10, 16]), min_size=4, max_size=4),
)
def test_fuzz_numeric_spellings_of_internal_addresses_are_refused(
    value: int, style: int, bases: list[int]
) -> None:
    host = _spell(value, style, bases)
    assert socket.inet_aton(host) == value.to_bytes(4, "big")  # the spelling is what we think
    with pytest.raises(ImageUrlError, match=str(ipaddress.IPv4Address(value)).replace(".", r"\.")):
        fetch_image_url(
            f"http://{host}/",
            policy=policy(),
            resolver=_offline_resolver,
            transport=NoNetworkTransport(),
        )
