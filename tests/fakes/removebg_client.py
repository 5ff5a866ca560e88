"""A minimal Remove.bg client, written from Remove.bg's public API documentation.

It knows nothing of stolentee: the tests point its ``base_url`` at our app, as a user would
point an existing client at a self-hosted server.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx


class RemoveBgClient:
    def __init__(self, http: httpx.Client, *, api_key: str, base_url: str) -> None:
        self.http = http
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")

    def remove_file(self, image: bytes, **params: str) -> httpx.Response:
        """Multipart upload, as in the documentation's first example."""
        return self.http.post(
            f"{self.base_url}/v1.0/removebg",
            files={"image_file": ("photo.jpg", image)},
            data={"size": "auto", **params},
            headers={"X-Api-Key": self.api_key},
        )

    def remove_base64(self, image: bytes, **params: str) -> httpx.Response:
        """Form-encoded ``image_file_b64``."""
        return self.http.post(
            f"{self.base_url}/v1.0/removebg",
            data={"image_file_b64": base64.b64encode(image).decode(), "size": "auto", **params},
            headers={"X-Api-Key": self.api_key},
        )

    def remove_json(self, image: bytes, **params: Any) -> dict[str, Any]:
        """JSON request and JSON response (``result_b64`` and the foreground box)."""
        response = self.http.post(
            f"{self.base_url}/v1.0/removebg",
            json={"image_file_b64": base64.b64encode(image).decode(), "size": "auto", **params},
            headers={"X-Api-Key": self.api_key, "Accept": "application/json"},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def account(self) -> dict[str, Any]:
        response = self.http.get(
            f"{self.base_url}/v1.0/account", headers={"X-Api-Key": self.api_key}
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body
