"""What the project and member routes share: their dependencies, the database call
that answers 503 when the database is away, JSON conversions, ETags and If-Match.

ETags are strong and derived from the row's ``version`` column (incremented by every
change): ``"<projectId>.<version>"``. ``If-Match`` takes ``*`` or a list of such tags;
a weak tag (``W/"..."``) never matches under If-Match's strong comparison, and is
refused with a 400 that says so rather than answered with a puzzling 412.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from attrs import frozen
from sqlalchemy import Connection

from installsure.api.project_types import Project
from installsure.auth.membership import MembershipSignals
from installsure.auth.principal import Principal
from installsure.db.errors import DatabaseUnavailable
from installsure.db.projects import DeletedFile, ProjectRecord
from installsure.db.service import Database
from installsure.events import DomainEventPublisher, SafePublisher
from installsure.http.context import RequestContext
from installsure.http.errors import ApiError
from installsure.http.routing import HeaderDoc
from installsure.http.validation import camel

T = TypeVar("T")

#: Called after a project was deleted with the files that went with it, so that the
#: storage removes their bytes (the rows are gone already). Must not raise; may return
#: a Deferred, which is not waited for.
FilesDeletedHook = Callable[[str, Sequence[DeletedFile]], object]

TAGS = ("projects",)

ETAG_DOC = HeaderDoc(
    "ETag", "This version of the project; send it back in If-Match to change it only if "
    "nobody changed it since.", required=True,
)
IF_MATCH_DOC = HeaderDoc(
    "If-Match", "Optional: the ETag of the version you hold (or `*`). When the project "
    "changed since, the answer is 412 PRECONDITION_FAILED and nothing is changed; a weak "
    "or malformed value is 400.",
    schema={"type": "string", "pattern": r'^(\*|"[!#-~]*"( *, *"[!#-~]*")*)$'},
)
LOCATION_DOC = HeaderDoc("Location", "The new project's URL.", required=True)


@frozen
class ProjectsDeps:
    """Everything the project routes need."""

    database: Database
    events: DomainEventPublisher
    signals: MembershipSignals
    files_deleted: FilesDeletedHook | None = None

    @classmethod
    def create(
        cls, database: Database, events: DomainEventPublisher, signals: MembershipSignals,
        files_deleted: FilesDeletedHook | None = None,
    ) -> ProjectsDeps:
        return cls(database, SafePublisher(events), signals, files_deleted)


async def in_transaction(
    deps: ProjectsDeps, fn: Callable[[Connection], T], *, readonly: bool = False
) -> T:
    """``fn`` in one transaction on the DB pool; 503 while the database is away."""
    try:
        return await deps.database.run(fn, readonly=readonly)
    except DatabaseUnavailable:
        raise ApiError(
            "UNAVAILABLE", "The database is unavailable right now; try again shortly.",
            headers=((b"Retry-After", b"5"),),
        ) from None


def principal_of(ctx: RequestContext) -> Principal:
    principal = ctx.user
    assert isinstance(principal, Principal)  # noqa: S101 - routes declare auth="user"
    return principal


def member_id(principal: Principal) -> str | None:
    """The id to look up memberships by: none for the service principal (no user row)."""
    return None if principal.is_service else principal.id


def actor_json(principal: Principal) -> dict[str, Any]:
    return {"id": None if principal.is_service else principal.id, "name": principal.name}


def project_json(record: ProjectRecord) -> Project:
    return Project(
        id=record.id, name=record.name, description=record.description,
        status=record.status,  # type: ignore[arg-type]  # CHECK constraint: one of them
        progress=record.progress,
        budget=None if record.budget is None else float(record.budget),
        start_date=record.start_date, end_date=record.end_date,
        contractor=record.contractor, location=record.location,
        created_by=record.created_by, created_at=record.created_at,
        updated_at=record.updated_at, file_count=record.file_count,
    )


def json_value(value: Any) -> Any:
    """A column value as JSON (for audit changes and event payloads)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def changes_between(
    record: ProjectRecord | None, values: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """``{camelField: [before, after]}`` for each value that differs from ``record``
    (None: a new project, every given value is a change)."""
    out: dict[str, list[Any]] = {}
    for name, after in values.items():
        before = getattr(record, name) if record is not None else None
        if json_value(before) != json_value(after):
            out[camel(name)] = [json_value(before), json_value(after)]
    return out


def etag(record: ProjectRecord) -> bytes:
    return f'"{record.id}.{record.version}"'.encode("ascii")


_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')


@frozen
class IfMatch:
    """A parsed If-Match header: ``*`` or strong ETags."""

    any: bool
    tags: frozenset[str]

    def expected_version(self, record: ProjectRecord) -> int:
        """The version the change may apply to: the current one if a tag names it,
        else 412 with the current ETag (so the client can re-read and retry)."""
        if self.any or f"{record.id}.{record.version}" in self.tags:
            return record.version
        raise stale(record)


def stale(record: ProjectRecord) -> ApiError:
    return ApiError(
        "PRECONDITION_FAILED",
        "The project changed since the version named in If-Match: read it again (its "
        "current ETag is in this response) and redo your change on that version.",
        headers=((b"ETag", etag(record)),),
    )


def raw_if_match(ctx: RequestContext) -> str | None:
    """The request's If-Match as sent (None: unconditional). It is judged by
    :func:`parse_if_match` only once the caller may see the project, so that a bad
    header cannot tell an outsider anything either."""
    raw = ctx.request.requestHeaders.getRawHeaders(b"if-match")
    if not raw:
        return None
    return ", ".join(value.decode("latin-1") for value in raw).strip()


def parse_if_match(text: str | None) -> IfMatch | None:
    """If-Match as ``*`` or strong tags (None: unconditional), or 400 when it could
    never match."""
    if text is None:
        return None
    if text == "*":
        return IfMatch(any=True, tags=frozenset())
    tags: set[str] = set()
    weak = False
    for part in _split_tags(text):
        m = _TAG.fullmatch(part)
        if m is None:
            raise ApiError(
                "BAD_REQUEST",
                'If-Match must be * or one or more ETags in double quotes, exactly as the '
                'ETag header gave them (e.g. If-Match: "3f2c...-e4.7").',
            )
        weak = weak or m.group(1) is not None
        tags.add(m.group(2))
    if weak:
        raise ApiError(
            "BAD_REQUEST",
            "If-Match takes strong ETags only: a weak one (W/\"...\") never matches, so "
            "send the ETag header of the project exactly as it was given.",
        )
    return IfMatch(any=False, tags=frozenset(tags))


def _split_tags(text: str) -> list[str]:
    """Split a list of entity tags on the commas outside quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts
