"""A Deferred helper the job runner's parts share."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred


def observe(d: Deferred[Any]) -> Deferred[None]:
    """A new Deferred that fires (with None) when ``d`` does, leaving ``d``'s result to
    its own callbacks: many callers can wait for one operation."""
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out
