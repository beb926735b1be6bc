"""Rules across body fields reported with the rest; request and response headers in
the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import field, frozen, validators

from installsure.http import FieldValueError, Router
from installsure.http.openapi import build_document
from installsure.http.routing import HeaderDoc
from tests.http.helpers import fetch, json_of, stub


@frozen
class Period:
    name: str = field(validator=validators.max_len(5))
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    progress: int = field(default=0, validator=validators.le(100))

    @staticmethod
    def __validate_fields__(values: Mapping[str, Any]) -> Iterator[FieldValueError]:
        start, end = values.get("start_date"), values.get("end_date")
        if start is not None and end is not None and end < start:
            yield FieldValueError("endDate", "must not be before startDate")


def _router() -> Router:
    router = Router()

    @router.route("POST", "/api/periods", body=Period, rate_limit=None,
                  request_headers=(HeaderDoc("If-Match", "the version you hold"),),
                  response_headers=(HeaderDoc("ETag", "this version", required=True),))
    def create(_ctx: Any, body: Period) -> Period:
        return body

    return router


def _post(data: bytes) -> tuple[int, Any]:
    client, _ = stub(_router())
    response = fetch(client, "POST", "/api/periods", data=data,
                     headers={"Content-Type": "application/json"})
    return response.code, json_of(client, response)


def test_a_rule_across_fields_is_listed_with_the_other_bad_fields() -> None:
    """endDate before startDate is reported alongside a too-long name and a too-high
    progress, in one answer (attrs would stop at the first validator)."""
    code, body = _post(b'{"name": "far too long", "progress": 101, '
                       b'"startDate": "2026-02-01", "endDate": "2026-01-01"}')
    assert code == 400
    assert sorted(d["field"] for d in body["details"]) == ["endDate", "name", "progress"]


def test_a_rule_across_fields_alone_and_a_valid_body() -> None:
    """The rule alone is a 400 naming endDate; an ordered period passes."""
    code, body = _post(b'{"name": "ok", "startDate": "2026-02-01", "endDate": "2026-01-01"}')
    assert code == 400
    assert body["details"] == [{"field": "endDate", "message": "must not be before startDate"}]
    code, body = _post(b'{"name": "ok", "startDate": "2026-01-01", "endDate": "2026-02-01"}')
    assert code == 200
    assert body["data"]["endDate"] == "2026-02-01"


def test_a_rule_across_fields_skips_fields_that_are_bad_on_their_own() -> None:
    """A start date that is not a date is reported as such, and the rule (which needs
    both dates) says nothing more."""
    code, body = _post(b'{"name": "ok", "startDate": "soon", "endDate": "2026-01-01"}')
    assert code == 400
    assert [d["field"] for d in body["details"]] == ["startDate"]


def test_declared_headers_are_in_the_openapi_document() -> None:
    """Request headers become header parameters; response headers are listed on the
    success response only."""
    operation = build_document(_router().routes)["paths"]["/api/periods"]["post"]
    assert {"name": "If-Match", "in": "header", "required": False,
            "description": "the version you hold",
            "schema": {"type": "string"}} in operation["parameters"]
    assert operation["responses"]["200"]["headers"]["ETag"]["required"] is True
    assert "headers" not in operation["responses"]["400"]
