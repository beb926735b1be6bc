"""What a handler knows about the request it serves, and the cheap per-request ids."""

from __future__ import annotations

import itertools
import os
import re
from typing import Any

from attrs import define
from twisted.web.iweb import IRequest

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class RequestIds:
    """New request ids shaped like UUIDs: a random per-process prefix plus a counter.

    ``uuid4()`` costs a ``urandom`` call per request; ids only need to be unique, not
    secret, and a 80-bit random prefix keeps processes apart.
    """

    def __init__(self) -> None:
        r = os.urandom(10).hex()
        variant = "89ab"[int(r[16], 16) % 4]
        self._prefix = f"{r[0:8]}-{r[8:12]}-4{r[12:15]}-{variant}{r[15:18]}-{r[18:20]}"
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFF:010x}"


def sane_request_id(raw: bytes | None) -> str | None:
    """The client's id when it is 1-128 chars of ``[A-Za-z0-9._-]`` (no header injection)."""
    if raw is not None and _SANE_REQUEST_ID.fullmatch(raw):
        return raw.decode("ascii")
    return None


def parse_traceparent(raw: bytes | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or ``None`` when it is malformed."""
    if raw is None:
        return None
    m = _TRACEPARENT.fullmatch(raw.strip().lower())
    if m is None or m.group(1) == b"ff":
        return None
    trace_id = m.group(2)
    if trace_id == _ZERO_TRACE or m.group(3) == _ZERO_SPAN:
        return None
    return trace_id.decode("ascii")


@define(slots=True)
class RequestContext:
    """Passed to every handler as its first argument."""

    request: IRequest
    request_id: str
    remote: str
    trace_id: str | None = None
    #: Set by the auth hook for routes that declare ``auth``.
    user: Any = None
    route_path: str = "<unmatched>"
    #: The matched :class:`~installsure.http.routing.Route`, once routing is done.
    route: Any = None
    #: Headers added to the response (e.g. by the rate limiter).
    extra_headers: list[tuple[bytes, bytes]] | None = None
    #: The body as it arrives, for a streamed route dispatched at the end of its head
    #: (:class:`~installsure.http.incoming.BodyStream`).
    body_stream: Any = None

    def add_header(self, name: bytes, value: bytes) -> None:
        if self.extra_headers is None:
            self.extra_headers = []
        self.extra_headers.append((name, value))

    @property
    def user_id(self) -> str | None:
        uid = getattr(self.user, "id", None) if self.user is not None else None
        return str(uid) if uid is not None else None
