"""An index on files.thumbnail_key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

The orphan sweeper asks which of a page of stored keys a file row names, as its bytes
(storage_key, unique and so indexed already) or its thumbnail; without this index the
second half of that question reads the whole table for every page.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_files_thumbnail_key"), "files", ["thumbnail_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_files_thumbnail_key"), table_name="files")
