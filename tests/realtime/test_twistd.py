"""``twistd -n installsure`` as a child process: /ws is served on the HTTP port, and
SIGTERM says GOODBYE ``wamp.close.system_shutdown`` and closes with 1001 before exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted

from tests.e2e.server import ServerProcess
from tests.realtime.helpers import connect, wait_for


@pytest_twisted.ensureDeferred
async def test_sigterm_says_goodbye_to_sessions(tmp_path: Path) -> None:
    """An anonymous session (allowed by config, with a rule letting it subscribe) on the
    real process gets GOODBYE system_shutdown and close 1001 on SIGTERM; the process
    exits 0."""
    server = ServerProcess(tmp_path, "--environment", "test", env={
        "INSTALLSURE_REALTIME_ALLOW_ANONYMOUS": "true",
        "INSTALLSURE_REALTIME_RULES": "anonymous subscribe installsure.system. prefix allow",
    })
    server.start()
    try:
        await server.wait_until("/livez")
        client = await connect(server.port, None)
        assert client.details_role() == "anonymous"
        await client.subscribe(client.record, "installsure.system.health")
        codes: list[Any] = []
        protocol = client._transport
        original = protocol.onClose

        def on_close(was_clean: bool, code: Any, reason: Any) -> None:
            # The close code the server sent (a loaded machine may make the TCP close
            # itself look unclean to the client, which then reports 1006).
            codes.append(protocol.remoteCloseCode)
            original(was_clean, code, reason)

        protocol.onClose = on_close
        server.terminate()
        await client.left
        await wait_for(lambda: codes, timeout=20)
        code = await server.wait_exit()
    finally:
        server.kill()
    assert client.goodbye.reason == "wamp.close.system_shutdown", server.output()
    assert codes == [1001], server.output()
    assert code == 0, server.output()


@pytest_twisted.ensureDeferred
async def test_two_processes_share_events_and_retained_ones(
    tmp_path: Path, redis_server: Any
) -> None:
    """Two twistd processes on one (private) Redis: an event published by a client of one
    reaches a subscriber of the other, once; a retained one is served by the other to
    a subscriber that arrives later."""
    from autobahn.wamp.types import PublishOptions, SubscribeOptions

    from tests.realtime.helpers import sleep

    env = {
        "INSTALLSURE_REALTIME_ALLOW_ANONYMOUS": "true",
        "INSTALLSURE_REALTIME_RULES": "anonymous subscribe|publish test. prefix allow",
    }
    servers = [ServerProcess(tmp_path / name, "--environment", "test", "--redis-url",
                             redis_server.url, env=env) for name in ("a", "b")]
    for server in servers:
        server.start()
    try:
        for server in servers:
            await server.wait_until("/readyz")
        on_a = await connect(servers[0].port, None)
        on_b = await connect(servers[1].port, None)
        await on_b.subscribe(on_b.record, "test.crossing")
        await sleep(0.5)  # the subscription is local; the backplane is subscribed already
        await on_a.publish("test.crossing", "hello", options=PublishOptions(acknowledge=True))
        await on_a.publish("test.state", {"percent": 80},
                           options=PublishOptions(acknowledge=True, retain=True))
        await wait_for(lambda: on_b.events, timeout=20)
        late = await connect(servers[1].port, None)
        await late.subscribe(late.record, "test.state",
                             options=SubscribeOptions(get_retained=True))
        await wait_for(lambda: late.events, timeout=20)
        await sleep(0.3)
        assert [e[1] for e in on_b.events] == [["hello"]]
        assert late.events[0][1] == [{"percent": 80}]
        for client in (on_a, on_b, late):
            client.leave()
    finally:
        for server in servers:
            server.kill()


PASSWORD = "amber-tractor-58"


@pytest_twisted.ensureDeferred
async def test_real_accounts_projects_and_logout_across_two_processes(
    tmp_path: Path, redis_server: Any
) -> None:
    """Two twistd processes sharing Redis and a database, with real accounts: a member
    signs in, subscribes on node B with its access token (the real verifier and the real
    membership check), sees the admin's change made on node A (the domain's event
    publisher), is closed on B within 1 s when it logs out on A, and, signed in again on
    the plain protocol, has its subscription revoked when the admin removes it from the
    project."""
    import time

    import treq

    env = {
        "INSTALLSURE_AUTH_JWT_SECRET": "e2e-shared-signing-secret-0123456789-abcdefghij",
        "INSTALLSURE_AUTH_ARGON2_TIME_COST": "1",
        "INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": "1024",
        "INSTALLSURE_AUTH_ARGON2_PARALLELISM": "1",
    }
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    nodes = [ServerProcess(tmp_path / name, "--environment", "test", "--redis-url",
                           redis_server.url, "--database-url", database, env=env)
             for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_until("/readyz", timeout=60)
        a, b = nodes

        async def call(method: str, url: str, token: str | None = None, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await treq.request(method, url, headers=headers, **kw)
            body = await response.json()
            assert response.code < 300, (response.code, body)
            return body["data"]

        admin = await call("POST", a.base + "/api/auth/register", json={
            "email": "nina@example.com", "password": PASSWORD, "name": "Nina"})
        member = await call("POST", a.base + "/api/auth/register", json={
            "email": "bob@example.com", "password": PASSWORD, "name": "Bob"})
        boss, bob_id = admin["accessToken"], member["user"]["id"]
        project = await call("POST", a.base + "/api/projects", boss, json={"name": "Tower"})
        await call("POST", a.base + f"/api/projects/{project['id']}/members", boss,
                   json={"userId": bob_id, "role": "viewer"})
        topic = f"installsure.project.{project['id']}.updated"

        bob = await connect(b.port, member["accessToken"])
        assert bob.details_role() == "member"
        await bob.subscribe(bob.record, topic)
        await call("PATCH", a.base + f"/api/projects/{project['id']}", boss,
                   json={"description": "forty floors"})
        await wait_for(lambda: bob.events, timeout=20)
        assert bob.events[0][1][0]["type"] == "project.updated"

        await call("POST", a.base + "/api/auth/logout", member["accessToken"])
        started = time.monotonic()
        await bob.left
        assert time.monotonic() - started < 1.0
        assert bob.goodbye.reason == "installsure.close.revoked"

        again = await call("POST", b.base + "/api/auth/login", json={
            "email": "bob@example.com", "password": PASSWORD})
        from tests.realtime.helpers import connect_plain

        plain = await connect_plain(b.port)
        plain.send({"type": "auth", "token": again["accessToken"]})
        await plain.next("welcome")
        plain.send({"type": "subscribe", "topic": topic})
        await plain.next("subscribed")
        await call("DELETE", a.base + f"/api/projects/{project['id']}/members/{bob_id}", boss)
        revoked = await plain.next("unsubscribed", timeout=20)
        assert revoked["reason"] == "wamp.subscription.revoked"
        plain.transport.loseConnection()
    finally:
        for node in nodes:
            node.kill()
