"""behaviour_rollups and behaviour_marks: users' behaviour counts that do not grow with the stage

The controller's behaviour figures (reformulation, hand-off, abandonment: core.behaviour)
read per rollout, lead model, arm and minute (and hour) rollups for the minutes whose
windows have passed, and the rows of the stage's edges only (issue 13, core.behaviour_rollups).
`behaviour_marks` holds, per rollout and lead model, the ids read, the first minute not
rolled up and the windows the counts were made with; updated in the same transaction as
the rollups it covers.

New tables only (nothing existing is rewritten): a rollout's first tick after the upgrade
rolls up its stored traffic.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

BIG = sa.BigInteger()
COUNTS = ("followup_n", "reformulations", "handoffs", "abandonment_n", "abandonments")


def upgrade() -> None:
    op.create_table(
        "behaviour_rollups",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("span_minutes", sa.Integer(), nullable=False),
        sa.Column("minute", BIG, nullable=False),
        *(sa.Column(name, BIG, nullable=False) for name in COUNTS),
        sa.PrimaryKeyConstraint(
            "rollout_id", "model_name", "role", "span_minutes", "minute",
            name=op.f("pk_behaviour_rollups"),
        ),  # fmt: skip
    )
    op.create_table(
        "behaviour_marks",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("traffic_id", BIG, nullable=False),
        sa.Column("feedback_id", BIG, nullable=False),
        sa.Column("horizon", BIG, nullable=True),
        sa.Column("followup_seconds", sa.Float(), nullable=False),
        sa.Column("abandonment_seconds", sa.Float(), nullable=False),
        sa.Column("handoff_labels", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "model_name", name=op.f("pk_behaviour_marks")),
    )


def downgrade() -> None:
    op.drop_table("behaviour_marks")
    op.drop_table("behaviour_rollups")
