"""Topic URIs and the three match policies of WAMP subscriptions.

* ``exact``: the topic is the URI.
* ``prefix``: the topic starts with the URI (plain string prefix, as WAMP defines it).
* ``wildcard``: the URI has as many dot-separated components as the topic, and each
  non-empty component equals the topic's (``installsure.project..updated``).
"""

from __future__ import annotations

EXACT = "exact"
PREFIX = "prefix"
WILDCARD = "wildcard"
MATCH_POLICIES = (EXACT, PREFIX, WILDCARD)


def wildcard_matches(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Whether a wildcard pattern's components match a topic's components."""
    if len(pattern) != len(topic):
        return False
    return all(not want or want == got for want, got in zip(pattern, topic, strict=True))


def matches(uri: str, match: str, topic: str) -> bool:
    """Whether a subscription (``uri``, ``match``) receives events published to ``topic``."""
    if match == EXACT:
        return uri == topic
    if match == PREFIX:
        return topic.startswith(uri)
    return wildcard_matches(tuple(uri.split(".")), tuple(topic.split(".")))


def component(uri: str, index: int) -> str | None:
    """The ``index``-th dot-separated component of ``uri`` (None when absent or empty)."""
    parts = uri.split(".")
    if index < len(parts) and parts[index]:
        return parts[index]
    return None
