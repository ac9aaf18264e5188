"""traffic_rollups and rollup_marks: stage figures that do not grow with the stage

The controller's stage figures read per rollout, lead model, arm and minute (and hour)
rollups instead of every traffic row of the stage (issue 13, core.rollups): counts,
errors, over-limit counts, negative feedback and a fixed log-spaced latency histogram.
`rollup_marks` holds how far the rollups have read `traffic` and `feedback`, by id, and is
updated in the same transaction as the rollups it covers.

New tables only (nothing existing is rewritten): the first refresh after the upgrade
rolls up the traffic already stored, in bounded chunks.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

BIG = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "traffic_rollups",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("span_minutes", sa.Integer(), nullable=False),
        sa.Column("bucket", BIG, nullable=False),
        sa.Column("n", BIG, nullable=False),
        sa.Column("errors", BIG, nullable=False),
        sa.Column("over_limit", BIG, nullable=False),
        sa.Column("negative_feedback", BIG, nullable=False),
        sa.Column("latency_bins", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "rollout_id", "model_name", "role", "span_minutes", "bucket",
            name=op.f("pk_traffic_rollups"),
        ),
    )  # fmt: skip
    op.create_table(
        "rollup_marks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("traffic_id", BIG, nullable=False),
        sa.Column("feedback_id", BIG, nullable=False),
        sa.Column("limit_ms", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_marks")),
    )


def downgrade() -> None:
    op.drop_table("rollup_marks")
    op.drop_table("traffic_rollups")
