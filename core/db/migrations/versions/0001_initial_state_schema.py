"""initial state schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 13:24:44.104101
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.models
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('feedback',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('ts', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feedback_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_ts'), ['ts'], unique=False)

    op.create_table('releases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('env', sa.String(length=8), nullable=False),
    sa.Column('created_at', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('code_version', sa.String(length=64), nullable=False),
    sa.Column('image_version', sa.String(length=128), nullable=False),
    sa.Column('model_versions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('artifact_digests', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tag', sa.String(length=256), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['parent_id'], ['releases.id'], name=op.f('fk_releases_parent_id_releases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_releases'))
    )
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_releases_env_created_at'), ['env', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_releases_tag'), ['tag'], unique=False)

    op.create_table('rollouts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('env', sa.String(length=8), nullable=False),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('champion_version', sa.String(length=32), nullable=False),
    sa.Column('candidate_version', sa.String(length=32), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('percent', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stage_started_at', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', core.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('event_seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollouts'))
    )
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollouts_env_status'), ['env', 'status'], unique=False)
        batch_op.create_index('uq_rollouts_one_active', ['env', 'model_name'], unique=True, sqlite_where=sa.text("status IN ('shadow','canary','paused')"), postgresql_where=sa.text("status IN ('shadow','canary','paused')"))

    op.create_table('traffic',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('ts', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('env', sa.String(length=8), nullable=False),
    sa.Column('user_id', sa.String(length=128), nullable=True),
    sa.Column('rollout_id', sa.Integer(), nullable=True),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('input_text', sa.Text(), nullable=False),
    sa.Column('output', sa.String(length=128), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_traffic'))
    )
    with op.batch_alter_table('traffic', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_traffic_env_model_name_ts'), ['env', 'model_name', 'ts'], unique=False)
        batch_op.create_index(batch_op.f('ix_traffic_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_traffic_rollout_id_ts'), ['rollout_id', 'ts'], unique=False)

    op.create_table('rollout_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('rollout_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('ts', core.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('stage_index', sa.Integer(), nullable=True),
    sa.Column('percent', sa.Float(), nullable=True),
    sa.Column('figures', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollouts.id'], name=op.f('fk_rollout_events_rollout_id_rollouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollout_events')),
    sa.UniqueConstraint('rollout_id', 'seq', name=op.f('uq_rollout_events_rollout_id_seq'))
    )
    with op.batch_alter_table('rollout_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_events_ts'), ['ts'], unique=False)

    


def downgrade() -> None:
    
    with op.batch_alter_table('rollout_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_events_ts'))

    op.drop_table('rollout_events')
    with op.batch_alter_table('traffic', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_traffic_rollout_id_ts'))
        batch_op.drop_index(batch_op.f('ix_traffic_request_id'))
        batch_op.drop_index(batch_op.f('ix_traffic_env_model_name_ts'))

    op.drop_table('traffic')
    with op.batch_alter_table('rollouts', schema=None) as batch_op:
        batch_op.drop_index('uq_rollouts_one_active', sqlite_where=sa.text("status IN ('shadow','canary','paused')"), postgresql_where=sa.text("status IN ('shadow','canary','paused')"))
        batch_op.drop_index(batch_op.f('ix_rollouts_env_status'))

    op.drop_table('rollouts')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_releases_tag'))
        batch_op.drop_index(batch_op.f('ix_releases_env_created_at'))

    op.drop_table('releases')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_ts'))
        batch_op.drop_index(batch_op.f('ix_feedback_request_id'))

    op.drop_table('feedback')
    
