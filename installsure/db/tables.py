"""The schema, as SQLAlchemy Core tables on one shared ``metadata``.

Every table of InstallSure is declared here
and created only by an Alembic migration in ``installsure/db/migrations/versions``:
change a table here, then add a migration that does the same.

The naming convention gives every constraint and index a deterministic name, so later
migrations can drop or alter them by name on PostgreSQL and SQLite alike (SQLite's
batch mode recreates tables and needs the names to carry constraints over).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
    true,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on both dialects.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no such type and hands
    back naive values (``CURRENT_TIMESTAMP`` is UTC there). Naive input is refused so a
    local time can never be stored as if it were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"UtcDateTime needs a timezone-aware datetime, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, e.g. from a server default
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]

app_meta = Table(
    "app_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column(
        "updated_at",
        UtcDateTime(),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    comment=(
        "Facts about this installation, one row per key. Written by migration 0001: "
        "'schema_installed_at' (ISO 8601 UTC time the schema was first created) and "
        "'instance_id' (a random UUID naming this database, e.g. for logs and metrics). "
        "Other parts may add keys; values are text."
    ),
)
"""Installation facts, key -> text value. Keys written so far:

``schema_installed_at``
    ISO 8601 UTC time at which migration 0001 ran, i.e. the database was created.
``instance_id``
    A random UUID that names this database; stable for its lifetime.
"""


# -- Accounts ---------------------------------------------------------------------------
#
# Ids are UUIDs as 36-character text on both dialects (API ids are opaque strings).
# Roles and states are text with a CHECK constraint rather than database enums:
# adding a value is then one batch migration on SQLite and PostgreSQL alike.

#: Global roles, strongest first (``installsure.auth.policy`` decides what each may do).
GLOBAL_ROLES = ("admin", "manager", "member", "viewer")
#: Roles within one project, strongest first.
PROJECT_ROLES = ("owner", "editor", "viewer")
PROJECT_STATUSES = ("planning", "active", "on_hold", "completed", "cancelled")
FILE_STATUSES = ("uploaded", "processing", "processed", "failed")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


def _uuid_column(name: str, *args: Any, **kwargs: Any) -> Column[str]:
    return Column(name, String(36), *args, **kwargs)


def _created_at() -> Column[datetime]:
    return Column(
        "created_at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()
    )


#: An auto-incrementing 64-bit key; SQLite only auto-increments INTEGER PRIMARY KEY.
BigSerial = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    _uuid_column("id", primary_key=True),
    Column("email", Text, nullable=False, comment="As the user typed it, for display and mail."),
    Column("email_key", Text, nullable=False, unique=True,
           comment="The e-mail address folded to lower case: one account per address."),
    Column("name", Text, nullable=False),
    Column("password_hash", Text, nullable=False, comment="argon2id, PHC string format."),
    Column("role", Text, nullable=False),
    Column("is_active", Boolean, nullable=False, server_default=true()),
    _created_at(),
    Column("updated_at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()),
    Column("password_changed_at", UtcDateTime(), nullable=True),
    Column("last_login_at", UtcDateTime(), nullable=True),
    CheckConstraint(_one_of("role", GLOBAL_ROLES), name="role"),
    comment="People who sign in. Never deleted while the audit log names them: deactivated.",
)

sessions = Table(
    "sessions",
    metadata,
    _uuid_column("id", primary_key=True, comment="The access tokens' 'sid' claim."),
    _uuid_column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                 index=True),
    _created_at(),
    Column("last_used_at", UtcDateTime(), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=False,
           comment="When the newest refresh token of the family stops working."),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revoked_reason", Text, nullable=True,
           comment="logout, password_changed, refresh_reused, deactivated, admin, ..."),
    Column("user_agent", Text, nullable=True),
    Column("client_address", Text, nullable=True),
    comment="One sign-in: a family of refresh tokens, each replacing the one before.",
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True,
           comment="SHA-256 (hex) of the token; the token itself is never stored."),
    _uuid_column("session_id", ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False,
                 index=True),
    Column("issued_at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()),
    Column("spent_at", UtcDateTime(), nullable=True,
           comment="Set when it was exchanged; presenting it again revokes the session."),
    comment="Every refresh token a session was given, spent ones kept to detect reuse.",
)

# -- Projects ---------------------------------------------------------------------------

projects = Table(
    "projects",
    metadata,
    _uuid_column("id", primary_key=True),
    Column("name", Text, nullable=False),
    Column("name_key", Text, nullable=False, unique=True,
           comment="The name folded to lower case: names are unique case-insensitively."),
    Column("description", Text, nullable=True),
    Column("status", Text, nullable=False, server_default="planning"),
    Column("progress", Integer, nullable=False, server_default="0"),
    Column("budget", Numeric(14, 2), nullable=True),
    Column("start_date", Date, nullable=True),
    Column("end_date", Date, nullable=True),
    Column("contractor", Text, nullable=True),
    Column("location", Text, nullable=True),
    _uuid_column("created_by", ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    _created_at(),
    Column("updated_at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()),
    Column("version", Integer, nullable=False, server_default="1",
           comment="Incremented by every change; the ETag is derived from it."),
    CheckConstraint(_one_of("status", PROJECT_STATUSES), name="status"),
    CheckConstraint("progress >= 0 AND progress <= 100", name="progress"),
    CheckConstraint("budget IS NULL OR budget >= 0", name="budget"),
    CheckConstraint(
        "start_date IS NULL OR end_date IS NULL OR end_date >= start_date", name="dates"
    ),
)

project_members = Table(
    "project_members",
    metadata,
    _uuid_column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
    _uuid_column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                 index=True),
    Column("role", Text, nullable=False),
    Column("added_at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()),
    _uuid_column("added_by", ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    CheckConstraint(_one_of("role", PROJECT_ROLES), name="role"),
)

# -- Files ------------------------------------------------------------------------------

files = Table(
    "files",
    metadata,
    _uuid_column("id", primary_key=True),
    _uuid_column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), nullable=True,
                 comment="NULL: a file uploaded without a project, visible to its uploader."),
    Column("storage_key", Text, nullable=False, unique=True,
           comment="Where the storage backend keeps the bytes; generated, never user input."),
    Column("original_name", Text, nullable=False,
           comment="The client's file name (Unicode), for display and Content-Disposition."),
    Column("mime_type", Text, nullable=False),
    Column("extension", Text, nullable=False, comment="Lower case, without the dot."),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("status", Text, nullable=False, server_default="uploaded"),
    Column("metadata", JSON, nullable=True),
    Column("thumbnail_key", Text, nullable=True, index=True),
    _uuid_column("uploaded_by", ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    _created_at(),
    Column("processed_at", UtcDateTime(), nullable=True),
    Column("error", Text, nullable=True),
    CheckConstraint(_one_of("status", FILE_STATUSES), name="status"),
    CheckConstraint("size >= 0", name="size"),
    Index("ix_files_project_id_created_at", "project_id", "created_at"),
)

# -- Audit log --------------------------------------------------------------------------

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigSerial, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, server_default=func.current_timestamp()),
    _uuid_column("actor_id", ForeignKey("users.id", ondelete="SET NULL"), nullable=True,
                 comment="NULL for the service principal (API_SECRET) or a deleted user."),
    Column("actor_name", Text, nullable=True, comment="The actor's name when it acted."),
    _uuid_column("project_id", nullable=True,
                 comment="No foreign key: a deleted project's history stays readable."),
    Column("action", Text, nullable=False, comment="e.g. project.updated, member.added"),
    Column("target_type", Text, nullable=False),
    Column("target_id", Text, nullable=False),
    Column("changes", JSON, nullable=True, comment="{field: [before, after]} where useful."),
    Column("request_id", Text, nullable=True),
    Index("ix_audit_log_project_id_id", "project_id", "id"),
    comment="Who changed what and when; append-only.",
)
