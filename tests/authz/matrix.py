"""The authorization matrix: what each kind of caller gets from each route.

Every route the server serves must have an :class:`Entry` in one of the tables of
``tests/authz/tables/`` (one module per resource module, each with a list ``ENTRIES``;
modules are found by themselves, so a new table is one new file). An entry names the
route as declared, how to call it, and the expected status for each caller
(:data:`CALLERS`) in each situation (:data:`SITUATIONS`):

``own``
    the route is about a project the caller owns;
``other``
    a project of someone else, of which the caller is not a member;
``none``
    a project id that does not exist;
``-``
    the route is not about a project (a list, health, queues).

The anonymous caller and the service principal own nothing, so they have no ``own``
column. ``tests/authz/test_matrix.py`` calls every route as every caller in every
situation against the real site (real database and Redis) and reports every status
that differs from its table, and every route without an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from sqlalchemy import Connection

#: Who calls: no credentials, each global role, and the service principal (API_SECRET).
CALLERS = ("anonymous", "viewer", "member", "manager", "admin", "operator")
USERS = ("viewer", "member", "manager", "admin")
SITUATIONS = ("own", "other", "none", "-")


@attrs.frozen
class Situation:
    """What one request is about: a project (and its parts) in one of the situations.

    For ``own`` and ``other`` the project exists with its owner and an ``editor`` (the
    member the member routes act on); ``outsider`` is an active user in no project (the
    one POST /members adds). For ``none``, every id is a fresh UUID.
    """

    name: str
    project_id: str
    editor_id: str
    outsider_id: str
    #: What an entry's ``prepare`` added (file ids, ...), by name.
    extras: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Entry:
    """One route of the matrix.

    ``expect`` maps each situation the route has (``own``/``other``/``none``, or ``-``)
    to each caller's status; see :func:`statuses` and :func:`project_statuses`.
    ``params`` gives the path parameters, ``body`` the JSON body (valid, so that the
    status shows the authorization decision, not validation), ``prepare`` adds rows a
    situation needs (called in a transaction, before the request; its result lands in
    ``Situation.extras``).
    """

    method: str
    path: str
    expect: Mapping[str, Mapping[str, int]]
    params: Callable[[Situation], Mapping[str, str]] = lambda _s: {}
    body: Callable[[Situation], Any] | None = None
    prepare: Callable[[Connection, Situation], Mapping[str, Any]] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def statuses(everyone: int | None = None, **by_caller: int) -> dict[str, int]:
    """Each caller's status: ``everyone`` for those not named (``anonymous`` defaults
    to 401 unless given)."""
    out = {caller: everyone for caller in CALLERS
           if everyone is not None and caller != "anonymous"}
    out.update(by_caller)
    missing = [c for c in CALLERS if c not in out]
    if missing and set(missing) - {"anonymous"}:
        raise ValueError(f"no status for {missing}")
    out.setdefault("anonymous", 401)
    return {caller: int(status) for caller, status in out.items() if status is not None}


def by_role(*, viewer: int, member: int, manager: int, admin: int) -> dict[str, int]:
    """The four global roles' statuses, named (for :func:`project_statuses`)."""
    return {"viewer": viewer, "member": member, "manager": manager, "admin": admin}


def public(status: int = 200) -> dict[str, dict[str, int]]:
    """A route without authentication: the same for every caller."""
    return {"-": statuses(status, anonymous=status)}


def project_statuses(
    *, own: Mapping[str, int], other: Mapping[str, int], none: int = 404,
) -> dict[str, dict[str, int]]:
    """A route about one project. The operator is an admin without a user row: it sees
    other people's projects as an admin does (its ``other`` status is the admin's
    unless given). Nobody may tell a missing project from a hidden one: ``none`` is the
    same for every user."""
    other_full = dict(other)
    other_full.setdefault("operator", other_full["admin"])
    return {
        # No anonymous or operator column: they own nothing.
        "own": {user: int(own[user]) for user in USERS},
        "other": statuses(**other_full),
        "none": statuses(none),
    }
