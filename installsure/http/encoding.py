"""What a handler returns, as the bytes of a response: the envelope, JSON, gzip."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any

from installsure.http.outgoing import StreamedBody
from installsure.http.routing import Paged, Response, Route
from installsure.http.validation import unstructure

JSON = b"application/json"
JSON_UTF8 = b"application/json; charset=utf-8"

#: What :func:`encode_result` gives: status, body (bytes, or a body to stream), Content-Type
#: (None: no body) and the handler's own headers.
Encoded = tuple[int, Any, bytes | None, Iterable[tuple[bytes, bytes]]]

# One encoder for every response: json.dumps builds a new one per call when given options.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> bytes:
    return _encode_json(value).encode("utf-8")


def encode_result(route: Route | None, result: Any) -> Encoded:
    """A handler's ``result`` (a :class:`Response`, :class:`Paged`, attrs value, plain
    data or None) for ``route`` (None before routing)."""
    status = route.status if route is not None else 200
    envelope = route.envelope if route is not None else True
    if isinstance(result, Response):
        # No body: a 204 ever, a 304 or a redirect when the handler gave none.
        if result.status == 204 or (result.body is None and 300 <= result.status < 400):
            return result.status, b"", None, result.headers
        if isinstance(result.body, bytes | StreamedBody):
            return result.status, result.body, result.content_type, result.headers
        data = unstructure(result.body)
        payload = {"success": True, "data": data} if result.envelope else data
        return result.status, dumps(payload), JSON_UTF8, result.headers
    if isinstance(result, Paged):
        payload = {
            "success": True,
            "data": unstructure(list(result.items)),
            "meta": {"page": result.page, "perPage": result.per_page, "total": result.total},
        }
        return status, dumps(payload), JSON_UTF8, ()
    if result is None and status == 204:
        return 204, b"", None, ()
    data = unstructure(result)
    return status, dumps({"success": True, "data": data} if envelope else data), JSON_UTF8, ()


def accepts_gzip(raw: Iterable[bytes] | None) -> bool:
    """Whether ``Accept-Encoding`` values accept gzip (not with q=0)."""
    if not raw:
        return False
    for header in raw:
        for item in header.split(b","):
            name, _, params = item.strip().partition(b";")
            if name.strip().lower() in (b"gzip", b"*"):
                q = params.replace(b" ", b"")
                return not (q.startswith(b"q=0") and q.strip(b"q=0.") == b"")
    return False


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=5)
