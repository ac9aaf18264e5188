"""The router's traffic and feedback rows, built by keyword in one place.

Every model call of a request logs one `TrafficRecord` (serving/__init__.py lists which
rows a request writes). What a request's rows share (its id, time, user, text, rollout and
model) travels as one `RequestFacts`; `TrafficLog.record` takes what differs per call and
hands the row to the traffic writer's buffer (no I/O here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from core.traffic import FeedbackRecord, TrafficRecord, TrafficWriter

# Column limits of the traffic table (core/db/models.py).
OUTPUT_MAX = 128
VERSION_MAX = 32
ERROR_MAX = 1000


def utc_now() -> datetime:
    """The timestamp of a traffic or feedback row: now, timezone-aware UTC."""
    return datetime.now(UTC)


def error_text(exc: BaseException) -> str:
    """How a failed model call is logged: `Type: message`, cut to the column width."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX]


class RequestFacts(NamedTuple):
    """What every traffic row of one request repeats."""

    request_id: str
    ts: datetime
    user_id: str | None
    text: str
    rollout_id: int | None
    model_name: str


class TrafficLog:
    """Turns model calls and feedback into rows on the traffic writer's buffer."""

    def __init__(self, writer: TrafficWriter, env: str, *, enabled: bool = True) -> None:
        """Rows are tagged with `env` (the router's ENVIRONMENT). `enabled=False` drops
        every row and feedback (a router pinned for a load test: serving/pinned.py)."""
        self._writer = writer
        self._env = env
        self._enabled = enabled

    def record(
        self,
        request: RequestFacts,
        *,
        role: str,
        version: str,
        output: str | None,
        latency_ms: float,
        error: str | None,
        state_key: str | None = None,
    ) -> None:
        """Buffer the row of one model call of `request` (version and output are cut to
        their column widths; `error` is expected within ERROR_MAX already). `state_key`:
        the release state the model read to answer (None: it reads none)."""
        if not self._enabled:
            return
        self._writer.enqueue(
            TrafficRecord(
                request_id=request.request_id,
                ts=request.ts,
                env=self._env,
                user_id=request.user_id,
                rollout_id=request.rollout_id,
                model_name=request.model_name,
                model_version=version[:VERSION_MAX],
                role=role,
                input_text=request.text,
                output=output[:OUTPUT_MAX] if output is not None else None,
                latency_ms=latency_ms,
                error=error,
                state_key=state_key,
            )
        )

    def feedback(self, request_id: str, kind: str, value: str) -> None:
        """Buffer one feedback row, timestamped now (written in batches with the traffic)."""
        if not self._enabled:
            return
        self._writer.enqueue(
            FeedbackRecord(request_id=request_id, ts=utc_now(), kind=kind, value=value)
        )
