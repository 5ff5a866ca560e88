"""``POST /api/remove`` and ``GET /api/remove?url=``: rembg's server API, for rembg clients.

Form fields as rembg's server: ``file``, ``model``, ``om`` (only mask), ``bgc``
(``r,g,b,a``); ``a``, ``af``, ``ab``, ``ae`` (alpha matting), ``ppm`` (post-process mask), ``dc``
and ``vm`` are accepted and ignored: stolentee's graphic path already mattes and decontaminates
edges. The answer is always ``image/png``, with the same key, limit and URL policy as the
Remove.bg-compatible endpoint.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from stolentee.api.deps import ServicesDep
from stolentee.api.routes.removebg import fetch_url, read_upload
from stolentee.api.security import authenticate
from stolentee.errors import InvalidBgColorError, InvalidOptionError
from stolentee.keys.principals import Principal
from stolentee.removal.base import OutputFormat, OutputSize, RemovalOptions
from stolentee.removal.models import MODELS

router = APIRouter(tags=["rembg compatible"])


class InvalidModelError(InvalidOptionError):
    code = "invalid_model"
    title = "Invalid model"


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


def parse_bgc(value: str | None) -> tuple[int, int, int, int] | None:
    """rembg's ``bgc``: ``r,g,b,a`` with 0-255 components."""
    if value is None or not value.strip():
        return None
    parts = value.split(",")
    try:
        components = [int(part) for part in parts]
        if len(components) != 4 or not all(0 <= c <= 255 for c in components):
            raise ValueError(value)
    except ValueError:
        raise InvalidBgColorError(f"bgc must be r,g,b,a with values 0-255; got {value!r}") from None
    return (components[0], components[1], components[2], components[3])


def rembg_options(model: str | None, only_mask: bool, bgc: str | None) -> RemovalOptions:
    if model and model not in MODELS:
        raise InvalidModelError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
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
    a: Annotated[bool, Form(description="Alpha matting (ignored).")] = False,
    af: Annotated[int, Form(description="Ignored.")] = 240,
    ab: Annotated[int, Form(description="Ignored.")] = 10,
    ae: Annotated[int, Form(description="Ignored.")] = 10,
    om: Annotated[bool, Form(description="Only the mask.")] = False,
    ppm: Annotated[bool, Form(description="Post-process mask (ignored).")] = False,
    bgc: Annotated[str | None, Query(description="Background colour r,g,b,a.")] = None,
) -> Response:
    """Remove the background of an uploaded image (rembg's ``POST /api/remove``)."""
    principal = await authenticate(request, services.runtime.keys)
    options = rembg_options(model, om, bgc)
    return await _serve(services, principal, await read_upload(file, "file"), options)


@router.get("/api/remove", responses=_RESPONSES, response_class=Response)
async def remove_url(
    request: Request,
    services: ServicesDep,
    url: Annotated[str, Query(description="URL of the image (server must enable URL inputs).")],
    model: Annotated[str | None, Query(description="Model name.")] = None,
    om: Annotated[bool, Query(description="Only the mask.")] = False,
    bgc: Annotated[str | None, Query(description="Background colour r,g,b,a.")] = None,
) -> Response:
    """Remove the background of the image at ``url`` (rembg's ``GET /api/remove``)."""
    principal = await authenticate(request, services.runtime.keys)  # before any outbound request
    options = rembg_options(model, om, bgc)
    return await _serve(services, principal, await fetch_url(services, url), options)
