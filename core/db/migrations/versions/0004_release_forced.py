"""releases.forced: a release that went past a refusal, as a column rather than prose

A rollback forced past a broken compat verdict used to be recognised by searching its
reason for "[FORCED". The fact now has its own column; the reason keeps the human text.
Existing rows are backfilled from that text, so history reads the same before and after.
batch_alter_table lets SQLite add a NOT NULL column with a server default; on Postgres it
is a plain ALTER TABLE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN, on SQLite too (NOT NULL is allowed with a constant default): a
    # batch "move and copy" would DROP the table, which foreign keys from populated tables
    # (rollout_events, release_states) refuse on a database that has served.
    op.add_column(
        "releases", sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    releases = sa.table("releases", sa.column("reason", sa.Text), sa.column("forced", sa.Boolean))
    op.execute(
        releases.update().where(releases.c.reason.like("%[FORCED past:%")).values(forced=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_column("forced")
