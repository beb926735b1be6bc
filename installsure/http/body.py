"""Reading a request's JSON body: its size limit, media type, charset and declared type."""

from __future__ import annotations

from typing import Any

from installsure.http.errors import ApiError
from installsure.http.refusal import payload_too_large
from installsure.http.routing import Route
from installsure.http.validation import missing_body, parse_json, structure_body


def too_large(limit: int) -> ApiError:
    """The 413 of a body over ``limit`` bytes (the wire's early 413 says the same)."""
    refusal = payload_too_large(limit)
    return ApiError(refusal.code, refusal.message, status=refusal.status)


def read_body(request: Any, route: Route, default_limit: int) -> Any:
    """``request``'s body as an instance of ``route.body``, or ApiError 400/413/415."""
    assert route.body is not None  # noqa: S101 - only called for routes with a body
    limit = route.max_body or default_limit
    length = request.requestHeaders.getRawHeaders(b"content-length")
    if length and length[0].isdigit() and int(length[0]) > limit:
        raise too_large(limit)
    content = request.content
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read(limit + 1)
    if len(raw) > limit:
        raise too_large(limit)
    if not raw.strip():
        raise missing_body()
    raw_type = request.requestHeaders.getRawHeaders(b"content-type")
    media, _, params = (raw_type[0] if raw_type else b"").partition(b";")
    accepted = "/".join(route.content_types).encode()
    if media.strip().lower().decode("latin-1") not in route.content_types:
        raise ApiError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the body with Content-Type: {accepted.decode()}.",
        )
    charset = params.strip().lower()
    if charset.startswith(b"charset=") and charset[8:].strip(b'"') not in (b"utf-8", b"utf8"):
        raise ApiError("UNSUPPORTED_MEDIA_TYPE", "Send the JSON body encoded as UTF-8.")
    return structure_body(parse_json(raw), route.body, forbid_extra=route.forbid_extra)
