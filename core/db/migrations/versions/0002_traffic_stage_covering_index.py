"""traffic: covering index for the canary stage query (Postgres)

The controller's stage query reads every row of one rollout in a time window (role,
latency, request id, whether it failed). With only (rollout_id, ts) indexed, Postgres
fetches each row from the heap, and a stage's rows are spread over every page written
meanwhile. With the columns INCLUDEd the query is an index-only scan (bench/analysis.py:
about 3x faster on a 1,000,000-row stage window among 10,000,000 rows). The error text is
not included (it can be long: btree entries are limited to ~2.7 kB); failed rows get a
small partial index of their own. SQLite has no INCLUDE; it keeps the (rollout_id, ts)
index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

COVER = "ix_traffic_rollout_stage_cover"
ERRORS = "ix_traffic_rollout_stage_errors"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {COVER} ON traffic (rollout_id, ts) "
        "INCLUDE (role, latency_ms, request_id)"
    )
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {ERRORS} ON traffic (rollout_id, ts) "
        "INCLUDE (role) WHERE error IS NOT NULL"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {ERRORS}")
    op.execute(f"DROP INDEX IF EXISTS {COVER}")
