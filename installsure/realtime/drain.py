"""The realtime broker's part in a shutdown (see ``installsure.drain``).

Phase 3 (drain connections) says GOODBYE ``wamp.close.system_shutdown`` to every
session and closes its WebSocket with 1001; phase 4 waits for those closes until the
deadline. Sessions are counted in every phase line.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, succeed

from installsure.drain import DrainParticipant
from installsure.realtime.service import RealtimeService


class RealtimeDrain(DrainParticipant):
    """Winds the broker's sessions down; see the module docstring."""

    name = "realtime"

    def __init__(self, realtime: RealtimeService) -> None:
        self._realtime = realtime
        self._closing: Deferred[None] | None = None

    def counts(self) -> Mapping[str, int]:
        return {"sessions": len(self._realtime.broker.sessions)}

    def drain_connections(self) -> None:
        self._closing = self._realtime.goodbye_all()

    def finish(self, deadline: float) -> Deferred[Mapping[str, int]]:
        closing = self._closing if self._closing is not None else succeed(None)
        # goodbye_all's closes are bounded by the WebSocket close timeouts, well within
        # any grace; nothing is left to cut afterwards.
        return closing.addCallback(lambda _: {})
