"""Small builders shared by the HTTP tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.logger import LogEvent, globalLogPublisher
from twisted.web.server import Site

from installsure.http import HttpSettings, Router, build_resource
from installsure.http.app import ApiResource


def stub(
    router: Router | None = None,
    settings: HttpSettings | None = None,
    **kw: Any,
) -> tuple[StubTreq, ApiResource]:
    resource = build_resource(router or Router(), settings or HttpSettings(), **kw)
    return StubTreq(resource), resource


def fetch(client: StubTreq, method: str, url: str, **kw: Any) -> Any:
    """Issue a request through StubTreq and return the response (synchronously)."""
    results: list[Any] = []
    d = client.request(method, "http://example.test" + url, **kw)
    d.addBoth(results.append)
    client.flush()
    assert results, f"{method} {url} did not answer"
    if not hasattr(results[0], "code"):
        results[0].raiseException()
    return results[0]


def body_of(client: StubTreq, response: Any) -> bytes:
    results: list[Any] = []
    client.content(response).addBoth(results.append)
    client.flush()
    assert isinstance(results[0], bytes), results[0]
    return results[0]


def json_of(client: StubTreq, response: Any) -> Any:
    return json.loads(body_of(client, response))


def header(response: Any, name: str) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0] if values else None


@contextmanager
def captured_events(namespace_prefix: str = "installsure") -> Iterator[list[LogEvent]]:
    """Log events of ``namespace_prefix*`` emitted while the block runs."""
    events: list[LogEvent] = []

    def observer(event: LogEvent) -> None:
        if str(event.get("log_namespace", "")).startswith(namespace_prefix):
            events.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)


def raw_fetch(
    resource: ApiResource, method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[Any, bytes]:
    """Like :func:`fetch` but without treq's automatic gzip decoding."""
    import treq
    from treq.testing import RequestTraversalAgent
    from twisted.web.http_headers import Headers

    agent = RequestTraversalAgent(resource)
    results: list[Any] = []
    raw_headers = Headers({k: [v] for k, v in (headers or {}).items()})
    d = agent.request(method.encode(), b"http://example.test" + url.encode(), raw_headers)
    d.addCallback(lambda r: treq.content(r).addCallback(lambda b: (r, b)))
    d.addBoth(results.append)
    agent.flush()
    assert results, f"{method} {url} did not answer"
    assert isinstance(results[0], tuple), results
    return results[0]  # type: ignore[no-any-return]


@contextmanager
def listening(site: Site) -> Iterator[int]:
    """``site`` listening on a free port of 127.0.0.1 while the block runs; the port."""
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        yield port.getHost().port
    finally:
        pytest_twisted.blockon(port.stopListening())
