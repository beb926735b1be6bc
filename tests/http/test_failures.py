"""A response that fails while it is written still answers and is counted once; what a
handler puts in a header is sanitised like every other header value."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from installsure.http import ApiError, Response, Router
from tests.http.helpers import captured_events, fetch, header, json_of, raw_fetch, stub

_BAD_HEADER = (b"Bad Name", b"1")  # a name twisted.web refuses: writing it raises


def _router() -> Router:
    router = Router()

    @router.route("GET", "/api/conflict", rate_limit=None)
    def conflict(_ctx: Any) -> None:
        raise ApiError("CONFLICT", "Taken.", headers=[_BAD_HEADER])

    @router.route("GET", "/api/conflict-later", rate_limit=None)
    async def conflict_later(_ctx: Any) -> None:
        await defer.succeed(None)
        raise ApiError("CONFLICT", "Taken.", headers=[_BAD_HEADER])

    @router.route("GET", "/api/crash-later", rate_limit=None)
    async def crash_later(ctx: Any) -> None:
        ctx.add_header(*_BAD_HEADER)
        await defer.succeed(None)
        raise RuntimeError("boom")

    @router.route("GET", "/api/typed", rate_limit=None)
    def typed(_ctx: Any) -> Response:
        return Response(body=b"hello", content_type=b"text/plain\r\nX-Injected: yes")

    return router


@pytest.mark.parametrize("path", ["/api/conflict", "/api/conflict-later", "/api/crash-later"])
def test_an_answer_that_cannot_be_written_becomes_a_500_and_leaves_nothing_in_flight(
    path: str,
) -> None:
    """An error or crash answer whose headers twisted.web refuses is replaced by a 500
    in the envelope (with its request id), logged once, and the request no longer
    counts as in flight: a drain does not wait for it."""
    client, resource = stub(_router())
    with captured_events("installsure.access") as access:
        response = fetch(client, "GET", path, headers={"X-Request-ID": "w-1"})
        body = json_of(client, response)
    assert response.code == 500
    assert body["code"] == "INTERNAL_ERROR"
    assert body["requestId"] == "w-1"
    assert header(response, "X-Request-ID") == "w-1"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert [event["status"] for event in access] == [500]
    assert resource.in_flight == 0
    drained: list[int] = []
    resource.drain(30.0, Clock()).addCallback(drained.append)
    assert drained == [0]


def test_a_handlers_content_type_cannot_add_headers() -> None:
    """A Content-Type from a handler with a line break in it is sanitised as any header
    value is, so it cannot smuggle another header into the response."""
    client, resource = stub(_router())
    response, body = raw_fetch(resource, "GET", "/api/typed")
    assert body == b"hello"
    assert response.headers.getRawHeaders("x-injected") is None
    assert response.headers.getRawHeaders("content-type") == ["text/plain X-Injected: yes"]
    assert client is not None
