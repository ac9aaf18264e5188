"""rollouts.bundle, traffic.state_key, and the stage index covering model_name

Several models, one release (issue 11):
- `rollouts.bundle`: the other models a rollout carries with its lead model
  (`model_name`), as {model: {"champion": version, "candidate": version}}; NULL for a
  rollout of one model. A bundle has one salt, so a user gets the whole candidate set or
  none.
- `traffic.state_key`: the release state (core.release_state) a row's answer was read
  from, NULL for a model that reads no state.
- The stage query judges a rollout on the rows of its lead model (a request to /answer
  writes one row per model), so the covering index now INCLUDEs model_name as well
  (Postgres; SQLite keeps its (rollout_id, ts) index).

Plain ADD COLUMN on both backends (see 0005 for why not a batch copy).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

COVER = "ix_traffic_rollout_stage_cover"
ERRORS = "ix_traffic_rollout_stage_errors"
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _stage_indexes(include: str, include_errors: str) -> None:
    op.execute(f"DROP INDEX IF EXISTS {ERRORS}")
    op.execute(f"DROP INDEX IF EXISTS {COVER}")
    op.execute(f"CREATE INDEX {COVER} ON traffic (rollout_id, ts) INCLUDE ({include})")
    op.execute(
        f"CREATE INDEX {ERRORS} ON traffic (rollout_id, ts) "
        f"INCLUDE ({include_errors}) WHERE error IS NOT NULL"
    )


def upgrade() -> None:
    op.add_column("rollouts", sa.Column("bundle", JSON, nullable=True))
    op.add_column("traffic", sa.Column("state_key", sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _stage_indexes("model_name, role, latency_ms, request_id", "model_name, role")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _stage_indexes("role, latency_ms, request_id", "role")
    with op.batch_alter_table("traffic", schema=None) as batch_op:
        batch_op.drop_column("state_key")
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_column("bundle")
