"""Who is calling: the value every authorization decision is made on."""

from __future__ import annotations

from typing import Literal

from attrs import frozen

from installsure.db.tables import GLOBAL_ROLES

__all__ = ["GLOBAL_ROLES", "Principal", "PrincipalKind"]

PrincipalKind = Literal["user", "service"]


@frozen
class Principal:
    """An authenticated caller.

    ``id`` is the user's id (the access token's ``sub``), or ``"operator"`` for the
    service principal that authenticates with ``API_SECRET``; it keys logs and rate
    limits. ``role`` is the global role (one of ``GLOBAL_ROLES``). ``session_id`` is the
    token's ``sid``: revoking that session refuses the principal everywhere.
    """

    id: str
    role: str
    kind: PrincipalKind = "user"
    session_id: str | None = None
    name: str | None = None

    @property
    def is_service(self) -> bool:
        return self.kind == "service"
