"""Middleware and error envelope, through StubTreq against the API resource."""

from __future__ import annotations

import re
from typing import Any

import pytest
from attrs import frozen
from twisted.internet import defer
from twisted.web.http_headers import Headers

from installsure.http import ApiError, HttpSettings, Paged, Response, Router
from tests.http.helpers import body_of, captured_events, fetch, header, json_of, stub


@frozen
class Item:
    item_id: str
    display_name: str


def make_router() -> Router:
    router = Router()

    @router.route("GET", "/api/items/{item_id}", response=Item, rate_limit=None)
    def get_item(_ctx: Any, item_id: str) -> Item:
        if item_id == "missing":
            raise ApiError("NOT_FOUND", "No such item.")
        return Item(item_id, "Crane")

    @router.route("GET", "/api/items", rate_limit=None)
    def list_items(_ctx: Any) -> Paged:
        return Paged([Item("a", "A"), Item("b", "B")], page=2, per_page=2, total=7)

    @router.route("DELETE", "/api/items/{item_id}", rate_limit=None)
    async def delete_item(_ctx: Any, item_id: str) -> dict[str, str]:
        await defer.succeed(None)
        return {"id": item_id}

    @router.route("GET", "/api/boom", rate_limit=None)
    def boom(_ctx: Any) -> None:
        raise RuntimeError("secret database password in message")

    @router.route("GET", "/api/boom-later", rate_limit=None)
    async def boom_later(_ctx: Any) -> None:
        raise KeyError("internal detail")

    @router.route("GET", "/api/created", status=201, rate_limit=None)
    def created(_ctx: Any) -> Response:
        return Response(body={"ok": True}, status=201, headers=[(b"Location", b"/api/x")])

    @router.route("GET", "/api/whoami", rate_limit=None)
    def whoami(ctx: Any) -> dict[str, Any]:
        return {"remote": ctx.remote, "requestId": ctx.request_id, "traceId": ctx.trace_id}

    @router.route("GET", "/api/private", auth="user", rate_limit=None)
    def private(_ctx: Any) -> dict[str, str]:
        return {"secret": "x"}

    return router


def test_success_envelope_with_camel_case_fields() -> None:
    """A handler's attrs value is wrapped as {"success": true, "data": ...} in camelCase."""
    client, _ = stub(make_router())
    response = fetch(client, "GET", "/api/items/42")
    assert response.code == 200
    assert json_of(client, response) == {
        "success": True,
        "data": {"itemId": "42", "displayName": "Crane"},
    }
    assert header(response, "Content-Type") == "application/json; charset=utf-8"
    assert response.length == len(body_of(client, response))  # from Content-Length


def test_paged_results_carry_meta() -> None:
    """Paged adds meta {page, perPage, total} next to data."""
    client, _ = stub(make_router())
    body = json_of(client, fetch(client, "GET", "/api/items"))
    assert body["meta"] == {"page": 2, "perPage": 2, "total": 7}
    assert [i["itemId"] for i in body["data"]] == ["a", "b"]


def test_coroutine_handler_and_custom_response() -> None:
    """Async handlers are awaited; Response sets status and headers."""
    client, _ = stub(make_router())
    response = fetch(client, "DELETE", "/api/items/9")
    assert json_of(client, response) == {"success": True, "data": {"id": "9"}}
    created = fetch(client, "GET", "/api/created")
    assert created.code == 201
    assert header(created, "Location") == "/api/x"


def test_api_error_becomes_envelope_with_request_id() -> None:
    """A raised ApiError answers the error envelope with the response's request id."""
    client, _ = stub(make_router())
    response = fetch(client, "GET", "/api/items/missing")
    body = json_of(client, response)
    assert response.code == 404
    assert body == {
        "success": False,
        "error": "No such item.",
        "code": "NOT_FOUND",
        "requestId": header(response, "X-Request-ID"),
    }


def test_unknown_route_is_404_envelope() -> None:
    """Unknown paths get 404 NOT_FOUND in the envelope, never an HTML page."""
    client, _ = stub(make_router())
    response = fetch(client, "GET", "/nowhere/at/all")
    assert response.code == 404
    assert json_of(client, response)["code"] == "NOT_FOUND"


def test_wrong_method_is_405_with_allow() -> None:
    """A known path with the wrong method answers 405 and lists the methods in Allow."""
    client, _ = stub(make_router())
    response = fetch(client, "POST", "/api/items/1")
    assert response.code == 405
    assert json_of(client, response)["code"] == "METHOD_NOT_ALLOWED"
    allow = header(response, "Allow")
    assert allow is not None
    assert {"GET", "DELETE", "HEAD", "OPTIONS"} <= set(allow.split(", "))
    static = fetch(client, "PUT", "/livez" if False else "/metrics")
    assert static.code == 405
    assert header(static, "Allow") == "GET, HEAD, OPTIONS"


def test_head_is_served_by_the_get_route() -> None:
    """HEAD gets the GET route's status and headers, without a body."""
    client, _ = stub(make_router())
    response = fetch(client, "HEAD", "/api/items/1")
    assert response.code == 200
    assert body_of(client, response) == b""


@pytest.mark.parametrize("environment", ["production", "development"])
def test_unhandled_exception_is_500_and_logged(environment: str) -> None:
    """A crash answers 500 INTERNAL_ERROR with a request id; production hides the message;
    the traceback is logged either way."""
    client, _ = stub(make_router(), environment=environment)
    with captured_events("installsure.http") as events:
        response = fetch(client, "GET", "/api/boom")
        later = fetch(client, "GET", "/api/boom-later")
    body = json_of(client, response)
    assert response.code == 500
    assert later.code == 500
    assert body["code"] == "INTERNAL_ERROR"
    assert body["requestId"] == header(response, "X-Request-ID")
    if environment == "production":
        assert "secret" not in body["error"]
    else:
        assert "secret database password" in body["error"]
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 2
    assert failures[0]["request_id"] == body["requestId"]
    assert failures[0]["log_failure"].check(RuntimeError)


def test_auth_routes_answer_401_without_an_authenticator() -> None:
    """The auth hook is required for routes that declare auth; without one they are closed."""
    client, _ = stub(make_router())
    response = fetch(client, "GET", "/api/private")
    assert response.code == 401
    assert json_of(client, response)["code"] == "UNAUTHENTICATED"


def test_auth_hook_sets_the_user_or_refuses() -> None:
    """The authenticator receives the requirement name and may refuse with an ApiError."""
    seen: list[str] = []

    @frozen
    class User:
        id: str

    def authenticate(ctx: Any, requirement: str) -> Any:
        seen.append(requirement)
        if ctx.request.requestHeaders.getRawHeaders(b"authorization") is None:
            raise ApiError("UNAUTHENTICATED", "Log in first.")
        return defer.succeed(User("u1"))

    client, _ = stub(make_router(), authenticate=authenticate)
    assert fetch(client, "GET", "/api/private").code == 401
    ok = fetch(client, "GET", "/api/private", headers={"Authorization": "Bearer x"})
    assert ok.code == 200
    assert seen == ["user", "user"]


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_request_id_kept_when_sane_else_new_uuid() -> None:
    """A sane client X-Request-ID is echoed; a long or dangerous one is replaced by a UUID."""
    client, _ = stub(make_router())
    kept = fetch(client, "GET", "/api/whoami", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert header(kept, "X-Request-ID") == "abc.DEF_1-2"
    assert json_of(client, kept)["data"]["requestId"] == "abc.DEF_1-2"
    for bad in ["x" * 129, "a b", "evil\tinjected", "ü-nope", ""]:
        response = fetch(client, "GET", "/api/whoami", headers={"X-Request-ID": bad})
        new = header(response, "X-Request-ID")
        assert new is not None
        assert _UUID.match(new), (bad, new)
    first = header(fetch(client, "GET", "/api/whoami"), "X-Request-ID")
    second = header(fetch(client, "GET", "/api/whoami"), "X-Request-ID")
    assert first != second


def test_response_time_and_security_headers_and_no_server_version() -> None:
    """Every response, errors included, has X-Response-Time, the security headers and no
    Server version; HSTS only over TLS or behind a trusted TLS proxy."""
    client, _ = stub(make_router())
    for path in ["/api/items/1", "/nowhere", "/api/boom"]:
        response = fetch(client, "GET", path)
        assert re.match(r"^\d+\.\d{2}ms$", header(response, "X-Response-Time") or "")
        assert header(response, "X-Content-Type-Options") == "nosniff"
        assert header(response, "X-Frame-Options") == "DENY"
        assert header(response, "Referrer-Policy") == "no-referrer"
        assert header(response, "Cross-Origin-Opener-Policy") == "same-origin"
        assert header(response, "Cross-Origin-Resource-Policy") == "same-origin"
        assert "frame-ancestors 'none'" in (header(response, "Content-Security-Policy") or "")
        assert header(response, "Server") is None
        assert header(response, "Strict-Transport-Security") is None
    proxied = fetch(client, "GET", "/api/items/1", headers={"X-Forwarded-Proto": "https"})
    assert header(proxied, "Strict-Transport-Security") is None
    trusting, _ = stub(make_router(), HttpSettings(trust_proxy=True))
    proxied = fetch(trusting, "GET", "/api/items/1", headers={"X-Forwarded-Proto": "https"})
    assert (header(proxied, "Strict-Transport-Security") or "").startswith("max-age=31536000")
    # Behind two proxies that append, the outer one's entry counts: the client's scheme.
    two_hops, _ = stub(make_router(), HttpSettings(trust_proxy=True, proxy_hops=2))
    for chain, hsts in (("https, http", True), ("http, http", False), ("http, https, http", True)):
        proxied = fetch(two_hops, "GET", "/api/items/1", headers={"X-Forwarded-Proto": chain})
        assert (header(proxied, "Strict-Transport-Security") is not None) is hsts, chain


def test_forwarded_for_only_honoured_behind_trusted_proxy() -> None:
    """X-Forwarded-For sets the client address only when trust_proxy is on (last hop)."""
    xff = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    client, _ = stub(make_router())
    assert json_of(client, fetch(client, "GET", "/api/whoami", headers=xff))["data"][
        "remote"
    ] != "203.0.113.9"
    trusting, _ = stub(make_router(), HttpSettings(trust_proxy=True))
    remote = json_of(trusting, fetch(trusting, "GET", "/api/whoami", headers=xff))["data"]["remote"]
    assert remote == "203.0.113.9"


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (1, ["6.6.6.6, 203.0.113.9, 10.0.0.2"], "10.0.0.2"),
        (2, ["6.6.6.6, 203.0.113.9, 10.0.0.2"], "203.0.113.9"),
        (2, ["6.6.6.6", "203.0.113.9,10.0.0.2"], "203.0.113.9"),  # several lines, in order
        (2, ["6.6.6.6, 203.0.113.9, , 10.0.0.2"], "203.0.113.9"),  # empty entries skipped
        (5, ["203.0.113.9, 10.0.0.2"], "203.0.113.9"),  # fewer entries: the leftmost
    ],
)
def test_the_client_address_is_proxy_hops_from_the_right(
    hops: int, forwarded: list[str], expected: str
) -> None:
    """Behind ``proxy_hops`` trusted proxies, each appending to X-Forwarded-For, the
    client's address is that many entries from the right; what the client wrote
    further left is ignored."""
    router = make_router()
    client, _ = stub(router, HttpSettings(trust_proxy=True, proxy_hops=hops))
    request_headers = Headers({b"X-Forwarded-For": [v.encode() for v in forwarded]})
    response = fetch(client, "GET", "/api/whoami", headers=request_headers)
    remote = json_of(client, response)["data"]["remote"]
    assert remote == expected


def test_traceparent_trace_id_reaches_handler_and_access_log() -> None:
    """A valid W3C traceparent's trace id is in the context and the access-log event;
    a malformed one is ignored."""
    client, _ = stub(make_router())
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with captured_events("installsure.access") as events:
        response = fetch(
            client, "GET", "/api/whoami",
            headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        bad = fetch(client, "GET", "/api/whoami", headers={"traceparent": "00-zz-01"})
    assert json_of(client, response)["data"]["traceId"] == trace
    assert json_of(client, bad)["data"]["traceId"] is None
    assert events[0]["traceId"] == trace
    assert events[0]["route"] == "/api/whoami"
    assert events[0]["status"] == 200
    assert events[0]["requestId"] == header(response, "X-Request-ID")
    assert "traceId" not in events[1]


def test_slow_requests_are_logged_as_warnings() -> None:
    """A request over the slow threshold produces a slow-request warning."""
    client, _ = stub(make_router(), HttpSettings(slow_request_threshold=1e-9))
    with captured_events("installsure.access") as events:
        fetch(client, "GET", "/api/items/1")
    slow = [e for e in events if "thresholdMs" in e]
    assert len(slow) == 1
    assert slow[0]["route"] == "/api/items/{item_id}"


def test_metrics_count_requests_by_route_template() -> None:
    """/metrics shows request counts labelled by route template and status, and process
    metrics."""
    client, _ = stub(make_router())
    fetch(client, "GET", "/api/items/77")
    fetch(client, "GET", "/api/items/78")
    text = body_of(client, fetch(client, "GET", "/metrics")).decode()
    match = re.search(
        r'installsure_http_requests_total\{method="GET",route="/api/items/\{item_id\}",'
        r'status="200"\} (\d+)',
        text,
    )
    assert match is not None
    assert int(float(match.group(1))) >= 2
    assert "installsure_http_request_duration_seconds_bucket" in text
    assert "installsure_http_requests_in_flight" in text
    assert "process_cpu_seconds_total" in text


def test_metrics_token_required_when_configured() -> None:
    """With http.metrics_token set, /metrics needs the bearer token."""
    client, _ = stub(Router(), HttpSettings(metrics_token="s3cret"))
    assert fetch(client, "GET", "/metrics").code == 401
    wrong = fetch(client, "GET", "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.code == 401
    ok = fetch(client, "GET", "/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.code == 200
    assert (header(ok, "Content-Type") or "").startswith("text/plain")


def test_router_rejects_duplicate_and_bad_declarations() -> None:
    """Declaring a route twice or with a bad method/path fails at start, clearly."""
    router = Router()
    router.add("GET", "/a", lambda ctx: None)
    with pytest.raises(ValueError, match="declared twice"):
        router.add("GET", "/a", lambda ctx: None)
    with pytest.raises(ValueError, match="unknown HTTP method"):
        router.add("FETCH", "/b", lambda ctx: None)
    with pytest.raises(ValueError, match="must start with '/'"):
        router.add("GET", "b", lambda ctx: None)


def test_bad_response_header_from_handler_is_500_not_a_hang() -> None:
    """A handler returning a header Twisted refuses still gets an answer (500)."""
    router = Router()

    @router.route("GET", "/api/bad-header", rate_limit=None)
    def bad(_ctx: Any) -> Response:
        return Response(body={"x": 1}, headers=[(b"Bad Name", b"v")])

    client, _ = stub(router)
    response = fetch(client, "GET", "/api/bad-header")
    assert response.code == 500
    assert json_of(client, response)["code"] == "INTERNAL_ERROR"


def test_reserved_path_parameter_names_are_refused() -> None:
    """Path parameters cannot shadow the ctx, body or query arguments."""
    with pytest.raises(ValueError, match="may not be named body"):
        Router().add("GET", "/a/{body}", lambda ctx, body: None)


def test_drain_waits_for_in_flight_requests_within_the_grace_period() -> None:
    """drain(grace) fires with 0 when the last running request finishes, or with the
    number still running once the grace period is over."""
    from twisted.internet.task import Clock

    pending: list[defer.Deferred[dict[str, bool]]] = []
    router = Router()

    @router.route("GET", "/api/slow", rate_limit=None)
    def slow(_ctx: Any) -> defer.Deferred[dict[str, bool]]:
        pending.append(defer.Deferred())
        return pending[-1]

    client, resource = stub(router)
    clock = Clock()
    assert resource.drain(5, clock).result == 0
    results: list[Any] = []
    client.get("http://example.test/api/slow").addBoth(results.append)
    client.flush()
    assert resource.in_flight == 1
    drained: list[int] = []
    resource.drain(5, clock).addCallback(drained.append)
    clock.advance(1)
    assert drained == []
    pending[0].callback({"done": True})
    client.flush()
    assert drained == [0]
    assert results[0].code == 200
    client.get("http://example.test/api/slow")
    client.flush()
    late: list[int] = []
    resource.drain(5, clock).addCallback(late.append)
    clock.advance(5)
    assert late == [1]
    pending[1].callback({"done": True})
    client.flush()


def test_rate_limit_key_is_the_user_when_known_else_the_address() -> None:
    """Routes count hits per user once the auth hook names one, per address otherwise,
    under the route's named limit; a signed-in request also counts under the address
    rule, in the same call."""
    from installsure.http.ratelimit import RateDecision, RateQuery

    seen: list[tuple[tuple[str, str], ...]] = []

    class RecordingLimiter:
        auth_failures = None  # no failed-authentication rule: only request limits

        def rule(self, name: str) -> object:
            return name

        def has_rule(self, name: str) -> bool:
            return name == "address"

        def ask(self, queries: list[RateQuery]) -> defer.Deferred[list[RateDecision]]:
            assert all(query.count for query in queries)
            seen.append(tuple((query.rule, query.key) for query in queries))
            return defer.succeed([RateDecision(allowed=True, limit=5, remaining=4, reset=60)
                                  for _ in queries])

    @frozen
    class User:
        id: str

    router = Router()
    router.add("GET", "/api/open", lambda ctx: {"ok": True})
    router.add("POST", "/api/auth/login", lambda ctx: {"ok": True}, rate_limit="login")
    router.add("GET", "/api/mine", lambda ctx: {"ok": True}, auth="user")
    client, _ = stub(
        router,
        rate_limiter=RecordingLimiter(),  # type: ignore[arg-type]
        authenticate=lambda ctx, requirement: User("u-7"),
    )
    open_response = fetch(client, "GET", "/api/open")
    fetch(client, "POST", "/api/auth/login")
    fetch(client, "GET", "/api/mine")
    assert header(open_response, "RateLimit-Remaining") == "4"
    assert len(seen[0]) == 1
    assert seen[0][0][0] == "default"
    assert seen[0][0][1].startswith("ip:")
    assert [rule for rule, _key in seen[1]] == ["login"]
    assert seen[2][0] == ("default", "user:u-7")
    assert seen[2][1] == ("address", seen[0][0][1])
