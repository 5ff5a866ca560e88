"""``POST /v1.0/removebg`` and ``GET /v1.0/account``, compatible with Remove.bg's API v1.0.

A client written for Remove.bg works by changing its base URL. The request may be multipart,
``application/x-www-form-urlencoded`` or JSON; the image comes from exactly one of
``image_file``, ``image_file_b64`` or ``image_url``. Parameters Remove.bg offers that stolentee
does not implement (``shadow_type``, ``shadow_opacity``, ``add_shadow``, ``semitransparency``,
``type_level``) are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from stolentee.api.deps import ServicesDep
from stolentee.api.security import authenticate
from stolentee.errors import ClientError, InvalidImageError
from stolentee.keys.principals import UsageTotals
from stolentee.netsafe import fetch_image_url
from stolentee.removal.removebg_wire import OPTION_FIELDS, options_from_fields

router = APIRouter(tags=["Remove.bg compatible"])

SOURCE_FIELDS = ("image_file", "image_file_b64", "image_url")
BACKGROUND_FIELDS = ("bg_image_file", "bg_image_url")
IGNORED_FIELDS = ("type_level", "shadow_type", "shadow_opacity", "add_shadow", "semitransparency")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_MAX_FIELDS = 64

Fields = dict[str, str | UploadFile]


class MissingSourceError(ClientError):
    code = "missing_source"
    title = "No image given"


class MultipleSourcesError(ClientError):
    code = "multiple_sources"
    title = "Multiple image sources given"


class InvalidBodyError(ClientError):
    code = "invalid_request"
    title = "Invalid request body"


_STRING = {"type": "string"}
_FILE = {"type": "string", "format": "binary"}
_PARAMETERS: dict[str, dict[str, Any]] = {
    "image_file_b64": {**_STRING, "description": "The image, base64-encoded."},
    "image_url": {
        **_STRING,
        "description": "URL of the image; only when the server enables URL inputs.",
    },
    "size": {
        **_STRING,
        "default": "preview",
        "description": "preview (≤0.25 MP, 0.25 credit), full / 4k (≤25 MP), 50MP, auto; "
        "legacy small, regular, medium, hd.",
    },
    "type": {
        **_STRING,
        "default": "auto",
        "description": "auto, graphic, photo, person, product, animal, car, transportation.",
    },
    "format": {**_STRING, "default": "auto", "enum": ["auto", "png", "jpg", "webp", "zip"]},
    "roi": {**_STRING, "default": "0% 0% 100% 100%", "description": "x1 y1 x2 y2 in px or %."},
    "crop": {"type": "boolean", "default": False},
    "crop_margin": {**_STRING, "default": "0", "description": "0-500px or 0-50%."},
    "scale": {**_STRING, "default": "original", "description": "original, or 10%-100%."},
    "position": {**_STRING, "default": "original", "description": "original, center, x% [y%]."},
    "channels": {**_STRING, "default": "rgba", "enum": ["rgba", "alpha"]},
    "bg_color": {**_STRING, "description": "Hex colour (81d4fa, fff8) or a colour name."},
    "bg_image_url": {**_STRING, "description": "URL of a background image (URL inputs only)."},
    **{name: {**_STRING, "description": "Accepted and ignored."} for name in IGNORED_FIELDS},
}
_MULTIPART = {
    "image_file": {**_FILE, "description": "The image file."},
    "bg_image_file": {**_FILE, "description": "A background image file."},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "code"],
                "properties": {
                    "title": {"type": "string"},
                    "code": {"type": "string"},
                    "detail": {"type": "string"},
                    "meta": {"type": "object"},
                },
            },
        }
    },
}
_ERROR_RESPONSE = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {**_MULTIPART, **_PARAMETERS}}
            },
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": _PARAMETERS}
            },
            "application/json": {"schema": {"type": "object", "properties": _PARAMETERS}},
        },
    },
    "parameters": [
        {"name": "X-Api-Key", "in": "header", "required": False, "schema": _STRING},
    ],
    "responses": {
        "200": {
            "description": "The result image (or a zip), or JSON when `Accept: application/json`",
            "content": {
                "image/png": {"schema": _FILE},
                "image/jpeg": {"schema": _FILE},
                "image/webp": {"schema": _FILE},
                "application/zip": {"schema": _FILE},
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "data": {
                                "type": "object",
                                "properties": {
                                    "result_b64": {"type": "string"},
                                    "foreground_top": {"type": "integer"},
                                    "foreground_left": {"type": "integer"},
                                    "foreground_width": {"type": "integer"},
                                    "foreground_height": {"type": "integer"},
                                },
                            }
                        },
                    }
                },
            },
        },
        "400": {"description": "Invalid input", **_ERROR_RESPONSE},
        "403": {"description": "Missing or unknown API key", **_ERROR_RESPONSE},
        "413": {"description": "Body too large", **_ERROR_RESPONSE},
        "429": {"description": "Rate limited or busy (see Retry-After)", **_ERROR_RESPONSE},
        "503": {"description": "Past the deadline", **_ERROR_RESPONSE},
    },
}


async def read_fields(request: Request) -> Fields:
    """The request's parameters, whatever the body type (first value wins on repeats)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: Fields = {}
    if content_type in FORM_TYPES:
        form = await request.form(max_files=4, max_fields=_MAX_FIELDS)
        for name, value in form.multi_items():
            if name not in fields:
                fields[name] = value
            elif isinstance(value, UploadFile):  # a repeat is ignored: release it now
                await value.close()
        return fields
    if content_type == "application/json":
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidBodyError("the JSON body is malformed") from None
        if not isinstance(body, dict):
            raise InvalidBodyError("the JSON body must be an object")
        for name, value in list(body.items())[:_MAX_FIELDS]:
            if value is None:
                continue
            if isinstance(value, bool):
                fields[name] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                fields[name] = str(value)
            else:
                raise InvalidBodyError(f"{name} must be a string, number or boolean")
        return fields
    if not content_type and not await request.body():
        return fields
    raise InvalidBodyError(
        f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json"
    )


async def close_uploads(fields: Fields) -> None:
    """Release the uploaded files of a parsed form (their spooled temporary files)."""
    for value in fields.values():
        if isinstance(value, UploadFile):
            await value.close()


def text(fields: Fields, name: str) -> str | None:
    """A field's text value; empty counts as absent. A file where text is expected is an error."""
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidBodyError(f"{name} must be a text field, not a file")
    return value if value.strip() else None


def option_texts(fields: Fields) -> dict[str, str]:
    """The option fields as text (a file where an option is expected is an error)."""
    texts = {name: text(fields, name) for name in OPTION_FIELDS}
    return {name: value for name, value in texts.items() if value is not None}


def decode_b64(value: str) -> bytes:
    payload = value.strip()
    if payload.startswith("data:") and "," in payload:
        payload = payload.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("image_file_b64 is not valid base64") from None
    if not data:
        raise InvalidImageError("image_file_b64 decodes to nothing")
    return data


async def read_upload(upload: UploadFile, name: str) -> bytes:
    data = await upload.read()
    if not data:
        raise InvalidImageError(f"{name} is empty (0 bytes)")
    return data


async def fetch_url(services: ServicesDep, url: str) -> bytes:
    fetched = await run_in_threadpool(fetch_image_url, url, policy=services.url_policy)
    return fetched.content


async def image_source(services: ServicesDep, fields: Fields) -> bytes:
    given = [name for name in SOURCE_FIELDS if fields.get(name) not in (None, "")]
    if not given:
        raise MissingSourceError("send the image as image_file, image_file_b64 or image_url")
    if len(given) > 1:
        raise MultipleSourcesError(f"send exactly one image source; got {', '.join(given)}")
    name = given[0]
    value = fields[name]
    if name == "image_file":
        if not isinstance(value, UploadFile):
            raise InvalidBodyError("image_file must be a file upload (multipart/form-data)")
        return await read_upload(value, name)
    source = text(fields, name)
    assert source is not None
    if name == "image_file_b64":
        return decode_b64(source)
    return await fetch_url(services, source)


async def background_source(services: ServicesDep, fields: Fields) -> bytes | None:
    given = [name for name in BACKGROUND_FIELDS if fields.get(name) not in (None, "")]
    if len(given) > 1:
        raise MultipleSourcesError("send at most one of bg_image_file and bg_image_url")
    if not given:
        return None
    value = fields[given[0]]
    if isinstance(value, UploadFile):
        return await read_upload(value, given[0])
    return await fetch_url(services, value)


@router.post(
    "/v1.0/removebg",
    openapi_extra=_OPENAPI,
    summary="Remove the background of an image (Remove.bg API v1.0)",
    response_class=Response,
)
async def remove_background(request: Request, services: ServicesDep) -> Response:
    principal = await authenticate(request, services.runtime.keys)
    fields = await read_fields(request)
    try:
        data = await image_source(services, fields)
        options = options_from_fields(
            option_texts(fields), bg_image=await background_source(services, fields)
        )
    finally:
        await close_uploads(fields)
    served = await services.removal.serve(principal, data, options)
    result = served.result
    if "application/json" in request.headers.get("accept", ""):
        payload: dict[str, Any] = {"result_b64": base64.b64encode(result.data).decode("ascii")}
        if result.foreground is not None:
            payload.update(
                foreground_top=result.foreground.top,
                foreground_left=result.foreground.left,
                foreground_width=result.foreground.width,
                foreground_height=result.foreground.height,
            )
        return JSONResponse({"data": payload}, headers=served.headers)
    return Response(result.data, media_type=result.content_type, headers=served.headers)


@router.get(
    "/v1.0/account",
    summary="Usage of this API key (Remove.bg's account shape)",
    responses={403: {"description": "Missing or unknown API key", **_ERROR_RESPONSE}},
)
async def account(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Remove.bg's account document. Self-hosted removal has no credit balance: the credit
    figures are zero, and ``usage`` says what Remove.bg would have charged this key."""
    principal = await authenticate(request, services.runtime.keys)
    usage = await run_in_threadpool(services.runtime.keys.usage, principal)
    return {
        "data": {
            "attributes": {
                "credits": {"total": 0, "subscription": 0, "payg": 0, "enterprise": 0},
                "api": {"free_calls": 0, "sizes": "all"},
                "usage": {
                    "key": principal.name,
                    "today": _totals(usage.today),
                    "all_time": _totals(usage.all_time),
                },
            }
        }
    }


def _totals(totals: UsageTotals) -> dict[str, float | int]:
    return {
        "images": totals.images,
        "megapixels": round(totals.megapixels, 3),
        "credits_charged": round(totals.credits, 3),
    }
