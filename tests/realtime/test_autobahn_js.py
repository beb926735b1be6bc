"""autobahn|JS (Node) against the broker over a real socket, with each serializer.

The npm package is installed once into a cache directory; where Node or npm is missing
or the install fails, the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from tests.realtime.helpers import connect, make_token, wait_for

#: The last autobahn|JS release that runs on Node 20 (26.x needs Node 22).
AUTOBAHN_JS = "autobahn@22.11.1"
SCRIPT = Path(__file__).parent / "js" / "client.js"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "installsure-tests"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """A directory whose node_modules holds autobahn|JS (skips with the reason)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed: autobahn|JS cannot run here")
    directory = CACHE / AUTOBAHN_JS.replace("@", "-")
    if not (directory / "node_modules" / "autobahn").is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(directory),
             AUTOBAHN_JS], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.skip(f"npm install {AUTOBAHN_JS} failed: {done.stderr[-500:]}")
    return directory


class Lines(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.errors = b""
        self.buffer = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.append(json.loads(line))

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.ensureDeferred
async def test_autobahn_js_joins_subscribes_publishes(node: Any, node_modules: Path,
                                                      serializer: str) -> None:
    """An autobahn|JS client authenticates with a ticket, subscribes by prefix, receives
    the server's event with its topic, publishes with acknowledgement to a Python
    subscriber, and hears GOODBYE on shutdown."""
    service, port = node
    service.gatekeeper.access.members["p1"] = {"js": "editor", "py": "viewer"}
    python = await connect(port, make_token("py"))
    await python.subscribe(python.record, "installsure.presence.p1")
    lines = Lines()
    env = {**os.environ, "NODE_PATH": str(node_modules / "node_modules")}
    process = reactor.spawnProcess(  # type: ignore[attr-defined]
        lines, shutil.which("node"),
        ["node", str(SCRIPT), f"ws://127.0.0.1:{port}/ws", make_token("js"), serializer,
         "installsure.project.p1.", "installsure.presence.p1"], env=env)
    try:
        try:
            await wait_for(lambda: any("subscribed" in x or "error" in x
                                       for x in lines.lines), timeout=30)
        except AssertionError:
            raise AssertionError(f"no subscription: {lines.lines} {lines.errors!r}") from None
        assert not [x for x in lines.lines if "error" in x], (lines.lines, lines.errors)
        service.publish("installsure.project.p1.updated", {"name": "Tower"})
        await wait_for(lambda: any("event" in x for x in lines.lines), timeout=30)
        event = next(x for x in lines.lines if "event" in x)
        assert event == {"event": [{"name": "Tower"}], "topic": "installsure.project.p1.updated"}
        await wait_for(lambda: python.events, timeout=30)
        assert python.events[0][1] == ["js here"]
        await service.goodbye_all()
        await lines.ended
        closed = next(x for x in lines.lines if "closed" in x)
        assert closed["reason"] == "wamp.close.system_shutdown", (closed, lines.errors)
    finally:
        if not lines.ended.called:
            process.signalProcess("KILL")
            await lines.ended
