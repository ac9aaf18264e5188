"""SQLAlchemy 2 table models of the state database (identical on SQLite and Postgres).

`traffic` and `feedback` are written by routers; `rollouts`, `rollout_events` and
`releases` are written only through `core.ledger`; `traffic_rollups` and `rollup_marks`
only through `core.rollups`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ROLES = ("champion", "candidate", "shadow", "fallback")
ACTIVE_STATUSES = ("shadow", "canary", "paused")
FINAL_STATUSES = ("promoted", "rolled_back", "aborted")
ROLLOUT_STATUSES = ACTIVE_STATUSES + FINAL_STATUSES
FEEDBACK_KINDS = ("thumbs", "label")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of time stored)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no timezone type and gives naive datetimes back; this keeps both
    backends returning the same aware values so comparisons never mix kinds.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 (TypeDecorator's signature)
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
BigID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONType}


class Traffic(Base):
    """One served prediction (or a shadow/fallback side result of one)."""

    __tablename__ = "traffic"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    env: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[str | None] = mapped_column(String(128))
    rollout_id: Mapped[int | None] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    input_text: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # the release state (core.release_state) the answer was read from; NULL: none read
    state_key: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index(None, "rollout_id", "ts"),
        Index(None, "env", "model_name", "ts"),
        Index(None, "request_id"),
    )


class Feedback(Base):
    """User feedback on a served prediction, joined to traffic through request_id."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(128))

    __table_args__ = (Index(None, "request_id"), Index(None, "ts"))


class Rollout(Base):
    """One rollout of a candidate version against the champion in one environment."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(8))
    model_name: Mapped[str] = mapped_column(String(128))
    champion_version: Mapped[str] = mapped_column(String(32))
    candidate_version: Mapped[str] = mapped_column(String(32))
    salt: Mapped[str] = mapped_column(String(64))
    stage_index: Mapped[int] = mapped_column(Integer, default=0)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16))
    stage_started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    # opened past a refusal (a promotion of versions that never completed a rollout upstream)
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # the other models of a bundle: {model: {"champion": v, "candidate": v}}; None: one model
    bundle: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index(None, "env", "status"),
        # at most one active rollout per (env, model), enforced by the database itself
        Index(
            "uq_rollouts_one_active",
            "env",
            "model_name",
            unique=True,
            sqlite_where=text("status IN ('shadow','canary','paused')"),
            postgresql_where=text("status IN ('shadow','canary','paused')"),
        ),
    )


class RolloutEvent(Base):
    """Append-only: every change of a rollout, with who, why and the figures acted on."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"))
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    stage_index: Mapped[int | None] = mapped_column(Integer)
    percent: Mapped[float | None] = mapped_column(Float)
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("rollout_id", "seq"), Index(None, "ts"))


class Release(Base):
    """Append-only ledger row: what ran in an environment from `created_at` on."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    code_version: Mapped[str] = mapped_column(String(64))
    image_version: Mapped[str] = mapped_column(String(128))
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSONType)
    artifact_digests: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tag: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128), default="system")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    # a release that went past a refusal (a rollback forced past a broken verdict)
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index(None, "env", "created_at"), Index(None, "tag"))


class ReleaseStateRow(Base):
    """A published derived state, one per set of model versions (see core.release_state)."""

    __tablename__ = "release_states"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    backend: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(Text)
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSONType)
    rows: Mapped[int] = mapped_column(Integer)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime())
    build_seconds: Mapped[float] = mapped_column(Float)


class TrafficRollup(Base):
    """Per rollout, lead model, arm and bucket (a minute or an hour of `traffic.ts`): what
    the stage figures need, added up incrementally by core.rollups."""

    __tablename__ = "traffic_rollups"

    rollout_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    # 1 (a minute) or 60 (an hour); bucket: its first minute, in minutes since the epoch
    span_minutes: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    over_limit: Mapped[int] = mapped_column(BigInteger)
    negative_feedback: Mapped[int] = mapped_column(BigInteger)
    # core.latency_histogram.encode: sparse (bin, count) pairs of the fixed log bins
    latency_bins: Mapped[bytes] = mapped_column(LargeBinary)


class RollupMark(Base):
    """How far core.rollups has read `traffic` and `feedback` (by id), and the latency
    limit its over_limit counts use; one row."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    traffic_id: Mapped[int] = mapped_column(BigInteger)
    feedback_id: Mapped[int] = mapped_column(BigInteger)
    limit_ms: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BehaviourRollup(Base):
    """Per rollout, lead model, arm and minute (or hour) of the answers: what their users did
    next (core.behaviour), for minutes whose follow-up and abandonment windows have passed;
    kept by core.behaviour_rollups."""

    __tablename__ = "behaviour_rollups"

    rollout_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    # 1 (a minute) or 60 (an hour, the sum of its minutes); minute: the first, since the epoch
    span_minutes: Mapped[int] = mapped_column(Integer, primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    followup_n: Mapped[int] = mapped_column(BigInteger)
    reformulations: Mapped[int] = mapped_column(BigInteger)
    handoffs: Mapped[int] = mapped_column(BigInteger)
    abandonment_n: Mapped[int] = mapped_column(BigInteger)
    abandonments: Mapped[int] = mapped_column(BigInteger)


class BehaviourMark(Base):
    """How far core.behaviour_rollups has read for one rollout's lead model: the traffic
    and feedback ids seen, the first minute not rolled up (the horizon) and the windows
    and hand-off labels its counts were made with."""

    __tablename__ = "behaviour_marks"

    rollout_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    traffic_id: Mapped[int] = mapped_column(BigInteger)
    feedback_id: Mapped[int] = mapped_column(BigInteger)
    horizon: Mapped[int | None] = mapped_column(BigInteger)  # a minute since the epoch
    followup_seconds: Mapped[float] = mapped_column(Float)
    abandonment_seconds: Mapped[float] = mapped_column(Float)
    handoff_labels: Mapped[str] = mapped_column(Text)  # JSON list, sorted
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
