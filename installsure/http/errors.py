"""The error envelope of API.md and the exception every handler may raise to produce it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from attrs import frozen

#: Status of each machine code of API.md.
STATUS_OF_CODE: dict[str, int] = {
    "VALIDATION_ERROR": 400,
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "CONFLICT": 409,
    "PRECONDITION_FAILED": 412,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RANGE_NOT_SATISFIABLE": 416,
    "HEADERS_TOO_LARGE": 431,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "UNAVAILABLE": 503,
}


@frozen
class FieldError:
    """One bad field: ``field`` is the camelCase path as the client sent it."""

    field: str
    message: str


class ApiError(Exception):
    """Raise from a handler (or middleware) to answer with the error envelope.

    ``headers`` are added to the response (e.g. ``Allow``, ``Retry-After``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Sequence[FieldError] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_OF_CODE.get(code, 400)
        self.details = tuple(details)
        self.headers = tuple(headers)


def bad_request(message: str) -> ApiError:
    return ApiError("BAD_REQUEST", message)


def not_found(message: str = "Not found.") -> ApiError:
    return ApiError("NOT_FOUND", message)


def validation_error(details: Sequence[FieldError]) -> ApiError:
    count = len(details)
    noun = "field is" if count == 1 else "fields are"
    return ApiError(
        "VALIDATION_ERROR",
        f"The request is not valid: {count} {noun} wrong; see details.",
        details=details,
    )


def error_body(
    code: str, message: str, request_id: str, details: Sequence[FieldError] = ()
) -> bytes:
    """The JSON bytes of the error envelope."""
    body: dict[str, Any] = {
        "success": False,
        "error": message,
        "code": code,
        "requestId": request_id,
    }
    if details:
        body["details"] = [{"field": d.field, "message": d.message} for d in details]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
