"""Package attributes imported on first use (PEP 562 ``__getattr__``).

``installsure.http`` must not import Klein (which installs a reactor) before twistd has
chosen one, and ``installsure.config`` must not import the settings modules that import
it back; both still offer their public names at the package level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``name`` from ``<package>.<where[name]>``
    on first use and keeps it in ``namespace`` (the package's ``globals()``), so later
    lookups are plain attribute reads."""

    def attribute(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return attribute
