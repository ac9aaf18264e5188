"""rollouts.forced: a rollout opened past a refusal, as a column rather than prose

A release promoted from one environment to the next (`core.promotion`) is refused when its
versions never completed a rollout in the environment before, unless forced. That fact is
stored on the rollout it opens, and the release its promotion records carries it too
(`releases.forced`, revision 0004). Existing rollouts were never forced: the server default
false fills them. SQLite and Postgres both add it with a plain ALTER TABLE ... ADD COLUMN.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, on SQLite too (NOT NULL is allowed with a constant default): a
    # batch "move and copy" would DROP the table, which foreign keys from populated tables
    # (rollout_events, release_states) refuse on a database that has served.
    op.add_column(
        "rollouts", sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("forced")
