"""A publication as the broker routes it, and one event of it as subscribers get it.

A publication is serialized at most once per (subscription, disclosure, serializer):
all subscribers of one subscription share the same EVENT message, and each serializer's
bytes, framed once as a WebSocket message, are written to every one of them.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import define, field
from autobahn.wamp.message import Event

from installsure.realtime.subscriptions import iso_now


@define(eq=False)
class Publication:
    id: int
    topic: str
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    #: Publishing session (None: the server itself).
    publisher: int | None = None
    publisher_authid: str | None = None
    publisher_authrole: str | None = None
    exclude_me: bool = True
    exclude: frozenset[int] | None = None
    exclude_authid: frozenset[str] | None = None
    exclude_authrole: frozenset[str] | None = None
    eligible: frozenset[int] | None = None
    eligible_authid: frozenset[str] | None = None
    eligible_authrole: frozenset[str] | None = None
    retain: bool = False
    timestamp: float = 0.0
    #: The plain JSON protocol's frame, the same for every subscriber.
    _plain: bytes | None = field(default=None, init=False)

    @property
    def filtered(self) -> bool:
        """Whether any black- or white-list applies (else only publisher exclusion)."""
        return not (
            self.exclude is None and self.exclude_authid is None
            and self.exclude_authrole is None and self.eligible is None
            and self.eligible_authid is None and self.eligible_authrole is None
        )

    def admits(self, session_id: int, authid: str | None, authrole: str | None) -> bool:
        if self.exclude_me and session_id == self.publisher:
            return False
        if not self.filtered:
            return True
        if self.exclude is not None and session_id in self.exclude:
            return False
        if self.exclude_authid is not None and authid in self.exclude_authid:
            return False
        if self.exclude_authrole is not None and authrole in self.exclude_authrole:
            return False
        if self.eligible is not None and session_id not in self.eligible:
            return False
        if self.eligible_authid is not None and authid not in self.eligible_authid:
            return False
        return self.eligible_authrole is None or authrole in self.eligible_authrole

    def payload(self) -> Any:
        """The event's payload for the plain protocol: the single positional argument,
        else the keyword arguments, else both."""
        if self.args and len(self.args) == 1 and not self.kwargs:
            return self.args[0]
        if not self.args:
            return self.kwargs or {}
        return {"args": self.args, "kwargs": self.kwargs or {}}

    def plain_frame(self) -> bytes:
        if self._plain is None:
            self._plain = json.dumps(
                {"type": "event", "topic": self.topic, "payload": self.payload(),
                 "timestamp": iso_now(self.timestamp)},
                separators=(",", ":"), default=str,
            ).encode("utf-8")
        return self._plain

    def to_wire(self) -> dict[str, Any]:
        """What travels on the backplane (JSON)."""
        data: dict[str, Any] = {"i": self.id, "t": self.topic, "ts": self.timestamp}
        for name in ("args", "kwargs", "publisher", "publisher_authid", "publisher_authrole"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if not self.exclude_me:
            data["exclude_me"] = False
        for name in ("exclude", "exclude_authid", "exclude_authrole",
                     "eligible", "eligible_authid", "eligible_authrole"):
            value = getattr(self, name)
            if value is not None:
                data[name] = sorted(value)
        if self.retain:
            data["retain"] = True
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Publication:
        lists = {}
        for name in ("exclude", "exclude_authid", "exclude_authrole",
                     "eligible", "eligible_authid", "eligible_authrole"):
            if name in data:
                lists[name] = frozenset(data[name])
        return cls(
            id=int(data["i"]), topic=str(data["t"]), args=data.get("args"),
            kwargs=data.get("kwargs"), publisher=data.get("publisher"),
            publisher_authid=data.get("publisher_authid"),
            publisher_authrole=data.get("publisher_authrole"),
            exclude_me=data.get("exclude_me", True), retain=bool(data.get("retain")),
            timestamp=float(data.get("ts", 0.0)), **lists,
        )


class OutgoingEvent:
    """One EVENT message and its encodings, shared by the subscribers it goes to."""

    __slots__ = ("frames", "message", "publication")

    def __init__(self, message: Event, publication: Publication) -> None:
        self.message = message
        self.publication = publication
        #: serializer id -> prepared WebSocket message (autobahn's PreparedMessage)
        self.frames: dict[str, Any] = {}


def event_for(
    subscription_id: int, match: str, publication: Publication, *, disclose: bool,
    retained: bool = False,
) -> OutgoingEvent:
    message = Event(
        subscription_id, publication.id, args=publication.args, kwargs=publication.kwargs,
        publisher=publication.publisher if disclose else None,
        publisher_authid=publication.publisher_authid if disclose else None,
        publisher_authrole=publication.publisher_authrole if disclose else None,
        topic=publication.topic if match != "exact" else None,
        retained=True if retained else None,
    )
    return OutgoingEvent(message, publication)
