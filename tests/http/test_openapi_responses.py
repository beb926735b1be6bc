"""Routes declaring their answers for the OpenAPI document: header parameters,
responses with headers of their own or without a body, error answers with headers."""

from __future__ import annotations

from typing import Any

import pytest
from attrs import frozen

from installsure.http import Router
from installsure.http.openapi import build_document
from installsure.http.routing import HeaderDoc, ResponseDoc

LOCATION = HeaderDoc("Location", "Where it went.", required=True)
RETRY = HeaderDoc("X-Retry-In", "Seconds to wait.", required=True,
                  schema={"type": "integer", "minimum": 0})
VERSION = HeaderDoc("X-Version", "The version sent.", required=True)


@frozen
class Thing:
    name: str


@frozen
class Gone:
    reason: str


def _operation(**options: Any) -> dict[str, Any]:
    router = Router()
    router.add("GET", "/api/things/{id}", lambda _ctx, id: None, response=Thing,
               auth="user", **options)
    operation: dict[str, Any] = build_document(router.routes, rate_limited=False)[
        "paths"]["/api/things/{id}"]["get"]
    return operation


def test_header_parameters_and_answers_with_their_own_headers() -> None:
    """``request_headers`` become header parameters; a ResponseDoc for the route's own
    status describes the success answer (its body stays ``response``, with the route's
    ``response_headers`` and its own); another success status gets the route's and
    its own headers; a 3xx without a body has no content and only its own headers;
    ``(status, type)`` pairs still document a body of their own."""
    operation = _operation(
        request_headers=(HeaderDoc("If-None-Match", "ETags held."),),
        response_headers=(VERSION,),
        responses=(
            ResponseDoc(200, "The thing.", headers=(HeaderDoc("X-Cache", "hit or miss"),)),
            ResponseDoc(203, "A copy of the thing."),
            ResponseDoc(303, "It moved.", has_body=False, headers=(LOCATION,)),
            (410, Gone),
        ),
    )
    header_params = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header_params == [{"name": "If-None-Match", "in": "header",
                              "description": "ETags held.", "required": False,
                              "schema": {"type": "string"}}]
    responses = operation["responses"]
    ok = responses["200"]
    assert ok["description"] == "The thing."
    assert ok["content"]["application/json"]["schema"]["properties"]["data"] == {
        "$ref": "#/components/schemas/Thing"}
    assert set(ok["headers"]) == {"X-Version", "X-Cache"}
    assert set(responses["203"]["headers"]) == {"X-Version"}
    assert responses["203"]["content"]["application/json"]["schema"]["properties"][
        "data"] == {}
    assert responses["303"] == {
        "description": "It moved.",
        "headers": {"Location": {"description": "Where it went.", "required": True,
                                 "schema": {"type": "string"}}},
    }
    assert responses["410"]["content"]["application/json"]["schema"]["properties"][
        "data"] == {"$ref": "#/components/schemas/Gone"}


def test_error_answers_may_carry_headers_of_their_own() -> None:
    """An error declared as a ResponseDoc is the error envelope with its description
    and headers in place of the shared component; plain error statuses, and those the
    HTTP layer adds, still refer to the shared ones."""
    operation = _operation(errors=(ResponseDoc(409, "Busy: try again.", headers=(RETRY,)),
                                   ResponseDoc(422), 503))
    responses = operation["responses"]
    assert responses["409"] == {
        "description": "Busy: try again.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "headers": {"X-Retry-In": {"description": "Seconds to wait.", "required": True,
                                   "schema": {"type": "integer", "minimum": 0}}},
    }
    for status in ("422", "503", "401", "404", "500"):
        assert responses[status] == {"$ref": f"#/components/responses/E{status}"}, status


@pytest.mark.parametrize(("option", "value", "message"), [
    ("errors", (ResponseDoc(304, has_body=False),), "declare status 304 in responses="),
    ("errors", (ResponseDoc(418, body=Gone),), "declare status 418 in responses="),
    ("errors", (409, ResponseDoc(409, "again")), "status 409 is declared twice"),
    ("responses", ((206, None), ResponseDoc(206)), "status 206 is declared twice"),
], ids=["redirect-as-error", "error-with-body", "error-twice", "response-twice"])
def test_contradicting_declarations_are_refused(option: str, value: Any,
                                                message: str) -> None:
    """A status declared twice, or an answer with a body of its own among the errors,
    is refused when the route is declared, naming the route."""
    with pytest.raises(ValueError, match=message) as refused:
        Router().add("GET", "/api/x", lambda _ctx: None, **{option: value})
    assert "GET /api/x" in str(refused.value)


@pytest.mark.parametrize("status", [302, 303, 304])
def test_answers_documented_without_a_body_are_sent_without_one(status: int) -> None:
    """A handler's Response at 304 or a redirect that gives no body is sent with none
    (no JSON ``null`` envelope, no Content-Type), as ``has_body=False`` documents it;
    its own headers go out."""
    from installsure.http import Response
    from tests.http.helpers import body_of, fetch, header, stub

    router = Router()
    router.add("GET", "/api/moved", lambda _ctx: Response(
        status=status, headers=[(b"Location", b"/api/elsewhere")]),
        responses=(ResponseDoc(status, has_body=False, headers=(LOCATION,)),))
    client, _ = stub(router)
    response = fetch(client, "GET", "/api/moved", allow_redirects=False)
    assert response.code == status
    assert header(response, "Location") == "/api/elsewhere"
    assert header(response, "Content-Type") is None
    assert body_of(client, response) == b""
