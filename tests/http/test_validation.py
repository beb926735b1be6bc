"""Request bodies and query strings: validation, bad input, limits (StubTreq)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import pytest
from attrs import define, field, frozen, validators

from installsure.http import FieldValueError, HttpSettings, Router
from installsure.http.errors import ApiError
from installsure.http.validation import structure_body, structure_query, unstructure
from tests.http.helpers import fetch, json_of, stub


@frozen
class Address:
    street_name: str
    zip_code: int


@define
class NewProject:
    name: str = field(validator=validators.max_len(10))
    progress: int = field(default=0, validator=[validators.ge(0), validators.le(100)])
    status: Literal["planning", "active"] = "planning"
    budget: float | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    tags: list[str] = field(factory=list)
    address: Address | None = None
    public: bool = False

    def __attrs_post_init__(self) -> None:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise FieldValueError("endDate", "must not be before startDate")


@frozen
class ListQuery:
    page: int = 1
    per_page: int = 20
    unread: bool | None = None
    sort: Literal["name", "-name"] = "name"


def make_router() -> Router:
    router = Router()

    @router.route("POST", "/api/projects", body=NewProject, status=201, rate_limit=None)
    def create(_ctx: Any, body: NewProject) -> NewProject:
        return body

    @router.route("POST", "/api/strict", body=Address, forbid_extra=True, rate_limit=None)
    def strict(_ctx: Any, body: Address) -> Address:
        return body

    @router.route("GET", "/api/list", query=ListQuery, rate_limit=None)
    def listing(_ctx: Any, query: ListQuery) -> ListQuery:
        return query

    @router.route("POST", "/api/small", body=Address, max_body=64, rate_limit=None)
    def small(_ctx: Any, body: Address) -> Address:
        return body

    return router


JSON = {"Content-Type": "application/json"}


def post(client: Any, path: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return fetch(client, "POST", path, data=data, headers=JSON if headers is None else headers)


def test_valid_body_structures_and_round_trips_in_camel_case() -> None:
    """A valid camelCase body reaches the handler as snake_case attrs, and returns camelCase."""
    client, _ = stub(make_router())
    payload = {
        "name": "Tower",
        "progress": 5,
        "startDate": "2024-01-02",
        "address": {"streetName": "Main", "zipCode": 12345},
        "tags": ["a"],
    }
    response = post(client, "/api/projects", json.dumps(payload).encode())
    assert response.code == 201
    data = json_of(client, response)["data"]
    assert data["startDate"] == "2024-01-02"
    assert data["address"] == {"streetName": "Main", "zipCode": 12345}
    assert data["status"] == "planning"


def test_every_bad_field_is_listed() -> None:
    """VALIDATION_ERROR lists every bad field at once, type errors and validators alike,
    with camelCase paths into nested objects and lists."""
    client, _ = stub(make_router())
    payload = {
        "name": "a name that is far too long",
        "progress": 101,
        "status": "sleeping",
        "budget": "lots",
        "startDate": "2024-13-45",
        "tags": ["ok", 3],
        "address": {"streetName": 7},
        "public": "false",
    }
    response = post(client, "/api/projects", json.dumps(payload).encode())
    body = json_of(client, response)
    assert response.code == 400
    assert body["code"] == "VALIDATION_ERROR"
    fields = {d["field"]: d["message"] for d in body["details"]}
    assert set(fields) == {
        "name", "progress", "status", "budget", "startDate", "tags[1]",
        "address.streetName", "address.zipCode", "public",
    }
    assert fields["address.zipCode"] == "is required"
    assert fields["public"] == "must be true or false"
    assert "planning" in fields["status"]
    assert "9 fields" in body["error"]


def test_missing_required_field_and_cross_field_rule() -> None:
    """A missing required field says so; __attrs_post_init__ can blame a named field."""
    client, _ = stub(make_router())
    missing = json_of(client, post(client, "/api/projects", b"{}"))
    assert missing["details"] == [{"field": "name", "message": "is required"}]
    cross = post(
        client, "/api/projects",
        b'{"name": "x", "startDate": "2024-05-01", "endDate": "2024-04-01"}',
    )
    assert json_of(client, cross)["details"] == [
        {"field": "endDate", "message": "must not be before startDate"}
    ]


def test_unknown_fields_rejected_only_when_route_forbids_them() -> None:
    """forbid_extra=True routes name each unknown field; others ignore them."""
    client, _ = stub(make_router())
    response = post(client, "/api/strict", b'{"streetName": "a", "zipCode": 1, "role": "admin"}')
    assert response.code == 400
    assert json_of(client, response)["details"] == [
        {"field": "role", "message": "is not a known field"}
    ]
    lenient = post(client, "/api/projects", b'{"name": "x", "role": "admin"}')
    assert lenient.code == 201


@pytest.mark.parametrize(
    ("data", "fragment", "detail"),
    [
        (b'{"name": ', "not valid JSON", "is not valid JSON: Expecting value (line 1, column 10)"),
        (b"\xff\xfe{}", "not valid UTF-8", "is not valid UTF-8 at byte 0"),
        (b"[1, 2]", "must be a JSON object", "must be an object"),
        (b"", "needs a JSON body", "is required"),
    ],
)
def test_malformed_bodies_are_400_validation_errors(
    data: bytes, fragment: str, detail: str
) -> None:
    """Malformed JSON, non-UTF-8 bytes, non-objects and empty bodies are 400
    VALIDATION_ERROR with one detail about the whole body (field "")."""
    client, _ = stub(make_router())
    response = post(client, "/api/projects", data)
    body = json_of(client, response)
    assert response.code == 400
    assert body["code"] == "VALIDATION_ERROR"
    assert fragment in body["error"]
    assert body["details"] == [{"field": "", "message": detail}]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                     "application/json; charset=latin-1"],
)
def test_wrong_content_type_is_415(content_type: str | None) -> None:
    """A JSON route refuses other content types (and non-UTF-8 charsets) with 415."""
    client, _ = stub(make_router())
    headers = {"Content-Type": content_type} if content_type else {}
    response = post(client, "/api/projects", b'{"name": "x"}', headers)
    assert response.code == 415
    assert json_of(client, response)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    ok = post(client, "/api/projects", b'{"name": "x"}',
              {"Content-Type": "application/json; charset=UTF-8"})
    assert ok.code == 201


def test_body_over_limit_is_413() -> None:
    """Bodies over the route's (or the global) limit answer 413 PAYLOAD_TOO_LARGE."""
    client, _ = stub(make_router(), HttpSettings(max_body_size=100))
    big = json.dumps({"name": "x", "tags": ["y" * 200]}).encode()
    response = post(client, "/api/projects", big)
    assert response.code == 413
    assert json_of(client, response)["code"] == "PAYLOAD_TOO_LARGE"
    small = post(client, "/api/small", json.dumps({"streetName": "z" * 80, "zipCode": 1}).encode())
    assert small.code == 413


def test_query_strings_parse_strictly() -> None:
    """Query values are parsed strictly into the query type; every bad one is listed."""
    client, _ = stub(make_router())
    ok = json_of(client, fetch(client, "GET", "/api/list?page=3&perPage=5&unread=true&sort=-name"))
    assert ok["data"] == {"page": 3, "perPage": 5, "unread": True, "sort": "-name"}
    bad = fetch(client, "GET", "/api/list?page=two&unread=maybe&sort=size")
    assert bad.code == 400
    fields = {d["field"] for d in json_of(client, bad)["details"]}
    assert fields == {"page", "unread", "sort"}
    invalid = fetch(client, "GET", "/api/list?page=%ff")
    assert json_of(client, invalid)["details"] == [
        {"field": "page", "message": "is not valid UTF-8"}
    ]


def test_structure_helpers_directly() -> None:
    """The helpers refuse JSON booleans as numbers and strings as booleans."""
    with pytest.raises(ApiError) as caught:
        structure_body({"streetName": "a", "zipCode": True}, Address)
    assert caught.value.details[0].field == "zipCode"
    assert structure_query({b"unread": [b"0"]}, ListQuery).unread is False
    assert unstructure(Address("a", 1)) == {"streetName": "a", "zipCode": 1}
    stamp = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert unstructure(stamp) == "2024-01-02T03:04:05.000Z"


@frozen
class Strict:
    name: str = field(validator=validators.min_len(3))
    age: int = field(default=0, validator=validators.ge(0))


def test_unknown_fields_and_validator_failures_are_reported_together() -> None:
    """With forbid_extra, unknown fields are listed alongside every validator failure."""
    with pytest.raises(ApiError) as caught:
        structure_body({"name": "x", "age": -1, "extra": 1}, Strict, forbid_extra=True)
    fields = sorted(d.field for d in caught.value.details)
    assert fields == ["age", "extra", "name"]
