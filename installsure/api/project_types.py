"""What the project routes take and give, as attrs classes (camelCase on the wire).

The validators are the rules of the contract, and the OpenAPI document shows them as
JSON Schema keywords; rules across fields (an end date before the start date) are
checked in ``__validate_fields__`` so that they are reported with every other bad
field of the same request.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Literal, cast

from attrs import field, frozen, validators

from installsure.db.tables import PROJECT_ROLES, PROJECT_STATUSES
from installsure.http.validation import FieldValueError

ProjectStatus = Literal["planning", "active", "on_hold", "completed", "cancelled"]
ProjectRole = Literal["owner", "editor", "viewer"]
ProjectSort = Literal["name", "-name", "createdAt", "-createdAt", "updatedAt", "-updatedAt"]

assert set(PROJECT_STATUSES) == set(ProjectStatus.__args__)  # type: ignore[attr-defined]  # noqa: S101
assert set(PROJECT_ROLES) == set(ProjectRole.__args__)  # type: ignore[attr-defined]  # noqa: S101

MAX_NAME = 255
MAX_DESCRIPTION = 5000
MAX_SHORT_TEXT = 255
MAX_SEARCH = 200
#: Numeric(14, 2): twelve digits before the point.
MAX_BUDGET = 999_999_999_999.99
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000


class _Text:
    """Text the database can store: no NUL character (PostgreSQL refuses one), and
    with ``visible`` at least one character that is not white space."""

    def __init__(self, *, visible: bool) -> None:
        self.visible = visible
        body = r"[^\u0000]*"
        self.json_schema = {
            "pattern": rf"^{body}[^\u0000\s]{body}$" if visible else rf"^{body}$"
        }

    def __call__(self, _instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, str):
            return
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        if self.visible and not value.strip():
            raise ValueError("must not be blank")


class _Cents:
    """An amount of money with at most two decimals, as the client wrote it (the
    shortest text of the float, which is what a client's ``12.34`` parses back to)."""

    json_schema: Mapping[str, Any] = {}

    def __call__(self, _instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        exponent = Decimal(repr(float(value))).as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise ValueError("must have at most two decimals")


def _user_id_rules() -> list[Any]:
    return [validators.min_len(1), validators.max_len(64), _Text(visible=True)]


def _name_rules() -> list[Any]:
    return [validators.min_len(1), validators.max_len(MAX_NAME), _Text(visible=True)]


def _optional_text(limit: int) -> Any:
    return _or_none([validators.max_len(limit), _Text(visible=False)])


_PROGRESS: list[Any] = [validators.ge(0), validators.le(100)]
_BUDGET: list[Any] = [validators.ge(0), validators.le(MAX_BUDGET), _Cents()]


def _or_none(rules: Any) -> Any:
    """``rules``, letting None through (attrs' optional, typed loosely for mypy)."""
    return validators.optional(rules)


def _dates_in_order(values: Mapping[str, Any]) -> Iterator[FieldValueError]:
    start, end = values.get("start_date"), values.get("end_date")
    if isinstance(start, dt.date) and isinstance(end, dt.date) and end < start:
        yield FieldValueError("endDate", "must not be before startDate")


@frozen
class ProjectFields:
    """A whole project as the client sets it: the body of POST (create) and PUT
    (replace; a field left out takes its default)."""

    name: str = field(validator=_name_rules())
    description: str | None = field(default=None, validator=_optional_text(MAX_DESCRIPTION))
    status: ProjectStatus = "planning"
    progress: int = field(default=0, validator=_PROGRESS)
    budget: float | None = field(default=None, validator=_or_none(_BUDGET))
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    contractor: str | None = field(default=None, validator=_optional_text(MAX_SHORT_TEXT))
    location: str | None = field(default=None, validator=_optional_text(MAX_SHORT_TEXT))

    @staticmethod
    def __validate_fields__(values: Mapping[str, Any]) -> Iterator[FieldValueError]:
        return _dates_in_order(values)


@frozen
class ProjectPatch:
    """Some fields of a project: the body of PATCH. Fields left out keep their value;
    ``null`` clears the optional ones (name, status and progress cannot be null)."""

    # Left out: None, which a client cannot send (null is refused by the type).
    name: str = field(default=cast(str, None), validator=_or_none(_name_rules()))
    description: str | None = field(default=None, validator=_optional_text(MAX_DESCRIPTION))
    status: ProjectStatus = cast(ProjectStatus, None)
    progress: int = field(default=cast(int, None), validator=_or_none(_PROGRESS))
    budget: float | None = field(default=None, validator=_or_none(_BUDGET))
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    contractor: str | None = field(default=None, validator=_optional_text(MAX_SHORT_TEXT))
    location: str | None = field(default=None, validator=_optional_text(MAX_SHORT_TEXT))

    @staticmethod
    def __validate_fields__(values: Mapping[str, Any]) -> Iterator[FieldValueError]:
        return _dates_in_order(values)


@frozen
class ProjectsQuery:
    """``GET /api/projects``: a page of the projects the caller may see."""

    page: int = field(default=1, validator=[validators.ge(1), validators.le(MAX_PAGE)])
    per_page: int = field(default=20, validator=[validators.ge(1),
                                                 validators.le(MAX_PER_PAGE)])
    status: ProjectStatus | None = None
    #: Case-insensitive search in name, description, contractor and location.
    q: str | None = field(default=None, validator=_optional_text(MAX_SEARCH))
    sort: ProjectSort = "-createdAt"


@frozen
class PageQuery:
    page: int = field(default=1, validator=[validators.ge(1), validators.le(MAX_PAGE)])
    per_page: int = field(default=20, validator=[validators.ge(1),
                                                 validators.le(MAX_PER_PAGE)])


@frozen
class Project:
    """A project. ``budget`` has two decimals; ``fileCount`` counts its files."""

    id: str
    name: str
    description: str | None
    status: ProjectStatus
    progress: int
    budget: float | None
    start_date: dt.date | None
    end_date: dt.date | None
    contractor: str | None
    location: str | None
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    file_count: int


@frozen
class DeletedProject:
    id: str


@frozen
class NewMember:
    """``POST /api/projects/{id}/members``: an active user and the role to give."""

    user_id: str = field(validator=_user_id_rules())
    role: ProjectRole


@frozen
class MemberRole:
    """``PATCH /api/projects/{id}/members/{userId}``: the member's new role."""

    role: ProjectRole


@frozen
class Member:
    """A member of a project, with the user's name and e-mail."""

    user_id: str
    name: str
    email: str
    role: ProjectRole
    is_active: bool
    added_at: dt.datetime
    added_by: str | None


@frozen
class RemovedMember:
    project_id: str
    user_id: str
    removed: bool


@frozen
class Actor:
    """Who acted: a user (``id`` its id), or the service principal (``id`` null)."""

    id: str | None
    name: str | None


@frozen
class Target:
    type: str
    id: str


@frozen
class ActivityEntry:
    """One change of a project: ``changes`` maps each changed field (camelCase) to
    ``[before, after]``."""

    id: str
    at: dt.datetime
    actor: Actor
    action: str
    target: Target
    changes: dict[str, Any] | None
