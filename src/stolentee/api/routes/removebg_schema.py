"""The request schema of ``POST /v1.0/removebg``: Remove.bg's parameters as exact as the server.

Every body type (multipart, form-encoded, JSON) carries the same parameters. A form carries text
only; a JSON body may also use ``null`` (the field is absent), ``true``/``false`` for ``crop``,
numbers where the value is a number (``crop_margin`` in px, ``scale`` in %) and any scalar for the
ignored fields. The value grammars come from :mod:`stolentee.api.openapi`; what depends on the
configuration (image URLs, the sources' ``oneOf``) is tailored there at start-up.
"""

from __future__ import annotations

from typing import Any

from stolentee.api import openapi

SOURCE_FIELDS = ("image_file", "image_file_b64", "image_url")
BACKGROUND_FIELDS = ("bg_image_file", "bg_image_url")
IGNORED_FIELDS = ("type_level", "shadow_type", "shadow_opacity", "add_shadow", "semitransparency")

_STRING = {"type": "string"}
_FILE = {"type": "string", "format": "binary"}
PARAMETERS: dict[str, dict[str, Any]] = {
    "image_file_b64": openapi.BASE64_IMAGE,
    "image_url": {
        **_STRING,
        "format": "uri",
        "description": "URL of the image; only when the server enables URL inputs.",
    },
    "size": {
        **_STRING,
        "default": "preview",
        "enum": openapi.SIZE_VALUES,
        "description": "preview (≤0.25 MP, 0.25 credit), full / 4k (≤25 MP), 50MP, auto; "
        "legacy small, regular, medium, hd.",
    },
    "type": {
        **_STRING,
        "default": "auto",
        "enum": openapi.KIND_VALUES,
        "description": "auto, graphic, photo, person, product, animal, car, transportation.",
    },
    "format": {**_STRING, "default": "auto", "enum": openapi.OUTPUT_FORMATS},
    "roi": {**openapi.ROI, "default": "0% 0% 100% 100%"},
    "crop": {"type": "boolean", "default": False},
    "crop_margin": {**openapi.CROP_MARGIN, "default": "0"},
    "scale": {**openapi.SCALE, "default": "original"},
    "position": {**openapi.POSITION, "default": "original"},
    "channels": {**_STRING, "default": "rgba", "enum": ["rgba", "alpha"]},
    # An extension beyond Remove.bg's parameters: the enum of what is installed is set at start-up.
    "model": {
        **_STRING,
        "description": "Model or tier (fast, quality) for photos; an extension of this server.",
    },
    "bg_color": openapi.BG_COLOR,
    "bg_image_url": {
        **_STRING,
        "format": "uri",
        "description": "URL of a background image (URL inputs only).",
    },
    # Any value (a form sends text; JSON may send any scalar or null).
    **{name: {"description": "Accepted and ignored."} for name in IGNORED_FIELDS},
}
# Options (not the image sources) may be left blank: their default applies.
PARAMETERS.update(
    {
        name: openapi.blank_or(schema)
        for name, schema in PARAMETERS.items()
        if name not in SOURCE_FIELDS and name not in IGNORED_FIELDS
    }
)
# A JSON body may also give null (the field is absent), true/false for crop, numbers where the
# value is a number (crop_margin in px, scale in %) and any scalar for the ignored fields.
JSON_BOOLEANS = {"crop"}
JSON_NUMBERS: dict[str, dict[str, Any]] = {
    "crop_margin": {"type": "integer", "minimum": 0, "maximum": 500},
    "scale": {"type": "number", "minimum": 10, "maximum": 100},
}


def _json_field(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if name in IGNORED_FIELDS:
        return {**schema, "type": ["string", "number", "boolean", "null"]}  # any scalar
    if name in JSON_BOOLEANS:
        variants = [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]
        variants.append(openapi.BLANK)
    else:
        variants = [{k: v for k, v in schema.items() if k not in ("default", "description")}]
        variants += [JSON_NUMBERS[name]] if name in JSON_NUMBERS else []
    return {
        "anyOf": [*variants, {"type": "null"}],
        **{k: v for k, v in schema.items() if k in ("default", "description")},
    }


_JSON_PARAMETERS = {name: _json_field(name, schema) for name, schema in PARAMETERS.items()}
MULTIPART = {
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
ERROR_RESPONSE = {"content": {"application/json": {"schema": _ERROR_SCHEMA}}}
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {**MULTIPART, **PARAMETERS}}
            },
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": PARAMETERS}
            },
            "application/json": {"schema": {"type": "object", "properties": _JSON_PARAMETERS}},
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
        "400": {"description": "Invalid input", **ERROR_RESPONSE},
        "403": {"description": "Missing or unknown API key", **ERROR_RESPONSE},
        "413": {"description": "Body too large", **ERROR_RESPONSE},
        "429": {"description": "Rate limited or busy (see Retry-After)", **ERROR_RESPONSE},
        "503": {"description": "Past the deadline", **ERROR_RESPONSE},
    },
}
