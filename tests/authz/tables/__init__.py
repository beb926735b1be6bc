"""One table of expected statuses per resource module; see ``tests/authz/matrix.py``.

Every module in this package with an ``ENTRIES`` list is part of the matrix: adding a
resource module's table is adding a file here.
"""

from __future__ import annotations

import importlib
import pkgutil

from tests.authz.matrix import Entry


def all_entries() -> list[Entry]:
    entries: list[Entry] = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        entries.extend(getattr(loaded, "ENTRIES", ()))
    return entries
