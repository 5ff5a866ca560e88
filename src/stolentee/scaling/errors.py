"""Errors of the autoscaler: a backend that refused a change, a trace that cannot be read."""

from __future__ import annotations

from stolentee.errors import ConfigurationError, StolenteeError


class ScalingBackendError(StolenteeError):
    """A backend could not read or set a replica count."""

    status_code = 502
    code = "scaling_backend_error"
    title = "Scaling backend error"


class RailwayApiError(ScalingBackendError):
    """Railway's GraphQL API could not be reached, answered an HTTP error, or returned GraphQL
    ``errors``. The message says which, without the token."""

    code = "railway_api_error"
    title = "Railway API error"


class TraceError(ConfigurationError):
    """A load trace is missing, malformed or empty; the message names the file and the line."""

    code = "invalid_trace"
    title = "Invalid load trace"
