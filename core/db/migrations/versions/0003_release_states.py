"""release_states: published derived state per set of model versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import core.db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "release_states",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column(
            "model_versions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("built_at", core.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("build_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_release_states")),
    )


def downgrade() -> None:
    op.drop_table("release_states")
