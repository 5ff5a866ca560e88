"""The OpenAPI schema follows the configuration: what this server refuses is not documented."""

from __future__ import annotations

from typing import Any

from fastapi.openapi.utils import get_openapi

from stolentee.api.app import create_app
from stolentee.api.openapi import IMAGE_MEDIA_TYPES, tailor
from stolentee.config import Settings

from ..conftest import SettingsFactory


def _generated(make_settings: SettingsFactory) -> dict[str, Any]:
    app = create_app(make_settings(api={"image_url_enabled": True, "callbacks_enabled": False}))
    return get_openapi(title=app.title, version=app.version, routes=app.routes)


def _tailored(make_settings: SettingsFactory, **options: Any) -> dict[str, Any]:
    defaults = {"image_urls": False, "callbacks": False, "direct_uploads": False, "models": []}
    return tailor(_generated(make_settings), **{**defaults, **options})


def _removebg(schema: dict[str, Any], media_type: str) -> dict[str, Any]:
    body: dict[str, Any] = schema["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"][
        media_type
    ]["schema"]
    return body


def _design_form(schema: dict[str, Any]) -> dict[str, Any]:
    content = schema["paths"]["/v1/designs"]["post"]["requestBody"]["content"]
    form: dict[str, Any] = content["multipart/form-data"]
    return form


def test_image_urls_are_documented_only_when_enabled(make_settings: SettingsFactory) -> None:
    off = _removebg(_tailored(make_settings, image_urls=False), "multipart/form-data")
    assert "image_url" not in off["properties"] and "bg_image_url" not in off["properties"]
    assert off["oneOf"] == [{"required": ["image_file"]}, {"required": ["image_file_b64"]}]
    on = _removebg(_tailored(make_settings, image_urls=True), "multipart/form-data")
    assert {"image_url", "bg_image_url"} <= set(on["properties"])
    assert {"required": ["image_url"]} in on["oneOf"] and len(on["oneOf"]) == 3
    assert on["not"] == {"required": ["bg_image_file", "bg_image_url"]}
    json_body = _removebg(_tailored(make_settings, image_urls=False), "application/json")
    assert json_body["required"] == ["image_file_b64"] and "oneOf" not in json_body


def test_image_parts_name_the_types_the_decoder_reads(make_settings: SettingsFactory) -> None:
    schema = _tailored(make_settings)
    content = schema["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"]
    encoding = content["multipart/form-data"]["encoding"]
    assert encoding["image_file"]["contentType"] == ", ".join(IMAGE_MEDIA_TYPES)
    assert "image/png" in IMAGE_MEDIA_TYPES and "image/tiff" in IMAGE_MEDIA_TYPES
    assert _design_form(schema)["encoding"]["file"] == encoding["image_file"]


def test_design_sources_follow_storage_and_callbacks(make_settings: SettingsFactory) -> None:
    local = _design_form(_tailored(make_settings))["schema"]
    assert "upload_key" not in local["properties"] and "callback_url" not in local["properties"]
    assert local["required"] == ["file"]
    s3 = _design_form(_tailored(make_settings, direct_uploads=True, callbacks=True))["schema"]
    assert s3["oneOf"] == [{"required": ["file"]}, {"required": ["upload_key"]}]
    assert "callback_url" in s3["properties"]
    assert "$ref" not in _design_form(_tailored(make_settings))["schema"]


def test_rembg_model_names_installed_models(make_settings: SettingsFactory) -> None:
    def form(schema: dict[str, Any]) -> dict[str, Any]:
        content = schema["paths"]["/api/remove"]["post"]["requestBody"]["content"]
        properties: dict[str, Any] = content["multipart/form-data"]["schema"]["properties"]
        return properties

    assert "model" not in form(_tailored(make_settings, models=[]))
    model = form(_tailored(make_settings, models=["u2netp"]))["model"]
    assert {"type": "string", "enum": ["u2netp"]} in model["anyOf"]


def test_the_served_schema_is_the_tailored_one(settings: Settings) -> None:
    app = create_app(settings)
    schema = app.openapi()
    assert app.openapi() is schema  # built once
    assert "image_url" not in _removebg(schema, "multipart/form-data")["properties"]
