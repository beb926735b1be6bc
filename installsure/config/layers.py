"""The layers of the configuration: defaults < TOML file < environment < options.

Each layer puts raw values (strings from the environment, TOML values from the file)
into one tree by dotted path and remembers where each came from, so a problem found
later names the file, the variable or the option to fix. Nothing is converted here:
``structure`` turns the tree into a ``Config``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import attrs
from attrs import Factory

from installsure.config.errors import ConfigProblem
from installsure.config.schema import Config
from installsure.config.values import parse_port

# The old Fastify system's variable names, kept so existing deployments keep working.
LEGACY_ENVIRONMENT: Mapping[str, tuple[str, ...]] = {
    "NODE_ENV": ("environment",),
    "REDIS_URL": ("redis", "url"),
    "JWT_SECRET": ("auth", "jwt_secret"),
    "API_SECRET": ("auth", "api_secret"),
    "ENABLE_REAL_TIME_SYNC": ("features", "real_time_sync"),
    "ENABLE_FILE_PROCESSING": ("features", "file_processing"),
    "ENABLE_EMAIL_NOTIFICATIONS": ("features", "email_notifications"),
}
ENV_PREFIX = "INSTALLSURE_"
# Variables with our prefix that belong to tools around the server, not to its config.
ENV_NOT_CONFIG = frozenset({"INSTALLSURE_TEST_POSTGRES_URL", "INSTALLSURE_CONFIG"})
# Sections whose unknown sub-tables are entries of one of their dict fields, so operators
# write ``[queues.email-send]`` rather than ``[queues.queues.email-send]``.
ENTRY_FIELDS: Mapping[tuple[str, ...], str] = {("queues",): "queues"}


@attrs.define
class Layers:
    """Raw values by dotted path, and where each came from (for error messages)."""

    # Start it from the defaults (``structure.defaults_as_data``) so a layer that sets one
    # key of a section (or of one queue) keeps every other default instead of replacing
    # the whole table.
    values: dict[str, Any]
    sources: dict[tuple[str, ...], str] = Factory(dict)
    problems: list[ConfigProblem] = Factory(list)

    def put(self, path: tuple[str, ...], value: object, source: str) -> None:
        node = self.values
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        self.sources[path] = source

    def merge(self, tree: Mapping[str, Any], source: str, prefix: tuple[str, ...] = ()) -> None:
        for key, value in tree.items():
            path = (*prefix, key)
            entry_field = ENTRY_FIELDS.get(prefix)
            if entry_field and isinstance(value, dict) and attrs_type_at(path) is None:
                path = (*prefix, entry_field, key)
            if isinstance(value, dict) and _is_section(path):
                self.merge(value, source, path)
            else:
                self.put(path, value, source)

    def source_of(self, path: tuple[str, ...]) -> str:
        for length in range(len(path), 0, -1):
            if (found := self.sources.get(path[:length])) is not None:
                return found
        return "default"


def attrs_type_at(path: tuple[str, ...]) -> Any:
    """The declared type at ``path`` inside Config, or None when there is no such key."""
    current: Any = Config
    for part in path:
        if attrs.has(current):
            fields = {f.name: f for f in attrs.fields(current)}
            if part not in fields:
                return None
            current = fields[part].type
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
        current = unwrap_optional(current)
    return current


def _is_section(path: tuple[str, ...]) -> bool:
    declared = attrs_type_at(path)
    return declared is not None and (attrs.has(declared) or get_origin(declared) is dict)


def unwrap_optional(declared: Any) -> Any:
    args = get_args(declared)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return declared


def read_file(path: Path, layers: Layers) -> None:
    source = f"file {path}"
    try:
        with path.open("rb") as stream:
            tree = tomllib.load(stream)
    except FileNotFoundError:
        layers.problems.append(ConfigProblem("--config", source, "the file does not exist"))
        return
    except OSError as exc:
        layers.problems.append(ConfigProblem("--config", source, f"cannot read it: {exc}"))
        return
    except tomllib.TOMLDecodeError as exc:
        layers.problems.append(ConfigProblem("--config", source, f"not valid TOML: {exc}"))
        return
    layers.merge(tree, source)


def _env_path(name: str) -> tuple[str, ...] | None:
    """Map ``INSTALLSURE_HTTP_MAX_BODY_SIZE`` to ``("http", "max_body_size")``.

    Keys contain underscores, so the split is found by matching declared names: the
    longest section name, then (inside dict sections such as queues) the longest entry.
    """
    rest = name[len(ENV_PREFIX):].lower()
    return _match_path(Config, rest, ())


def _match_path(declared: Any, rest: str, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
    if attrs.has(declared):
        names = sorted((f.name for f in attrs.fields(declared)), key=len, reverse=True)
        for name in names:
            if rest == name:
                return (name,)
            if rest.startswith(name + "_"):
                inner = unwrap_optional(attrs.fields_dict(declared)[name].type)
                if attrs.has(inner) or get_origin(inner) is dict:
                    tail = _match_path(inner, rest[len(name) + 1:], (*prefix, name))
                    if tail is not None:
                        return (name, *tail)
        entry_field = ENTRY_FIELDS.get(prefix)
        if entry_field is not None:
            inner = attrs.fields_dict(declared)[entry_field].type
            tail = _match_path(inner, rest, (*prefix, entry_field))
            if tail is not None:
                return (entry_field, *tail)
        return None
    if get_origin(declared) is dict:
        # Entries (queue names) are spelled with "-" in files and "_" in variables.
        entry_type = get_args(declared)[1]
        if not attrs.has(entry_type):
            return (rest,) if rest else None
        keys = sorted((f.name for f in attrs.fields(entry_type)), key=len, reverse=True)
        for key in keys:
            if rest.endswith("_" + key):
                entry = rest[: -len(key) - 1].replace("_", "-")
                return (entry, key) if entry else None
    return None


def read_environment(environ: Mapping[str, str], layers: Layers) -> None:
    for name, path in LEGACY_ENVIRONMENT.items():
        if name in environ:
            layers.put(path, environ[name], f"environment variable {name}")
    # The old PORT/HOST pair becomes one listen endpoint.
    if "PORT" in environ or "HOST" in environ:
        port = environ.get("PORT", "8000")
        host = environ.get("HOST", "127.0.0.1")
        names = " and ".join(n for n in ("PORT", "HOST") if n in environ)
        try:
            parse_port(port)
        except ValueError as exc:
            layers.problems.append(ConfigProblem("http.listen", f"environment variable {names}",
                                                 str(exc)))
        else:
            layers.put(("http", "listen"), [f"tcp:{port}:interface={host}"],
                       f"environment variable {names}")
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        env_path = _env_path(name)
        if env_path is None:
            layers.problems.append(ConfigProblem(
                name, f"environment variable {name}",
                "no such setting; variables are INSTALLSURE_<SECTION>_<KEY>, "
                "see etc/installsure.toml",
            ))
            continue
        layers.put(env_path, environ[name], f"environment variable {name}")


def read_options(options: Mapping[str, object], layers: Layers) -> None:
    for dotted, value in options.items():
        if value is None:
            continue
        flag = "--listen" if dotted == "http.listen" else "--" + dotted.replace(".", "-")
        flag = flag.replace("_", "-")
        layers.put(tuple(dotted.split(".")), value, f"option {flag}")
