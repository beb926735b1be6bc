"""The Redis package's modules import one way: the client service uses its parts, and
no part reaches back into the client service."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import installsure.redis

PACKAGE = Path(installsure.redis.__file__).parent
PARTS = sorted(
    p.name for p in PACKAGE.glob("*.py") if p.name not in ("client.py", "__init__.py")
)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, also inside ``if TYPE_CHECKING:`` blocks."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", PARTS)
def test_no_part_of_the_redis_package_imports_the_client_service(name: str) -> None:
    """pub/sub, blocking connections, scripts and the rest get what they need passed in;
    none imports installsure.redis.client, not even for type checking."""
    assert "installsure.redis.client" not in imported_modules(PACKAGE / name)
    assert not re.search(r"\bRedisService\b", (PACKAGE / name).read_text("utf-8"))


def test_the_subscriber_imports_without_the_client_service() -> None:
    """Importing the pub/sub module in a fresh interpreter loads no client service."""
    code = (
        "import sys, installsure.redis.pubsub; "
        "print('installsure.redis.client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
