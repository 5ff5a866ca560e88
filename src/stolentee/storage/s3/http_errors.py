"""What can go wrong on the wire: every failure of the lean HTTP/1.1 client is a WireError, by
kind."""

from __future__ import annotations


class WireError(Exception):
    """The request failed on the way: no answer could be read (see the subclasses)."""

    timed_out = False


class ConnectError(WireError):
    """No connection: refused, unreachable, name unknown, or the TLS handshake failed
    (certificate not trusted, wrong host name)."""


class ConnectTimeout(ConnectError):
    """Connecting (TCP, then the TLS handshake) took longer than the connect timeout."""

    timed_out = True


class ReadTimeout(WireError):
    """The server went quiet for longer than the read timeout (while sending the request or
    reading the answer)."""

    timed_out = True


class ProtocolError(WireError):
    """The connection broke (closed or reset mid-answer) or the answer was not valid HTTP/1.x."""


class PoolClosedError(WireError):
    """A request on a pool already closed."""
