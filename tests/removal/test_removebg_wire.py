"""The Remove.bg wire codec: what the server writes, the client reads back, and the other way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stolentee.removal.base import Foreground, ImageKind, RemovalResult
from stolentee.removal.removebg_wire import (
    OPTION_FIELDS,
    InvalidCropError,
    foreground_from_headers,
    form_fields,
    kind_from_header,
    options_from_fields,
    result_headers,
)


def _result(kind: ImageKind, foreground: Foreground | None) -> RemovalResult:
    return RemovalResult(
        data=b"",
        content_type="image/png",
        width=640,
        height=480,
        kind=kind,
        method="colour-key",
        foreground=foreground,
        input_width=640,
        input_height=480,
    )


@given(
    st.builds(
        Foreground,
        top=st.integers(0, 10_000),
        left=st.integers(0, 10_000),
        width=st.integers(1, 10_000),
        height=st.integers(1, 10_000),
    ),
    st.sampled_from([ImageKind.GRAPHIC, ImageKind.PHOTO]),
)
def test_result_headers_read_back_by_the_client(foreground: Foreground, kind: ImageKind) -> None:
    headers = result_headers(_result(kind, foreground), 0.25)
    assert foreground_from_headers(headers) == foreground
    assert kind_from_header(headers["X-Type"], ImageKind.AUTO) is kind
    assert headers["X-Credits-Charged"] == "0.25"


def test_a_result_without_a_subject_sends_no_foreground_box() -> None:
    headers = result_headers(_result(ImageKind.PHOTO, None), 1)
    assert not any(name.startswith("X-Foreground") for name in headers)
    assert foreground_from_headers(headers) is None


def test_the_client_sends_only_fields_the_server_reads() -> None:
    from stolentee.removal.base import RemovalOptions

    assert set(form_fields(RemovalOptions(crop=True, crop_margin_px=12))) <= set(OPTION_FIELDS)


def test_blank_fields_count_as_absent_and_bad_booleans_are_clear_errors() -> None:
    assert options_from_fields({"crop": " ", "size": ""}, bg_image=None).crop is False
    with pytest.raises(InvalidCropError, match="crop must be true or false"):
        options_from_fields({"crop": "maybe"}, bg_image=None)
