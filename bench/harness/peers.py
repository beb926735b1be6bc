"""Other frameworks to compare against, installed on first use into a cache folder.

The cache is ``~/.cache/installsure-bench/`` (or ``$XDG_CACHE_HOME/installsure-bench``).
An entry is keyed by its requirements and the interpreter's version, made under a lock
(two runs installing at once must not corrupt it), and trusted only once its marker file
exists, so an interrupted install is redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness import BenchError

INSTALL_TIMEOUT = 900.0
#: Written last into a cache entry: the versions installed, shown beside the figures.
MARKER = "installsure-bench-versions.txt"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "installsure-bench"


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_install(argv: Sequence[str], cwd: Path, what: str) -> None:
    print(f"  $ {' '.join(argv)}")
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BenchError(f"cannot install {what}: {exc.filename} not found") from None
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"installing {what} took more than {INSTALL_TIMEOUT:.0f} s; is the package "
            "registry reachable?"
        ) from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise BenchError(f"installing {what} failed (exit {done.returncode}):\n{tail}")


def pip_venv(name: str, requirements: Sequence[str], report: Sequence[str]) -> tuple[Path, str]:
    """A venv with ``requirements``, made once; (its python, versions of ``report``)."""
    root = cache_root()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = root / f"{name}-py{pyver}-{cache_key(pyver, *requirements)}"
    marker = venv / MARKER
    python = venv / "bin" / "python"
    with cache_lock(root):
        if not marker.exists():
            print(f"installing the {name} peer into {venv} (once; cached)")
            # A half-made venv from an interrupted run is not trusted.
            shutil.rmtree(venv, ignore_errors=True)
            run_install([sys.executable, "-m", "venv", str(venv)], root, f"a venv for {name}")
            run_install(
                [str(python), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *requirements],
                root, " and ".join(requirements),
            )
            probe = subprocess.run(
                [str(python), "-c",
                 "import importlib.metadata as m, sys; print(', '.join(f'{p} ' + m.version(p) "
                 "for p in sys.argv[1:]))", *report],
                capture_output=True, text=True, timeout=60, check=False,
            )
            if probe.returncode != 0:
                raise BenchError(f"the {name} venv in {venv} is broken:\n{probe.stderr}")
            marker.write_text(probe.stdout.strip())
    return python, marker.read_text().strip()


def npm_folder(
    name: str, requirements: Sequence[str], report: Sequence[str]
) -> tuple[Path, str]:
    """A folder with ``requirements`` in node_modules, made once; (it, versions).

    The versions are those of the ``report`` packages and of node.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise BenchError(
            f"node and npm are needed for the {name} peer (apt-get install nodejs npm)"
        )
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    root = cache_root()
    folder = root / f"{name}-node{node_version}-{cache_key(node_version, *requirements)}"
    marker = folder / MARKER
    with cache_lock(root):
        if not marker.exists():
            print(f"installing the {name} peer into {folder} (once; cached)")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "package.json").write_text(
                json.dumps({"name": f"installsure-bench-{name}", "private": True}) + "\n"
            )
            run_install(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                 *requirements],
                folder, name,
            )
            versions = [
                f"{pkg} {package_version(folder, pkg)}" for pkg in report
            ]
            marker.write_text(", ".join([*versions, f"node {node_version}"]))
    return folder, marker.read_text().strip()


def package_version(folder: Path, package: str) -> str:
    manifest = folder / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        raise BenchError(f"npm did not install {package} into {folder}") from None
