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
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from stolentee.api.deps import ServicesDep
from stolentee.api.model_choice import check_model
from stolentee.api.routes.removebg_schema import (
    BACKGROUND_FIELDS,
    ERROR_RESPONSE,
    IGNORED_FIELDS,
    JSON_BOOLEANS,
    JSON_NUMBERS,
    MULTIPART,
    OPENAPI,
    PARAMETERS,
    SOURCE_FIELDS,
)
from stolentee.api.security import authenticate
from stolentee.errors import ClientError, InvalidImageError
from stolentee.keys.principals import UsageTotals
from stolentee.netsafe import fetch_image_url
from stolentee.removal.removebg_wire import OPTION_FIELDS, options_from_fields

router = APIRouter(tags=["Remove.bg compatible"])

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


async def read_fields(request: Request) -> Fields:
    """The request's parameters, whatever the body type (first value wins on repeats)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: Fields = {}
    if content_type in FORM_TYPES:
        form = await request.form(max_files=4, max_fields=_MAX_FIELDS)
        for name, value in form.multi_items():
            if name in fields:
                if isinstance(value, UploadFile):  # a repeat is ignored: release it now
                    await value.close()
            elif isinstance(value, UploadFile) and name in PARAMETERS:
                fields[name] = await _part_text(name, value)  # text sent as a file part
            else:
                fields[name] = value
        return fields
    if content_type == "application/json":
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidBodyError("the JSON body is malformed") from None
        if not isinstance(body, dict):
            raise InvalidBodyError("the JSON body must be an object")
        for name, value in list(body.items())[:_MAX_FIELDS]:
            if value is not None and (name in PARAMETERS or name in MULTIPART):
                fields[name] = _json_value(name, value)  # other names are ignored, as in forms
        return fields
    if not content_type and not await request.body():
        return fields
    raise InvalidBodyError(
        f"unsupported content type {content_type or '(none)'!r}; send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json"
    )


async def _part_text(name: str, part: UploadFile) -> str:
    """A text field that the client sent as a file part (with a filename): its content."""
    try:
        return (await part.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBodyError(f"{name} must be UTF-8 text") from None
    finally:
        await part.close()


def _json_value(name: str, value: object) -> str:
    """A JSON field as the text a form would carry, if its JSON type is one the field takes."""
    lenient = name in IGNORED_FIELDS
    if isinstance(value, bool) and (lenient or name in JSON_BOOLEANS):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lenient or name in JSON_NUMBERS:
            # 260.0 is the integer 260 in JSON Schema's eyes, so it is "260" here too.
            whole = isinstance(value, float) and value.is_integer()
            return str(int(value)) if whole else str(value)
    elif isinstance(value, str) and (
        name not in JSON_BOOLEANS or value in ("true", "false") or not value.strip()
    ):
        return value
    if lenient:
        expected = "a string, number or boolean"
    elif name in JSON_NUMBERS:
        expected = "a string or a number"
    else:
        expected = "true or false" if name in JSON_BOOLEANS else "a string"
    raise InvalidBodyError(f"{name} must be {expected}")


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
    openapi_extra=OPENAPI,
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
        chosen = await run_in_threadpool(check_model, text(fields, "model"), services.settings)
        options = replace(options, model=chosen)
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
    responses={403: {"description": "Missing or unknown API key", **ERROR_RESPONSE}},
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
