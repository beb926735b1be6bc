"""Accounts, sessions, projects and their members, files, the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Declared here rather than imported from tables.py (a migration keeps describing the
schema as it was at its revision); tests/db/test_schema.py checks that tables.py and
the migrations agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: tables.py gave app_meta a comment after 0001 had run; PostgreSQL stores it.
APP_META_COMMENT = (
    "Facts about this installation, one row per key. Written by migration 0001: "
    "'schema_installed_at' (ISO 8601 UTC time the schema was first created) and "
    "'instance_id' (a random UUID naming this database, e.g. for logs and metrics). "
    "Other parts may add keys; values are text."
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps no comments
        op.create_table_comment("app_meta", APP_META_COMMENT)
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "email",
            sa.Text(),
            nullable=False,
            comment="As the user typed it, for display and mail.",
        ),
        sa.Column(
            "email_key",
            sa.Text(),
            nullable=False,
            comment="The e-mail address folded to lower case: one account per address.",
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "password_hash", sa.Text(), nullable=False, comment="argon2id, PHC string format."
        ),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('admin', 'manager', 'member', 'viewer')", name=op.f("ck_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email_key", name=op.f("uq_users_email_key")),
        comment="People who sign in. Never deleted while the audit log names them: deactivated.",
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "actor_id",
            sa.String(length=36),
            nullable=True,
            comment="NULL for the service principal (API_SECRET) or a deleted user.",
        ),
        sa.Column(
            "actor_name", sa.Text(), nullable=True, comment="The actor's name when it acted."
        ),
        sa.Column(
            "project_id",
            sa.String(length=36),
            nullable=True,
            comment="No foreign key: a deleted project's history stays readable.",
        ),
        sa.Column(
            "action", sa.Text(), nullable=False, comment="e.g. project.updated, member.added"
        ),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=False),
        sa.Column(
            "changes", sa.JSON(), nullable=True, comment="{field: [before, after]} where useful."
        ),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_audit_log_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        comment="Who changed what and when; append-only.",
    )
    op.create_index(op.f("ix_audit_log_project_id_id"), "audit_log", ["project_id", "id"])

    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "name_key",
            sa.Text(),
            nullable=False,
            comment="The name folded to lower case: names are unique case-insensitively.",
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="planning", nullable=False),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column("budget", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("contractor", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "version",
            sa.Integer(),
            server_default="1",
            nullable=False,
            comment="Incremented by every change; the ETag is derived from it.",
        ),
        sa.CheckConstraint(
            "status IN ('planning', 'active', 'on_hold', 'completed', 'cancelled')",
            name=op.f("ck_projects_status"),
        ),
        sa.CheckConstraint("budget IS NULL OR budget >= 0", name=op.f("ck_projects_budget")),
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name=op.f("ck_projects_progress")),
        sa.CheckConstraint(
            "start_date IS NULL OR end_date IS NULL OR end_date >= start_date",
            name=op.f("ck_projects_dates"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_projects_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name_key", name=op.f("uq_projects_name_key")),
    )
    op.create_table(
        "sessions",
        sa.Column(
            "id", sa.String(length=36), nullable=False, comment="The access tokens' 'sid' claim."
        ),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "expires_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the newest refresh token of the family stops working.",
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "revoked_reason",
            sa.Text(),
            nullable=True,
            comment="logout, password_changed, refresh_reused, deactivated, admin, ...",
        ),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("client_address", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        comment="One sign-in: a family of refresh tokens, each replacing the one before.",
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"])

    op.create_table(
        "files",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "project_id",
            sa.String(length=36),
            nullable=True,
            comment="NULL: a file uploaded without a project, visible to its uploader.",
        ),
        sa.Column(
            "storage_key",
            sa.Text(),
            nullable=False,
            comment="Where the storage backend keeps the bytes; generated, never user input.",
        ),
        sa.Column(
            "original_name",
            sa.Text(),
            nullable=False,
            comment="The client's file name (Unicode), for display and Content-Disposition.",
        ),
        sa.Column("mime_type", sa.Text(), nullable=False),
        sa.Column("extension", sa.Text(), nullable=False, comment="Lower case, without the dot."),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Text(), server_default="uploaded", nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("thumbnail_key", sa.Text(), nullable=True),
        sa.Column("uploaded_by", sa.String(length=36), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('uploaded', 'processing', 'processed', 'failed')",
            name=op.f("ck_files_status"),
        ),
        sa.CheckConstraint("size >= 0", name=op.f("ck_files_size")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_files_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_files_uploaded_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_files_storage_key")),
    )
    op.create_index(op.f("ix_files_project_id_created_at"), "files", ["project_id", "created_at"])

    op.create_table(
        "project_members",
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column(
            "added_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("added_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "role IN ('owner', 'editor', 'viewer')", name=op.f("ck_project_members_role")
        ),
        sa.ForeignKeyConstraint(
            ["added_by"],
            ["users.id"],
            name=op.f("fk_project_members_added_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_project_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_project_members")),
    )
    op.create_index(op.f("ix_project_members_user_id"), "project_members", ["user_id"])

    op.create_table(
        "refresh_tokens",
        sa.Column(
            "token_hash",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 (hex) of the token; the token itself is never stored.",
        ),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column(
            "issued_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "spent_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Set when it was exchanged; presenting it again revokes the session.",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
        comment="Every refresh token a session was given, spent ones kept to detect reuse.",
    )
    op.create_index(op.f("ix_refresh_tokens_session_id"), "refresh_tokens", ["session_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_table_comment("app_meta", existing_comment=APP_META_COMMENT)
    op.drop_index(op.f("ix_refresh_tokens_session_id"), table_name="refresh_tokens")

    op.drop_table("refresh_tokens")
    op.drop_index(op.f("ix_project_members_user_id"), table_name="project_members")

    op.drop_table("project_members")
    op.drop_index(op.f("ix_files_project_id_created_at"), table_name="files")

    op.drop_table("files")
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")

    op.drop_table("sessions")
    op.drop_table("projects")
    op.drop_index(op.f("ix_audit_log_project_id_id"), table_name="audit_log")

    op.drop_table("audit_log")
    op.drop_table("users")
