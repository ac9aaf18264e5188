"""What users did after an answer, per arm of a rollout, computed in SQL from the traffic log.

Three behaviour metrics, each a rate per answer (a row of the rollout's lead model with role
champion or candidate and a user id), from the same user's next request of that model
(`LEAD` over the user's rows of the stage window, ordered by time):
- **reformulation**: the next request came within `followup_seconds` of the answer (the
  user asked again: a sign the answer did not help);
- **hand-off**: that quick next request was classified as a hand-off label (a model family
  declares it: the intent classifier's `talk_to_agent`). Any model's row of the next
  request counts, so for a bundle led by the retriever the classifier's row decides;
- **abandonment**: no next request and no feedback on the answer within
  `abandonment_seconds` (the user left without a word).

Censoring. An answer is only counted once its follow-up window has passed: reformulation and
hand-off over answers older than `until - followup_seconds`, abandonment over those older
than `until - abandonment_seconds`. So the figures never change their mind about an answer,
and the next request of a counted answer always falls inside the window (users are sticky
to their arm within a stage, and every request of a rollout's users carries its id).
Answers without a user id cannot be followed and are left out of these rates.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.db.models import UTCDateTime
from core.rollups import minute_sql

# Seconds between two timestamps, per dialect (SQLite stores them as ISO text).
_GAP = {
    "postgresql": "EXTRACT(EPOCH FROM ({later} - {earlier}))",
    "sqlite": "((julianday({later}) - julianday({earlier})) * 86400.0)",
}

_SQL = """
WITH answers AS (
    SELECT role, request_id, ts, {minute} AS minute,
           LEAD(ts) OVER w AS next_ts,
           LEAD(request_id) OVER w AS next_request_id
    FROM traffic
    WHERE rollout_id = :rollout_id AND model_name = :model_name
      AND ts >= :since AND ts < :until
      AND role IN ('champion', 'candidate') AND user_id IS NOT NULL
    WINDOW w AS (PARTITION BY user_id ORDER BY ts, id)
),
gaps AS (
    SELECT role, request_id, ts, minute, next_request_id, {next_gap} AS gap FROM answers
    WHERE ts >= :answers_since AND ts < :answers_until
)
SELECT role, minute,
    SUM(CASE WHEN ts < :followup_until THEN 1 ELSE 0 END) AS followup_n,
    SUM(CASE WHEN ts < :followup_until AND gap <= :followup_seconds
        THEN 1 ELSE 0 END) AS reformulations,
    SUM(CASE WHEN ts < :followup_until AND gap <= :followup_seconds AND EXISTS (
            SELECT 1 FROM traffic h
            WHERE h.request_id = gaps.next_request_id AND h.output IN :handoff
        ) THEN 1 ELSE 0 END) AS handoffs,
    SUM(CASE WHEN ts < :abandon_until THEN 1 ELSE 0 END) AS abandonment_n,
    SUM(CASE WHEN ts < :abandon_until AND (gap IS NULL OR gap > :abandon_seconds)
        AND NOT EXISTS (
            SELECT 1 FROM feedback fb
            WHERE fb.request_id = gaps.request_id AND {feedback_gap} <= :abandon_seconds
        ) THEN 1 ELSE 0 END) AS abandonments
FROM gaps
GROUP BY role, minute
"""


@dataclass(frozen=True, slots=True)
class BehaviourWindows:
    """How the behaviour metrics are read: the follow-up and abandonment windows (Settings
    CANARY_FOLLOWUP_SECONDS, CANARY_ABANDONMENT_SECONDS) and the hand-off labels."""

    followup_seconds: float
    abandonment_seconds: float
    handoff_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Raises ValueError when a window is not positive."""
        if self.followup_seconds <= 0 or self.abandonment_seconds <= 0:
            raise ValueError("behaviour windows must be positive")


@dataclass(frozen=True, slots=True)
class BehaviourCounts:
    """One arm's behaviour counts over a stage window.

    followup_n: answers whose follow-up window has passed (the denominator of the
    reformulation and hand-off rates); abandonment_n: those whose abandonment window has.
    """

    followup_n: int = 0
    reformulations: int = 0
    handoffs: int = 0
    abandonment_n: int = 0
    abandonments: int = 0

    def __add__(self, other: BehaviourCounts) -> BehaviourCounts:
        return BehaviourCounts(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(BehaviourCounts))
        )


def _statement(dialect: str, *, per_minute: bool) -> Any:
    """The behaviour statement for `dialect`, with typed bind parameters: per role, and per
    minute of the answer (since the epoch) when `per_minute` (else minute is 0)."""
    gap = _GAP.get(dialect, _GAP["sqlite"])
    sql = _SQL.format(
        minute=minute_sql(dialect, "ts") if per_minute else "0",
        next_gap=gap.format(later="next_ts", earlier="ts"),
        feedback_gap=gap.format(later="fb.ts", earlier="gaps.ts"),
    )
    return text(sql).bindparams(
        bindparam("handoff", expanding=True, type_=String()),
        bindparam("rollout_id", type_=Integer()),
        bindparam("model_name", type_=String()),
        *(bindparam(name, type_=UTCDateTime()) for name in _TIMES),
        bindparam("followup_seconds", type_=Float()),
        bindparam("abandon_seconds", type_=Float()),
    )


_TIMES = ("since", "until", "answers_since", "answers_until", "followup_until", "abandon_until")


@dataclass(frozen=True, slots=True)
class AnswerSpan:
    """Which rows one behaviour statement reads: the answers in [answers_since,
    answers_until), each followed over the rows of [since, until) (its next request must
    fall there to be seen), counted once its windows have passed `censor_at`."""

    since: datetime
    until: datetime
    answers_since: datetime
    answers_until: datetime
    censor_at: datetime


def answer_counts(
    conn: Connection,
    *,
    rollout_id: int,
    model_name: str,
    span: AnswerSpan,
    windows: BehaviourWindows,
    per_minute: bool = False,
) -> dict[tuple[str, int], BehaviourCounts]:
    """Per (role, minute of the answer) the behaviour counts of `span`'s answers, in one
    statement; minute is 0 unless `per_minute`. A (role, minute) with no answer is absent.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    params = {
        "handoff": list(windows.handoff_labels),
        "rollout_id": rollout_id,
        "model_name": model_name,
        "since": span.since,
        "until": span.until,
        "answers_since": span.answers_since,
        "answers_until": span.answers_until,
        "followup_until": span.censor_at - timedelta(seconds=windows.followup_seconds),
        "abandon_until": span.censor_at - timedelta(seconds=windows.abandonment_seconds),
        "followup_seconds": windows.followup_seconds,
        "abandon_seconds": windows.abandonment_seconds,
    }
    rows = conn.execute(_statement(conn.dialect.name, per_minute=per_minute), params)
    return {
        (row["role"], int(row["minute"])): BehaviourCounts(
            **{f.name: int(row[f.name] or 0) for f in fields(BehaviourCounts)}
        )
        for row in rows.mappings()
    }


def behaviour_counts(
    conn: Connection,
    *,
    rollout_id: int,
    model_name: str,
    since: datetime,
    until: datetime,
    windows: BehaviourWindows,
) -> dict[str, BehaviourCounts]:
    """Per role (champion, candidate) the behaviour counts of a rollout's stage window from
    every row of it, in one statement (no rows leave the database). A role that served
    nothing is absent. The controller reads the same counts from the behaviour rollups
    (core.behaviour_rollups); this is the exact path.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    span = AnswerSpan(since, until, since, until, censor_at=until)
    counts = answer_counts(
        conn, rollout_id=rollout_id, model_name=model_name, span=span, windows=windows
    )
    return {role: c for (role, _), c in counts.items()}
