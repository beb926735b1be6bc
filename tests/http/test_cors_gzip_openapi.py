"""CORS, gzip, OPTIONS, the OpenAPI document and /docs (StubTreq)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from attrs import field, frozen, validators

from installsure.api.health import HealthSources, health_router
from installsure.http import HttpSettings, Paged, Router
from tests.http.helpers import body_of, fetch, header, json_of, raw_fetch, stub

ORIGIN = "https://app.installsure.test"


@frozen
class Note:
    note_id: str
    text: str


@frozen
class NewNote:
    text: str


@frozen
class NoteQuery:
    page: int = 1


def make_router() -> Router:
    router = Router()

    @router.route("GET", "/api/notes/{note_id}", response=Note, tags=("notes",),
                  summary="One note", errors=(404,))
    def get_note(_ctx: Any, note_id: str) -> Note:
        return Note(note_id, "x")

    @router.route("GET", "/api/notes", query=NoteQuery, response=Paged[Note], rate_limit=None)
    def list_notes(_ctx: Any, query: NoteQuery) -> Paged[Note]:
        return Paged([Note(str(i), "n" * 50) for i in range(40)], 1, 40, 40)

    @router.route("POST", "/api/notes", body=NewNote, response=Note, status=201, auth="user")
    def add_note(_ctx: Any, body: NewNote) -> Note:
        return Note("1", body.text)

    return router


def cors_client() -> Any:
    return stub(make_router(), HttpSettings(cors_origins=(ORIGIN,)))[0]


def test_allowed_origin_gets_cors_headers() -> None:
    """An allowlisted Origin gets Allow-Origin, credentials, exposed X-Request-ID, Vary."""
    client = cors_client()
    response = fetch(client, "GET", "/api/notes/1", headers={"Origin": ORIGIN})
    assert header(response, "Access-Control-Allow-Origin") == ORIGIN
    assert header(response, "Access-Control-Allow-Credentials") == "true"
    assert "X-Request-ID" in (header(response, "Access-Control-Expose-Headers") or "")
    assert "Origin" in (header(response, "Vary") or "")


def test_disallowed_origin_gets_no_cors_headers_and_no_error() -> None:
    """Another Origin is served normally, just without CORS headers (never a 500)."""
    client = cors_client()
    response = fetch(client, "GET", "/api/notes/1", headers={"Origin": "https://evil.test"})
    assert response.code == 200
    assert header(response, "Access-Control-Allow-Origin") is None
    assert header(response, "Access-Control-Allow-Credentials") is None


def test_preflight_is_204_with_methods_for_allowed_origin_only() -> None:
    """OPTIONS preflight answers 204; CORS grants only for allowlisted origins; unknown
    paths are 404."""
    client = cors_client()
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    response = fetch(client, "OPTIONS", "/api/notes", headers=preflight)
    assert response.code == 204
    assert header(response, "Access-Control-Allow-Origin") == ORIGIN
    assert "POST" in (header(response, "Access-Control-Allow-Methods") or "")
    assert "Content-Type" in (header(response, "Access-Control-Allow-Headers") or "")
    evil = fetch(client, "OPTIONS", "/api/notes", headers={**preflight, "Origin": "https://x.test"})
    assert evil.code == 204
    assert header(evil, "Access-Control-Allow-Origin") is None
    assert header(evil, "Access-Control-Allow-Methods") is None
    assert fetch(client, "OPTIONS", "/api/nothing", headers=preflight).code == 404


def test_large_json_is_gzipped_when_accepted() -> None:
    """JSON responses over 1 KiB are gzipped when Accept-Encoding allows; small ones and
    clients that do not accept gzip get plain JSON."""
    _, resource = stub(make_router())
    zipped, raw = raw_fetch(resource, "GET", "/api/notes", {"Accept-Encoding": "gzip, br"})
    assert header(zipped, "Content-Encoding") == "gzip"
    assert "Accept-Encoding" in (header(zipped, "Vary") or "")
    assert zipped.length == len(raw)
    assert len(json.loads(gzip.decompress(raw))["data"]) == 40
    plain, body = raw_fetch(resource, "GET", "/api/notes")
    assert header(plain, "Content-Encoding") is None
    assert plain.length == len(body) > 1024
    refused, _ = raw_fetch(resource, "GET", "/api/notes", {"Accept-Encoding": "gzip;q=0"})
    assert header(refused, "Content-Encoding") is None
    small, _ = raw_fetch(resource, "GET", "/api/notes/1", {"Accept-Encoding": "gzip"})
    assert header(small, "Content-Encoding") is None


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            found += _refs(value)
        return found
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_openapi_lists_every_route_and_references_resolve() -> None:
    """/openapi.json is OpenAPI 3.1 with every declared route, camelCase schemas, the
    envelope, path and query parameters, and every $ref resolving."""
    router = make_router()
    router.include(health_router(HealthSources()))
    client, _ = stub(router, rate_limiter=None)
    response = fetch(client, "GET", "/openapi.json")
    assert response.code == 200
    document = json_of(client, response)
    assert document["openapi"] == "3.1.0"
    expected = {(r.openapi_path, r.method.lower()) for r in router.routes}
    listed = {(p, m) for p, ops in document["paths"].items() for m in ops}
    assert expected | {("/metrics", "get")} == listed
    for ref in _refs(document):
        assert _resolve(document, ref) is not None
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    note = document["components"]["schemas"]["Note"]
    assert set(note["properties"]) == {"noteId", "text"}
    get_op = document["paths"]["/api/notes/{note_id}"]["get"]
    assert get_op["parameters"][0] == {
        "name": "note_id", "in": "path", "required": True,
        "schema": {"type": "string", "pattern": "^[^/]+$"},
    }
    ok = get_op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["data"] == {"$ref": "#/components/schemas/Note"}
    assert "404" in get_op["responses"]
    post_op = document["paths"]["/api/notes"]["post"]
    assert post_op["security"] == [{"bearerAuth": []}]
    assert {"400", "401", "413", "415"} <= set(post_op["responses"])
    list_op = document["paths"]["/api/notes"]["get"]
    assert list_op["parameters"][0]["name"] == "page"
    listed_schema = list_op["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed_schema["properties"]["data"]["items"] == {"$ref": "#/components/schemas/Note"}
    assert listed_schema["properties"]["meta"] == {"$ref": "#/components/schemas/PageMeta"}


def test_docs_page_and_assets_are_served_locally() -> None:
    """/docs is an HTML page that loads Swagger UI from our own paths (no CDN)."""
    client, resource = stub(make_router())
    page = fetch(client, "GET", "/docs")
    html = body_of(client, page).decode()
    assert page.code == 200
    assert "/docs/swagger-ui-bundle.js" in html
    assert "http" not in html.replace("http-equiv", "")
    bundle, zipped = raw_fetch(
        resource, "GET", "/docs/swagger-ui-bundle.js", {"Accept-Encoding": "gzip"}
    )
    assert bundle.code == 200
    assert header(bundle, "Content-Encoding") == "gzip"
    assert b"SwaggerUIBundle" in gzip.decompress(zipped)
    for path in ["/docs/swagger-ui.css", "/docs/init.js", "/docs/swagger-ui-LICENSE.txt"]:
        assert fetch(client, "GET", path).code == 200


def test_docs_can_be_switched_off() -> None:
    """expose_docs=false removes /docs and /openapi.json."""
    client, _ = stub(make_router(), HttpSettings(expose_docs=False))
    assert fetch(client, "GET", "/docs").code == 404
    assert fetch(client, "GET", "/openapi.json").code == 404


def test_api_csp_is_strict_and_docs_get_their_own_single_policy() -> None:
    """JSON responses carry "default-src 'none'"; /docs replaces it with one policy that
    lets Swagger UI load its own files."""
    client, _ = stub(make_router())
    api = fetch(client, "GET", "/api/notes/1")
    assert api.headers.getRawHeaders("Content-Security-Policy") == [
        "default-src 'none'; frame-ancestors 'none'"
    ]
    docs = fetch(client, "GET", "/docs")
    policies = docs.headers.getRawHeaders("Content-Security-Policy")
    assert len(policies) == 1
    assert "script-src 'self'" in policies[0]


def test_operation_ids_stay_unique_when_handlers_share_a_name() -> None:
    """Two modules' handlers called the same still get distinct operationIds."""
    from installsure.http.openapi import build_document

    def get(_ctx: Any) -> None: ...

    router = Router()
    router.add("GET", "/api/a", get)
    router.add("GET", "/api/b", get)
    document = build_document(router.routes)
    ids = {document["paths"][p]["get"]["operationId"] for p in ("/api/a", "/api/b")}
    assert ids == {"get_get", "get_get_2"}


@frozen
class Dims:
    width_mm: int = field(validator=[validators.ge(1), validators.le(5000)])
    label: str = field(default="", validator=validators.max_len(40))
    code: str | None = field(default=None, validator=validators.optional(
        validators.matches_re(r"[A-Z]{3}")))
    finish: str = field(default="matt", validator=validators.in_(["matt", "gloss"]))
    weights: list[float] = field(factory=list, validator=validators.deep_iterable(
        validators.gt(0), validators.max_len(3)))


@frozen
class DimsQuery:
    page: int = field(default=1, validator=validators.ge(1))
    per_page: int = field(default=20, validator=[validators.ge(1), validators.le(100)])


def test_openapi_shows_every_constraint_the_validator_enforces() -> None:
    """Validators become JSON Schema keywords (minimum/maximum, maxLength, pattern, enum,
    item rules), integers are 64-bit, and a forbid_extra body refuses unknown properties."""
    from installsure.http.openapi import build_document

    router = Router()
    router.add("POST", "/api/dims", lambda ctx, body: body, body=Dims, forbid_extra=True)
    router.add("GET", "/api/dims", lambda ctx, query: [], query=DimsQuery)
    document = build_document(router.routes)
    schemas = document["components"]["schemas"]
    body_ref = document["paths"]["/api/dims"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    dims = _resolve(document, body_ref["$ref"])
    assert dims is schemas["DimsStrict"]
    assert dims["additionalProperties"] is False
    props = dims["properties"]
    assert props["widthMm"] == {"type": "integer", "format": "int64", "minimum": 1,
                                "maximum": 5000}
    assert props["label"] == {"type": "string", "maxLength": 40}
    assert props["code"]["pattern"] == "^(?:[A-Z]{3})$"
    assert props["finish"] == {"type": "string", "enum": ["matt", "gloss"]}
    assert props["weights"]["maxItems"] == 3
    assert props["weights"]["items"] == {"type": "number", "exclusiveMinimum": 0}
    assert dims["required"] == ["widthMm"]
    params = {p["name"]: p for p in document["paths"]["/api/dims"]["get"]["parameters"]}
    assert params["page"]["schema"]["minimum"] == 1
    assert params["perPage"]["schema"]["minimum"] == 1
    assert params["perPage"]["schema"]["maximum"] == 100
    assert params["perPage"]["required"] is False


def test_openapi_documents_media_types_and_every_error_status() -> None:
    """/metrics is text/plain; /readyz's 503 is its own report, not the envelope; routes
    list 400/401/403/404/413/415/429 as they apply, each the error envelope, and 429
    promises Retry-After and RateLimit-* headers."""
    router = make_router()
    router.include(health_router(HealthSources()))
    client, _ = stub(router, HttpSettings(metrics_token="t0ken"))
    document = json_of(client, fetch(client, "GET", "/openapi.json"))
    metrics = document["paths"]["/metrics"]["get"]["responses"]
    assert set(metrics["200"]["content"]) == {"text/plain"}
    assert metrics["401"] == {"$ref": "#/components/responses/E401"}
    ready = document["paths"]["/readyz"]["get"]["responses"]
    assert ready["503"]["content"]["application/json"]["schema"]["type"] == "object"
    # With a rate limiter (the server's default), limited routes may answer 429.
    from installsure.http.openapi import build_document

    document = build_document(make_router().routes, rate_limited=True)
    add = document["paths"]["/api/notes"]["post"]["responses"]
    assert {"400", "401", "403", "413", "415", "429", "500"} <= set(add)
    get_one = document["paths"]["/api/notes/{note_id}"]["get"]["responses"]
    assert {"400", "404", "429", "500"} <= set(get_one)
    assert set(get_one["200"]["headers"]) == {"RateLimit-Limit", "RateLimit-Remaining",
                                              "RateLimit-Reset"}
    listed = document["paths"]["/api/notes"]["get"]["responses"]
    assert "429" not in listed, "that route has no rate limit"
    responses = document["components"]["responses"]
    for status in ("400", "401", "403", "404", "405", "429", "503"):
        content = responses[f"E{status}"]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Error"}
    assert {"Retry-After", "RateLimit-Limit"} <= set(responses["E429"]["headers"])
    assert "Allow" in responses["E405"]["headers"]
