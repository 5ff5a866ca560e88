"""``POST /api/remove`` and ``GET /api/remove?url=``: rembg's server API, for rembg clients.

Form fields as rembg's server: ``file``, ``model``, ``om`` (only mask), ``bgc``
(``r,g,b,a``); ``a``, ``af``, ``ab``, ``ae`` (alpha matting), ``ppm`` (post-process mask), ``dc``
and ``vm`` are accepted and ignored (stolentee's graphic path already mattes and decontaminates
edges), like any field it does not know, so they are not declared. The answer is always
``image/png``, with the same key, limit and URL policy as the Remove.bg-compatible endpoint.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from stolentee.api import openapi
from stolentee.api.deps import ServicesDep
from stolentee.api.model_choice import check_model
from stolentee.api.routes.removebg import fetch_url, read_upload
from stolentee.api.security import authenticate
from stolentee.config import Settings
from stolentee.errors import InvalidBgColorError
from stolentee.keys.principals import Principal
from stolentee.removal.base import OutputFormat, OutputSize, RemovalOptions

router = APIRouter(tags=["rembg compatible"])
# ``GET /api/remove?url=`` exists only where image URLs are enabled (STOLENTEE_IMAGE_URL_ENABLED):
# elsewhere every such call would be refused, so the route is not offered (405, not in the schema).
url_router = APIRouter(tags=["rembg compatible"])


_ERROR: dict[str, object] = {
    "description": 'JSON error: `{"errors": [{"title", "code", "detail"}]}`'
}
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The cutout", "content": {"image/png": {}}},
    400: _ERROR,
    403: _ERROR,
    413: _ERROR,
    429: _ERROR,
    503: _ERROR,
}


# A flag as pydantic reads one from a form (true/false, 1/0, yes/no, on/off, t/f, y/n).
_FLAG: dict[str, Any] = {
    "anyOf": [
        {"type": "boolean"},
        {"enum": [0, 1]},
        {"type": "string", "pattern": "^([Tt]rue|TRUE|[Ff]alse|FALSE|[01]|yes|no|on|off|[tfyn])$"},
    ]
}


def _flag(schema: dict[str, Any]) -> None:
    schema.pop("type", None)
    schema.update(_FLAG)


_RGBA = re.compile(openapi.RGBA_PATTERN, re.ASCII)
_BGC: dict[str, Any] = {
    "description": "Background colour r,g,b,a (0-255 each); blank for none.",
    "json_schema_extra": {"pattern": rf"^(\s*|{openapi.RGBA_PATTERN})$"},
}


def parse_bgc(value: str | None) -> tuple[int, int, int, int] | None:
    """rembg's ``bgc``: ``r,g,b,a`` with 0-255 components (blank: none)."""
    if value is None or not value.strip():
        return None
    if not _RGBA.fullmatch(value):
        raise InvalidBgColorError(f"bgc must be r,g,b,a with values 0-255; got {value!r}")
    r, g, b, a = (int(part) for part in value.split(","))
    return (r, g, b, a)


def rembg_options(
    model: str | None, only_mask: bool, bgc: str | None, *, settings: Settings
) -> RemovalOptions:
    model = check_model(model, settings)
    return RemovalOptions(
        size=OutputSize.FULL,
        format=OutputFormat.PNG,
        alpha_only=only_mask,
        bg_color=parse_bgc(bgc),
        model=model or None,
    )


async def _serve(
    services: ServicesDep, principal: Principal, data: bytes, options: RemovalOptions
) -> Response:
    served = await services.removal.serve(principal, data, options)
    return Response(served.result.data, media_type="image/png", headers=served.headers)


@router.post("/api/remove", responses=_RESPONSES, response_class=Response)
async def remove_upload(
    request: Request,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="The image.")],
    model: Annotated[str | None, Form(description="Model name (default: server's).")] = None,
    om: Annotated[bool, Form(description="Only the mask.", json_schema_extra=_flag)] = False,
    bgc: Annotated[str | None, Query(**_BGC)] = None,
) -> Response:
    """Remove the background of an uploaded image (rembg's ``POST /api/remove``)."""
    principal = await authenticate(request, services.runtime.keys)
    options = rembg_options(model, om, bgc, settings=services.settings)
    return await _serve(services, principal, await read_upload(file, "file"), options)


@url_router.get("/api/remove", responses=_RESPONSES, response_class=Response)
async def remove_url(
    request: Request,
    services: ServicesDep,
    url: Annotated[str, Query(description="URL of the image (server must enable URL inputs).")],
    model: Annotated[str | None, Query(description="Model name.")] = None,
    om: Annotated[bool, Query(description="Only the mask.")] = False,
    bgc: Annotated[str | None, Query(**_BGC)] = None,
) -> Response:
    """Remove the background of the image at ``url`` (rembg's ``GET /api/remove``)."""
    principal = await authenticate(request, services.runtime.keys)  # before any outbound request
    options = rembg_options(model, om, bgc, settings=services.settings)
    return await _serve(services, principal, await fetch_url(services, url), options)
