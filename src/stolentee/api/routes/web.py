"""``/``, ``/ops`` and ``/web/{name}``: the upload page and the ops dashboard, static pages that
use only the public API (``/ops`` reads ``GET /v1/ops/summary`` with the key it asks for).

The files live in ``stolentee/api/web/`` and are read once per process. They are sent with
``nosniff``, a Content-Security-Policy that allows scripts, styles and connections to this origin
only (images also from ``data:``, ``blob:`` and the CDN domain that serves cutouts), and a
strong ``ETag`` so a browser revalidates cheaply (``Cache-Control: no-cache``: a new release
shows at once).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stolentee.api.deps import SettingsDep
from stolentee.config import Settings
from stolentee.errors import NotFoundError

router = APIRouter(include_in_schema=False)

_CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "ops.html": "text/html; charset=utf-8",
    "ops.js": "text/javascript; charset=utf-8",
    "ops.css": "text/css; charset=utf-8",
}
ASSETS = tuple(name for name in _CONTENT_TYPES if not name.endswith(".html"))


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@cache
def static_file(name: str) -> StaticFile:
    """The packaged file ``name`` (one of ``_CONTENT_TYPES``), read on first use."""
    body = resources.files("stolentee.api.web").joinpath(name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body=body, content_type=_CONTENT_TYPES[name], etag=etag)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def content_security_policy(settings: Settings) -> str:
    """This origin only, plus the origins that public object URLs may point at (images)."""
    image_sources = ["'self'", "data:", "blob:"]
    for url in (settings.storage.r2_public_domain, settings.service.public_base_url):
        origin = _origin(url) if url else None
        if origin is not None and origin not in image_sources:
            image_sources.append(origin)
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(image_sources)}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _serve(request: Request, settings: Settings, name: str) -> Response:
    item = static_file(name)
    headers = {
        "ETag": item.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    if item.etag in request.headers.get("If-None-Match", ""):
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.content_type, headers=headers)


@router.get("/")
@router.head("/")
async def index(request: Request, settings: SettingsDep) -> Response:
    """The upload page."""
    return _serve(request, settings, "index.html")


@router.get("/ops")
@router.head("/ops")
async def ops(request: Request, settings: SettingsDep) -> Response:
    """The ops dashboard (no figures in the page itself: it asks for a key and fetches them)."""
    return _serve(request, settings, "ops.html")


@router.get("/web/{name}")
@router.head("/web/{name}")
async def web_asset(name: str, request: Request, settings: SettingsDep) -> Response:
    """The page's script and style sheet; nothing else under ``/web/``."""
    if name not in ASSETS:
        raise NotFoundError(f"no page asset named {name!r}")
    return _serve(request, settings, name)
