"""Importing the HTTP settings and declarations must not install a reactor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _printed_by(code: str) -> list[str]:
    """What ``code`` prints, run in a fresh interpreter (nothing imported yet)."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(ROOT)}, timeout=60,
    )
    return result.stdout.split()


def test_settings_routing_and_health_import_without_klein_or_reactor() -> None:
    """config.py reads installsure.http.settings during twistd's option parsing, before
    --reactor is honoured; neither it nor route declarations may pull in Klein."""
    code = (
        "import sys\n"
        "import installsure.http.settings, installsure.http.routing\n"
        "import installsure.http.validation, installsure.api.health\n"
        "from installsure.http import HttpSettings, Router, ApiError\n"
        "print('klein' in sys.modules, 'twisted.internet.reactor' in sys.modules)\n"
    )
    assert _printed_by(code) == ["False", "False"]


def test_the_fast_wire_imports_nothing_of_the_application() -> None:
    """installsure.http._wire (every override of twisted.web internals) gets what it
    needs of the application from the site, as WireHooks: importing it imports neither
    the application module nor Klein."""
    code = (
        "import sys\n"
        "import installsure.http._wire\n"
        "print('installsure.http.app' in sys.modules, 'klein' in sys.modules)\n"
    )
    assert _printed_by(code) == ["False", "False"]
