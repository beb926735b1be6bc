"""First light: a real autobahn client joins, subscribes and receives."""

from __future__ import annotations

import pytest_twisted

from tests.realtime.helpers import connect, make_token, wait_for


@pytest_twisted.ensureDeferred
async def test_subscriber_receives_server_publication(node) -> None:
    """An admin joins with a ticket, subscribes, and gets the server's event."""
    service, port = node
    client = await connect(port, make_token("u1", "admin"))
    await client.subscribe(client.record, "installsure.queue.q.status")
    service.publish("installsure.queue.q.status", {"waiting": 1})
    await wait_for(lambda: client.events)
    assert client.events[0][1] == [{"waiting": 1}]
    client.leave()
