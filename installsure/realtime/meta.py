"""The WAMP meta procedures the router answers itself (session and subscription meta API).

They describe this process's broker. Each takes the broker and the call's positional
and keyword arguments and returns the result, or raises :class:`MetaError` with the
WAMP error URI to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from installsure.realtime.broker import Broker
from installsure.realtime.uris import EXACT, MATCH_POLICIES, PREFIX, WILDCARD


class MetaError(Exception):
    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri
        self.message = message


def _arg(args: list[Any], index: int, name: str, kind: type) -> Any:
    if len(args) <= index or not isinstance(args[index], kind) or isinstance(args[index], bool):
        raise MetaError("wamp.error.invalid_argument",
                        f"argument {index + 1} ({name}) must be a {kind.__name__}")
    return args[index]


def _roles_filter(args: list[Any]) -> frozenset[str] | None:
    if not args or args[0] is None:
        return None
    roles = args[0]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise MetaError("wamp.error.invalid_argument",
                        "argument 1 (filter_authroles) must be a list of role names")
    return frozenset(roles)


def session_count(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    roles = _roles_filter(args)
    return sum(1 for s in broker.sessions.values() if roles is None or s.authrole in roles)


def session_list(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    roles = _roles_filter(args)
    return [sid for sid, s in broker.sessions.items() if roles is None or s.authrole in roles]


def session_get(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    session_id = _arg(args, 0, "session", int)
    peer = broker.sessions.get(session_id)
    if peer is None:
        raise MetaError("wamp.error.no_such_session", f"no session {session_id} here")
    return peer.details()


def subscription_list(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    listed: dict[str, list[int]] = {EXACT: [], PREFIX: [], WILDCARD: []}
    for subscription in broker.subscriptions.all():
        listed[subscription.match].append(subscription.id)
    return listed


def subscription_lookup(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    topic = _arg(args, 0, "topic", str)
    options = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    match = options.get("match", EXACT)
    if match not in MATCH_POLICIES:
        raise MetaError("wamp.error.invalid_argument",
                        f"match must be one of {', '.join(MATCH_POLICIES)}")
    found = broker.subscriptions.lookup(topic, match)
    return found.id if found is not None else None


def subscription_match(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    topic = _arg(args, 0, "topic", str)
    found = [s.id for s in broker.subscriptions.matching(topic)]
    return found or None


def _subscription(broker: Broker, args: list[Any]) -> Any:
    subscription_id = _arg(args, 0, "subscription", int)
    found = broker.subscriptions.get(subscription_id)
    if found is None:
        raise MetaError("wamp.error.no_such_subscription",
                        f"no subscription {subscription_id} here")
    return found


def subscription_get(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return _subscription(broker, args).details()


def subscription_list_subscribers(broker: Broker, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return list(_subscription(broker, args).subscribers)


def subscription_count_subscribers(
    broker: Broker, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    return len(_subscription(broker, args).subscribers)


MetaProcedure = Callable[[Broker, list[Any], dict[str, Any]], Any]

META_PROCEDURES: dict[str, MetaProcedure] = {
    "wamp.session.count": session_count,
    "wamp.session.list": session_list,
    "wamp.session.get": session_get,
    "wamp.subscription.list": subscription_list,
    "wamp.subscription.lookup": subscription_lookup,
    "wamp.subscription.match": subscription_match,
    "wamp.subscription.get": subscription_get,
    "wamp.subscription.list_subscribers": subscription_list_subscribers,
    "wamp.subscription.count_subscribers": subscription_count_subscribers,
}
