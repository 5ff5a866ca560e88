"""A design row for the queue tests: what ``POST /v1/designs`` stores, without the upload."""

from __future__ import annotations

from stolentee.designs.store import DesignStore


def new_design(designs: DesignStore, design_id: str, callback_url: str | None = None) -> None:
    designs.create(
        design_id=design_id,
        owner="shop",
        original_key=f"uploads/{design_id}/original.png",
        original_content_type="image/png",
        original_width=10,
        original_height=10,
        kind="auto",
        output_format="png",
        idempotency_key=None,
        callback_url=callback_url,
    )
