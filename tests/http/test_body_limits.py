"""Property tests: no body or query string, however odd, makes the resource answer 500.

Every request goes through the real resource (StubTreq). Whatever fails to decode or
to structure is a 400 ``VALIDATION_ERROR`` whose ``details`` say where, in the names
the client sent.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from attrs import field, frozen, validators
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from installsure.http import Router
from installsure.http.jsonbody import MAX_DEPTH, MAX_NUMBER_LENGTH
from tests.http.helpers import fetch, json_of, stub

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@frozen
class Site:
    street_name: str
    zip_code: int = field(validator=[validators.ge(1000), validators.le(99999)])


@frozen
class NewJob:
    project_name: str = field(validator=validators.max_len(20))
    page_size: int = field(default=1, validator=[validators.ge(1), validators.le(100)])
    unit_price: float | None = None
    kind: Literal["survey", "install"] = "survey"
    site: Site | None = None
    tags: list[str] = field(factory=list)
    extra: Any = None


@frozen
class JobQuery:
    page_size: int = field(default=20, validator=[validators.ge(1), validators.le(100)])
    min_price: float | None = None
    kind: Literal["survey", "install"] = "survey"
    tags: list[str] = field(factory=list)


def _router() -> Router:
    router = Router()

    @router.route("POST", "/api/jobs", body=NewJob, status=201, rate_limit=None)
    def create(_ctx: Any, body: NewJob) -> NewJob:
        return body

    @router.route("GET", "/api/jobs", query=JobQuery, rate_limit=None)
    def listing(_ctx: Any, query: JobQuery) -> JobQuery:
        return query

    return router


CLIENT, _RESOURCE = stub(_router())
JSON = {"Content-Type": "application/json"}
WIRE_FIELDS = {"projectName", "pageSize", "unitPrice", "kind", "site", "tags", "extra",
               "site.streetName", "site.zipCode"}


def post(data: bytes) -> tuple[int, Any]:
    response = fetch(CLIENT, "POST", "/api/jobs", data=data, headers=JSON)
    return response.code, json_of(CLIENT, response)


def assert_validation_error(code: int, body: Any) -> list[dict[str, str]]:
    assert code == 400, body
    assert body["success"] is False
    assert body["code"] == "VALIDATION_ERROR", body
    assert body["details"], body
    for detail in body["details"]:
        assert isinstance(detail["field"], str)
        assert isinstance(detail["message"], str)
        assert detail["message"]
    return list(body["details"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(st.binary(max_size=300))
@example(b"\xed\xa0\x80")
@example(b'{"projectName": "\\udfff"}')
def test_any_bytes_are_accepted_or_a_validation_error(data: bytes) -> None:
    """Random bytes as a JSON body: 201 or 400 VALIDATION_ERROR with details, never 500."""
    code, body = post(data)
    if code != 201:
        assert_validation_error(code, body)


@PROPERTY
@given(json_values)
def test_any_json_value_is_accepted_or_a_validation_error(value: Any) -> None:
    """Any JSON document (objects of unknown shape included): 201 or a 400 that names
    only fields of the declared body, as the client spells them."""
    code, body = post(json.dumps(value).encode())
    if code == 201:
        return
    for detail in assert_validation_error(code, body):
        top = detail["field"].split("[")[0]
        assert detail["field"] == "" or top in WIRE_FIELDS, detail


@PROPERTY
@given(
    st.dictionaries(
        st.sampled_from(["projectName", "pageSize", "unitPrice", "kind", "site", "tags"]),
        json_values,
        min_size=1,
    )
)
def test_bad_fields_are_named_as_sent_and_messages_never_name_python_attributes(
    fields: dict[str, Any],
) -> None:
    """Each bad field is reported under its camelCase name, and no message leaks the
    snake_case attribute (``'page_size' must be >= 1``)."""
    code, body = post(json.dumps({"projectName": "p", **fields}).encode())
    if code == 201:
        return
    for detail in assert_validation_error(code, body):
        assert "_" not in detail["field"], detail
        assert "page_size" not in detail["message"]
        assert "project_name" not in detail["message"]
        assert "zip_code" not in detail["message"]


paths = st.lists(st.sampled_from(["a", "b", 0]), max_size=5)


def _nest(path: list[str | int], leaf: str) -> str:
    """A body with ``leaf`` (raw JSON text) at ``path`` inside its ``extra`` field."""
    text = leaf
    for part in reversed(path):
        text = f"[{text}]" if isinstance(part, int) else "{" + json.dumps(part) + ": " + text + "}"
    return '{"projectName": "p", "extra": ' + text + "}"


def _field(path: list[str | int]) -> str:
    text = "extra"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


@PROPERTY
@given(paths, st.integers(min_value=MAX_NUMBER_LENGTH + 1, max_value=6000), st.booleans())
def test_numbers_too_long_are_refused_where_they_are(
    path: list[str | int], digits: int, fraction: bool,
) -> None:
    """An integer (or decimal) literal longer than the limit, e.g. 5,001 digits, is a
    400 naming its place, not a ValueError from Python's integer-length limit."""
    literal = "7" * digits if not fraction else "0." + "3" * (digits - 2)
    code, body = post(_nest(path, literal).encode())
    details = assert_validation_error(code, body)
    assert details[0]["field"] == _field(path)
    assert f"{len(literal)} characters" in details[0]["message"]


@PROPERTY
@given(paths, st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-2E+999"]))
def test_non_finite_numbers_are_refused_where_they_are(path: list[str | int], literal: str) -> None:
    """NaN, Infinity and numbers beyond a double's range are 400 naming their place."""
    code, body = post(_nest(path, literal).encode())
    details = assert_validation_error(code, body)
    assert details[0]["field"] == _field(path)


@PROPERTY
@given(st.integers(min_value=1, max_value=3000), st.sampled_from("[{"))
def test_nesting_is_bounded(depth: int, opener: str) -> None:
    """Nesting up to the limit is accepted; deeper is a 400, not a RecursionError; the
    same brackets inside a string do not count."""
    closer = {"[": "]", "{": "}"}[opener]
    inner = '{"k": ' if opener == "{" else "["
    nested = inner * depth + "0" + closer * depth
    # The body itself is one level; extra adds ``depth`` more.
    code, body = post(('{"projectName": "p", "extra": ' + nested + "}").encode())
    if depth + 1 <= MAX_DEPTH:
        assert code == 201, body
    else:
        details = assert_validation_error(code, body)
        assert details == [{"field": "", "message": f"nests arrays and objects more than "
                                                    f"{MAX_DEPTH} levels deep"}]
    in_string = json.dumps({"projectName": "p", "extra": opener * depth}).encode()
    assert post(in_string)[0] == 201


@PROPERTY
@given(paths, st.integers(min_value=0xD800, max_value=0xDFFF), st.booleans())
def test_lone_surrogates_are_refused_and_pairs_accepted(
    path: list[str | int], unit: int, as_key: bool,
) -> None:
    """A lone UTF-16 surrogate escape (which Python decodes into a str that cannot be
    written out as UTF-8) is a 400 naming its place; a proper pair is a character."""
    escape = f'"x\\u{unit:04x}"'
    leaf = "{" + escape + ": 1}" if as_key else escape
    code, body = post(_nest(path, leaf).encode())
    details = assert_validation_error(code, body)
    assert details[0]["field"] == _field(path)
    assert "surrogate" in details[0]["message"]
    pair = post(_nest(path, '"\\ud83c\\udfd7"').encode())
    assert pair[0] == 201, pair


@PROPERTY
@given(paths, st.text(min_size=1, max_size=5))
def test_keys_sent_twice_are_refused(path: list[str | int], key: str) -> None:
    """An object with a key twice is a 400 naming that key: two parsers could each
    believe a different one."""
    name = json.dumps(key)
    code, body = post(_nest(path, "{" + f"{name}: 1, {name}: 2" + "}").encode())
    details = assert_validation_error(code, body)
    assert details[0]["field"] == _field([*path, key])
    assert details[0]["message"] == "is sent more than once"


@PROPERTY
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_a_body_that_is_not_an_object_is_refused(value: Any) -> None:
    """Arrays, strings, numbers, booleans and null at the top are 400 about the body."""
    code, body = post(json.dumps(value).encode())
    assert assert_validation_error(code, body) == [{"field": "", "message": "must be an object"}]


query_values = st.binary(max_size=40).map(lambda b: "".join(f"%{x:02X}" for x in b))


@PROPERTY
@given(st.dictionaries(st.sampled_from(["pageSize", "minPrice", "kind", "tags"]),
                       st.lists(query_values, min_size=1, max_size=3), min_size=1))
@example({"pageSize": ["9" * 5001]})
@example({"minPrice": ["1e400", "NaN"]})
@example({"pageSize": ["\u0661"]})
def test_any_query_string_is_accepted_or_a_validation_error(values: dict[str, list[str]]) -> None:
    """Any bytes in the query values: 200 or 400 VALIDATION_ERROR naming only the
    camelCase parameters that were wrong."""
    query = "&".join(f"{name}={v}" for name, vs in values.items() for v in vs)
    response = fetch(CLIENT, "GET", "/api/jobs?" + query)
    body = json_of(CLIENT, response)
    if response.code == 200:
        return
    for detail in assert_validation_error(response.code, body):
        assert detail["field"].split("[")[0] in values, detail


def test_query_integers_and_numbers_follow_json_syntax() -> None:
    """Query numbers are ASCII JSON numbers in range: Arabic-Indic digits, underscores,
    out-of-range and non-finite values are refused, each with a sentence for clients."""
    def details(query: str) -> list[dict[str, str]]:
        response = fetch(CLIENT, "GET", "/api/jobs?" + query)
        return assert_validation_error(response.code, json_of(CLIENT, response))

    assert details("pageSize=%D9%A1") == [{"field": "pageSize", "message": "must be an integer"}]
    assert details("pageSize=0") == [{"field": "pageSize", "message": "must be at least 1"}]
    assert details("pageSize=101") == [{"field": "pageSize", "message": "must be at most 100"}]
    assert details("pageSize=" + "9" * 30)[0]["message"].startswith("must be an integer from")
    for bad in ["1_0", "inf", "NaN", "1e400", "%201"]:
        assert details("minPrice=" + bad) == [{"field": "minPrice", "message": "must be a number"}]
    ok = fetch(CLIENT, "GET", "/api/jobs?pageSize=7&minPrice=-1.5e-3&tags=a&tags=b")
    assert json_of(CLIENT, ok)["data"] == {
        "pageSize": 7, "minPrice": -0.0015, "kind": "survey", "tags": ["a", "b"]
    }


def test_containers_must_have_their_json_type() -> None:
    """A string is not a list and an array is not an object: cattrs would iterate them."""
    code, body = post(b'{"projectName": "p", "tags": "abc", "site": []}')
    assert sorted((d["field"], d["message"]) for d in assert_validation_error(code, body)) == [
        ("site", "must be an object"),
        ("tags", "must be an array"),
    ]


def test_validator_messages_speak_the_clients_language() -> None:
    """attrs validators fail with sentences about the wire field, at every depth."""
    code, body = post(json.dumps({
        "projectName": "x" * 21, "pageSize": 0, "site": {"streetName": "s", "zipCode": 5},
    }).encode())
    assert sorted((d["field"], d["message"]) for d in assert_validation_error(code, body)) == [
        ("pageSize", "must be at least 1"),
        ("projectName", "must be at most 20 characters long"),
        ("site.zipCode", "must be at least 1000"),
    ]
