"""The served OpenAPI document checked against the served API by schemathesis.

The real server (``twistd -n installsure``, as operators start it) runs as a child
process on its own port, with a private redis-server and SQLite in a temporary
directory. schemathesis reads ``/openapi.json`` from it and runs every phase (examples,
coverage of boundary values, fuzzing, stateful sequences) for every operation, valid
and invalid requests alike, with all of its checks: no 5xx, only documented statuses,
content types, headers and bodies, valid data accepted, invalid data refused,
authentication not ignored, 405 for other methods.

schemathesis runs as its command line, a child process too: its pytest integration
loads a schema from a fixture through a pytest internal that pytest 9.2 removed, and
its requests block, so they could not share this process with the reactor serving them.
Bounded: a few examples per operation keep each run well under 20 s. One run sends
the operator token; the other signs in as an admin user through ``/api/auth/login``
(schemathesis's dynamic authentication, which signs in again should a generated logout
end the session) and sends that access token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess
from tests.fixtures.redis import RedisServerProcess

pytestmark = pytest.mark.e2e

SECRET = "schemathesis-operator-secret"
ADMIN_EMAIL = "schemathesis-admin@example.com"
ADMIN_PASSWORD = "lilac-glacier-proof-93"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

#: Every check and both generation modes are schemathesis's defaults; this bounds the
#: run, fixes the seed (a failure replays) and offers the server's queue names for the
#: ``{queue}`` path parameter most of the time, so the handlers behind the 404 run too.
CONFIG = """
seed = 8

[generation]
max-examples = 8
database = "none"

[checks]
enabled = true

[dictionaries.queues]
values = ["file-upload", "file-processing", "email-send", "notification-push"]

[parameters]
"path.queue" = { dictionary = "queues", probability = 0.8 }

# A schema cannot say "not a common password" or "not containing the e-mail's name":
# bodies that carry a new password may get 400 for well-formed data (documented in each
# operation's description), so 400 is accepted there as well.
[[operations]]
include-name = "POST /api/auth/register"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-name = "POST /api/users"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-name = "POST /api/auth/change-password"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "409", "429", "5xx"]

# Project bodies have rules JSON Schema cannot say: endDate not before startDate, and a
# budget of at most two decimals (multipleOf 0.01 misjudges floats such as 0.57). A
# schema-valid body that breaks one is rightly refused with 400; an If-Match that names
# another version than the project's (any generated one) with 412.
[[operations]]
include-operation-id = ["create_project_post", "replace_project_put", "change_project_patch"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "412", "429", "5xx",
]

# A member's userId must name an active account: one that names none is a 400 naming
# the field (the body is well-formed but says something untrue).
[[operations]]
include-name = "POST /api/projects/{id}/members"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "412", "429", "5xx",
]

[[operations]]
include-operation-id = ["delete_project_delete"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx",
]

# A Range header the schema allows may start past the end of the file it asks of: 416
# is the answer RFC 9110 gives (a schema cannot know the file's size).
[[operations]]
include-name = "GET /api/files/{id}/download"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "416", "429", "5xx",
]

# An upload the schema allows may still be refused for what a schema cannot say: its
# bytes are not what its file name's extension promises (415), it is too large (413), or
# its project does not exist (404, checked after the body's end when no file came).
[[operations]]
include-path = "/api/files/upload"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "413", "415", "429",
]
"""

#: Signing in as the admin created before the run, for every request that needs it.
USER_AUTH = f"""
[auth.dynamic.openapi.bearerAuth]
path = "/api/auth/login"
payload = {{ email = "{ADMIN_EMAIL}", password = "{ADMIN_PASSWORD}" }}
extract_selector = "/data/accessToken"
"""


def _wait_ready(server: ServerProcess, deadline: float = 60.0) -> None:
    """Poll /readyz until 200, failing with the server's output if it never comes."""
    stop = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < stop:
        if server.process is not None and server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n"
                        f"{server.output()}")
        try:
            # A fixed http:// URL of our own child process.
            with urllib.request.urlopen(server.base + "/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
                last = response.status
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.1)
    pytest.fail(f"/readyz never answered 200 (last: {last!r}):\n{server.output()}")


def _register_admin(server: ServerProcess) -> None:
    """The first account of the empty system, which makes it the admin."""
    body = json.dumps({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                       "name": "Schemathesis"}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own child's http:// URL
        server.base + "/api/auth/register", data=body, method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer = json.loads(response.read())
    assert answer["data"]["user"]["role"] == "admin", answer


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server, its Redis and SQLite private to this module."""
    redis = RedisServerProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    server = ServerProcess(
        tmp_path_factory.mktemp("server"), "--environment", "test", "--redis-url", redis.url,
        env={
            "API_SECRET": SECRET,
            # Thousands of generated requests from one address and one operator token:
            # the limits stay on (their headers are checked) but are not reached.
            "INSTALLSURE_HTTP_RATE_LIMIT_DEFAULT": "1000000/60",
            "INSTALLSURE_HTTP_RATE_LIMIT_FAILED_AUTH": "1000000/60",
            "INSTALLSURE_HTTP_RATE_LIMITS_LOGIN": "1000000/60",
            "INSTALLSURE_HTTP_RATE_LIMITS_LOGIN_ACCOUNT": "1000000/60",
            "INSTALLSURE_AUTH_LOGIN_FREE_FAILURES_PER_ADDRESS": "1000000",
            "INSTALLSURE_AUTH_LOGIN_FREE_FAILURES_PER_ACCOUNT": "1000000",
            # Hundreds of generated registrations: argon2 at its floor keeps them quick.
            "INSTALLSURE_AUTH_ARGON2_TIME_COST": "1",
            "INSTALLSURE_AUTH_ARGON2_MEMORY_KIB": "8",
            "INSTALLSURE_AUTH_ARGON2_PARALLELISM": "1",
        },
    )
    server.start()
    try:
        _wait_ready(server)
        _register_admin(server)
        yield server
    finally:
        server.terminate()
        if server.process is not None:
            try:
                server.process.wait(30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(10)
        redis.kill()


def _run(live_server: ServerProcess, tmp_path: Path, config_text: str,
         *extra: str) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(config_text)
    result = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run",
         live_server.base + "/openapi.json", "--checks", "all", "--mode", "all",
         "--workers", "1", *extra, "--warnings", "off"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, (
        f"schemathesis found problems (exit {result.returncode}):\n{result.stdout}\n"
        f"{result.stderr}\n--- server output ---\n{live_server.output()[-5000:]}"
    )
    assert " passed" in result.stdout, result.stdout


def test_api_answers_as_its_openapi_document_says(
    live_server: ServerProcess, tmp_path: Path,
) -> None:
    """Every operation of the served document passes every schemathesis check against
    the live server, with and without the operator token."""
    _run(live_server, tmp_path, CONFIG, "--header", f"Authorization: Bearer {SECRET}")


def test_api_answers_as_documented_to_a_signed_in_admin(
    live_server: ServerProcess, tmp_path: Path,
) -> None:
    """The same checks with an admin user's access token from /api/auth/login instead of
    the operator token: user tokens go through verification, revocation and roles."""
    before = len(live_server.output())
    _run(live_server, tmp_path, CONFIG + USER_AUTH)
    during = live_server.output()[before:]
    admin_id = re.search(r"userId=(\S+) actorId=\S+ role=admin", live_server.output())
    assert admin_id is not None
    # Requests of the run were made as that user (the access log names the principal).
    assert f"user={admin_id.group(1)}" in during
    assert "POST /api/auth/login 200" in during
