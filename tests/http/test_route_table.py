"""Matching requests to routes: remembered matches answer as the matcher does."""

from __future__ import annotations

import pytest

from installsure.http.dispatch import MATCHES_REMEMBERED, RouteTable
from installsure.http.errors import ApiError
from installsure.http.routing import Router


def table() -> RouteTable:
    router = Router()
    router.add("GET", "/api/things/{id}", lambda ctx, id: {"id": id})
    router.add("DELETE", "/api/things/{id}", lambda ctx, id: {"id": id})
    router.add("GET", "/api/things", lambda ctx: [])
    return RouteTable(router)


def test_a_path_matched_again_gives_the_same_route_and_parameters() -> None:
    """The second match of a path with parameters (remembered) names the same route and
    parameters as the first; the other method at that path gets its own route, and a
    method no route has there is still 405."""
    routes = table()
    first = routes.match(b"GET", b"/api/things/abc")
    again = routes.match(b"GET", b"/api/things/abc")
    assert again == first
    assert first[1] == {"id": "abc"}
    deleting = routes.match(b"DELETE", b"/api/things/abc")
    assert deleting[0].method == "DELETE"
    assert deleting[1] == {"id": "abc"}
    for _ in range(2):
        with pytest.raises(ApiError) as refused:
            routes.match(b"PUT", b"/api/things/abc")
        assert refused.value.status == 405


def test_remembered_matches_stay_bounded() -> None:
    """However many distinct paths arrive, at most MATCHES_REMEMBERED are remembered, and
    each still matches with its own parameter."""
    routes = table()
    for n in range(MATCHES_REMEMBERED + 5):
        assert routes.match(b"GET", f"/api/things/t{n}".encode())[1] == {"id": f"t{n}"}
    assert len(routes._matched) <= MATCHES_REMEMBERED
