"""The OpenAPI schema, as exact as the server: what it documents as valid, the server accepts.

Two halves. The value grammars of request fields (Remove.bg's ``size``, ``roi``, ``bg_color``...,
the designs list's cursor, the stats' dates) are schema fragments here, used by the routes when
they declare their parameters. And :func:`install_openapi` tailors the generated schema to the
configuration the process runs with: inputs the server refuses in this configuration (image URLs
while ``STOLENTEE_IMAGE_URL_ENABLED`` is off, ``callback_url`` while callbacks are off,
``upload_key`` on a store without direct uploads) are left out rather than documented and then
refused, image parts name the image types the decoder
reads, and "exactly one image source" is a ``oneOf``.

What a schema cannot say is carried by a named ``format`` (JSON Schema leaves format names open):
``removebg-roi`` (``x1 < x2`` and ``y1 < y2`` where both are in the same unit) and
``base64-image`` (base64 of an image file). Their grammar is in the field's ``pattern`` and
description as well, so a client that knows nothing of the format still sends the right shape.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from PIL import ImageColor

from stolentee.api.model_choice import selectable_models
from stolentee.config import Settings
from stolentee.removal.base import KIND_ALIASES, SIZE_ALIASES
from stolentee.removal.imaging.decode import ACCEPTED_FORMATS

# The media types of the formats the decoder reads (removal.imaging.decode.ACCEPTED_FORMATS).
IMAGE_MEDIA_TYPES = tuple(f"image/{name.lower()}" for name in ACCEPTED_FORMATS)
ROI_FORMAT = "removebg-roi"
BASE64_IMAGE_FORMAT = "base64-image"

# --- value grammars (regular expressions, anchored) ---------------------------------------------

_PERCENT = r"(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%"  # 0% .. 100%
_PIXELS = r"[0-9]{1,5}(\.[0-9]+)?(px)?"
_LENGTH = f"({_PERCENT}|{_PIXELS})"
_HEX_COLOR = r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})"
_COLOR_NAMES = sorted(ImageColor.colormap)

SIZE_VALUES = [*sorted(SIZE_ALIASES), "50MP"]
KIND_VALUES = sorted(KIND_ALIASES)
OUTPUT_FORMATS = ["auto", "png", "jpg", "jpeg", "webp", "zip"]
DESIGN_FORMATS = ["png", "webp"]

ROI = {
    "type": "string",
    "format": ROI_FORMAT,
    "pattern": f"^{_LENGTH} {_LENGTH} {_LENGTH} {_LENGTH}$",
    "description": "x1 y1 x2 y2, each in px or % (0-100%); x1 < x2 and y1 < y2 where both "
    "are in the same unit.",
}
CROP_MARGIN = {
    "type": "string",
    "pattern": r"^((500|[1-4][0-9]{2}|[1-9]?[0-9])(px)?|(50(\.0+)?|[1-4]?[0-9](\.[0-9]+)?)%)$",
    "description": "0-500px or 0-50%.",
}
SCALE = {
    "type": "string",
    "pattern": r"^(original|(100(\.0+)?|[1-9][0-9](\.[0-9]+)?)%)$",
    "description": "original, or 10%-100%.",
}
POSITION = {
    "type": "string",
    "pattern": f"^(original|center|{_PERCENT}( {_PERCENT})?)$",
    "description": "original, center, x% or x% y% (0-100%).",
}
BG_COLOR = {
    "anyOf": [
        {"type": "string", "pattern": f"^{_HEX_COLOR}$"},
        {"type": "string", "enum": _COLOR_NAMES},
    ],
    "description": "Hex colour (81d4fa, #fff8: 3, 4, 6 or 8 digits) or a CSS colour name.",
}
BASE64_IMAGE = {
    "type": "string",
    "format": BASE64_IMAGE_FORMAT,
    "contentEncoding": "base64",
    "contentMediaType": "image/*",
    "description": "The image file, base64-encoded.",
}
_BYTE = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # 0 .. 255, no leading zeros
RGBA_PATTERN = f"{_BYTE},{_BYTE},{_BYTE},{_BYTE}"
# The designs list's cursor: microseconds since 1970 (UTC) and a design id. Any value of this
# shape is a position in the list (the page after it), so the schema says all there is to say.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
DATE = {"type": "string", "format": "date"}
# A form field left blank (empty or only whitespace) counts as not given, as in HTML forms.
BLANK = {"type": "string", "pattern": r"^\s*$"}


# FastAPI's own form fields take their default when sent empty (exactly "", no whitespace).
EMPTY = {"type": "string", "maxLength": 0}


def blank_or(schema: dict[str, Any], blank: dict[str, Any] = BLANK) -> dict[str, Any]:
    """``schema``, or a blank value (the field's default applies)."""
    outer: dict[str, Any] = {
        key: schema[key] for key in ("default", "description", "title") if key in schema
    }
    inner = {key: value for key, value in schema.items() if key not in outer}
    return {"anyOf": [*inner.get("anyOf", [inner]), blank], **outer}


# A direct upload's key (api/routes/uploads.py: the caller's folder, a random name, an extension).
UPLOAD_KEY_PATTERN = r"^uploads/direct/[0-9a-f]{16}/[0-9A-Za-z]{32}\.(jpg|png|webp|gif|bmp|tif)$"


# --- tailoring the generated schema to the configuration ----------------------------------------


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """``/openapi.json`` as this process checks requests (built once, on first use)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            app.openapi_schema = tailor(
                schema,
                image_urls=settings.api.image_url_enabled,
                callbacks=settings.api.callbacks_enabled,
                direct_uploads=settings.storage.backend != "local",
                models=selectable_models(settings),
            )
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def tailor(
    schema: dict[str, Any],
    *,
    image_urls: bool,
    callbacks: bool,
    direct_uploads: bool,
    models: list[str],
) -> dict[str, Any]:
    """A copy of ``schema`` without what this configuration refuses; see the module docstring."""
    schema = copy.deepcopy(schema)
    paths = schema.get("paths", {})
    components = schema.get("components", {}).get("schemas", {})

    removebg = paths.get("/v1.0/removebg", {}).get("post")
    if removebg is not None:
        for media_type, content in removebg["requestBody"]["content"].items():
            body = content["schema"]
            if not image_urls:
                _drop(body, "image_url", "bg_image_url")
            _one_source(body, ("image_file", "image_file_b64", "image_url"))
            if {"bg_image_file", "bg_image_url"} <= set(body["properties"]):
                body["not"] = {"required": ["bg_image_file", "bg_image_url"]}
            if media_type == "multipart/form-data":
                _image_parts(content, "image_file", "bg_image_file")
            _model_enum(body, models)

    rembg = paths.get("/api/remove", {})
    for method in ("get", "post"):
        operation = rembg.get(method)
        if operation is not None:
            _rembg_models(operation, components, models)

    create = paths.get("/v1/designs", {}).get("post")
    if create is not None:
        content = create["requestBody"]["content"]["multipart/form-data"]
        body = _resolve(content["schema"], components)
        if not callbacks:
            _drop(body, "callback_url")
        if not direct_uploads:
            _drop(body, "upload_key")
        if "model" in body.get("properties", {}):  # a form sends text: no null
            body["properties"]["model"] = _not_null(body["properties"]["model"])
        _model_enum(body, models)
        _one_source(body, ("file", "upload_key"))
        _empty_takes_the_default(body, sources=("file", "upload_key"))
        _image_parts(content, "file")
    return schema


def _empty_takes_the_default(body: dict[str, Any], *, sources: tuple[str, ...]) -> None:
    """A FastAPI form field that is not required may be sent empty: its default applies. (Not
    said of files and image sources: an empty source is no source.)"""
    required = {*body.get("required", []), *sources}
    for name, field in body.get("properties", {}).items():
        is_file = field.get("format") == "binary" or "contentMediaType" in field
        if name not in required and not is_file:
            body["properties"][name] = blank_or(field, EMPTY)


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The component a ``$ref`` names, copied to the operation (it is tailored per operation)."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved = copy.deepcopy(components[ref.rsplit("/", 1)[-1]])
    schema.clear()
    schema.update(resolved)
    return schema


def _drop(body: dict[str, Any], *names: str) -> None:
    for name in names:
        body.get("properties", {}).pop(name, None)
        if name in body.get("required", []):
            body["required"].remove(name)


def _one_source(body: dict[str, Any], sources: tuple[str, ...]) -> None:
    """Exactly one of ``sources`` (those the body still has) is required."""
    present = [name for name in sources if name in body.get("properties", {})]
    for name in present:  # a null source counts as absent for the server, not as a source
        body["properties"][name] = _not_null(body["properties"][name])
    if len(present) == 1:
        body["required"] = sorted({*body.get("required", []), present[0]})
    elif present:
        body["oneOf"] = [{"required": [name]} for name in present]


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    variants = field.get("anyOf")
    if variants is None:
        return field
    kept = [variant for variant in variants if variant.get("type") != "null"]
    rest = {key: value for key, value in field.items() if key != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _image_parts(content: dict[str, Any], *names: str) -> None:
    """Multipart parts that must be image files, of a type the decoder reads."""
    encoding = content.setdefault("encoding", {})
    for name in names:
        if name in _resolve_properties(content):
            encoding[name] = {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}


def _resolve_properties(content: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = content["schema"].get("properties", {})
    return properties


def _model_enum(body: dict[str, Any], models: list[str]) -> None:
    """A body's ``model`` names what is selectable here (none: no field): the plain string
    variant becomes the enum; blank and null variants stay."""
    field = body.get("properties", {}).get("model")
    if field is None:
        return
    if not models:
        _drop(body, "model")
        return
    _enum_strings(field, models)


def _enum_strings(field: dict[str, Any], models: list[str]) -> None:
    for variant in field.get("anyOf", [field]):
        if "anyOf" in variant:
            _enum_strings(variant, models)
        elif variant.get("type") == "string" and not {"pattern", "maxLength"} & set(variant):
            variant["enum"] = models


def _rembg_models(operation: dict[str, Any], components: dict[str, Any], models: list[str]) -> None:
    """rembg's ``model`` names one of the models installed here (none installed: no field)."""
    parameters = operation.get("parameters", [])
    for parameter in list(parameters):
        if parameter.get("name") == "model":
            if models:
                parameter["schema"] = {**_not_null(parameter["schema"]), "enum": models}
            else:
                parameters.remove(parameter)
    body = operation.get("requestBody")
    if body is None:
        return
    content = body["content"]["multipart/form-data"]
    form = _resolve(content["schema"], components)
    if "model" in form.get("properties", {}):
        if models:
            form["properties"]["model"] = {**_not_null(form["properties"]["model"]), "enum": models}
        else:
            _drop(form, "model")
    _empty_takes_the_default(form, sources=("file",))
    _image_parts(content, "file")
