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
            codes.append(code)
            original(was_clean, code, reason)

        protocol.onClose = on_close
        server.terminate()
        await client.left
        await wait_for(lambda: codes, timeout=20)
        code = await server.wait_exit()
    finally:
        server.kill()
    assert client.goodbye.reason == "wamp.close.system_shutdown"
    assert codes == [1001]
    assert code == 0, server.output()
