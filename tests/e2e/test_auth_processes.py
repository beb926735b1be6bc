"""Two ``twistd -n installsure`` processes sharing a private redis-server and one SQLite
database, as two API nodes of one deployment: a session signed in on the first and
logged out on the second is refused by the first within a second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.e2e.server import ServerProcess
from tests.fixtures.redis import RedisServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "amber-tractor-58"


@pytest_twisted.inlineCallbacks
def test_logout_on_one_node_is_refused_by_the_other_within_a_second(tmp_path: Path):
    """Node A serves the token (so it caches the session as live for a minute); the
    logout goes to node B; node A answers 401 for the token within 1 s."""
    redis = RedisServerProcess(tmp_path / "redis-dir")
    (tmp_path / "redis-dir").mkdir()
    redis.start()
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {
        "INSTALLSURE_AUTH_JWT_SECRET": "e2e-shared-signing-secret-0123456789-abcdefghij",
        "INSTALLSURE_AUTH_ARGON2_TIME_COST": "1",
        "INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": "1024",
        "INSTALLSURE_AUTH_ARGON2_PARALLELISM": "1",
        "INSTALLSURE_AUTH_REVOCATION_CACHE_TTL": "60",
    }
    nodes = [ServerProcess(tmp_path / name, "--environment", "test", "--redis-url", redis.url,
                           "--database-url", database, env=env) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            yield node.wait_until("/readyz", timeout=60)
        a, b = nodes
        registered = yield treq.post(a.base + "/api/auth/register", json={
            "email": "nina@example.com", "password": PASSWORD, "name": "Nina"})
        assert registered.code == 201, (yield registered.text())
        token = (yield registered.json())["data"]["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}
        for node in nodes:
            me = yield treq.get(node.base + "/api/auth/me", headers=auth)
            assert me.code == 200, (yield me.text())
            yield me.content()
        out = yield treq.post(b.base + "/api/auth/logout", headers=auth)
        assert out.code == 200, (yield out.text())
        started = time.monotonic()
        while True:
            me = yield treq.get(a.base + "/api/auth/me", headers=auth)
            yield me.content()
            if me.code == 401:
                break
            assert me.code == 200
            assert time.monotonic() - started < 1.0, "node A still accepts the token"
            yield deferLater(reactor, 0.02, lambda: None)
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            yield node.wait_exit()
        redis.kill()
