"""app_meta: facts about this installation (install time, instance id).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Declared here rather than imported from tables.py: a migration must keep
    # describing the schema as it was at this revision.
    app_meta = op.create_table(
        "app_meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_meta")),
    )
    op.bulk_insert(
        app_meta,
        [
            {"key": "schema_installed_at", "value": datetime.now(UTC).isoformat()},
            {"key": "instance_id", "value": str(uuid.uuid4())},
        ],
    )


def downgrade() -> None:
    op.drop_table("app_meta")
