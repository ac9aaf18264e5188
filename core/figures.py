"""The figures a canary stage is judged on: per arm, and for both arms of one window.

Computed by core.analysis (from the rollups, or exactly from the rows); read by
core.canary, core.simulation and the reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ArmFigures:
    """What one arm of a rollout did over a window.

    over_limit: requests slower than the hard p95 limit; over_relative: requests slower
    than the champion's p95 x (1 + p95 margin) over the same window; *_var: the
    cluster-robust variance of those shares, the requests of one second being a cluster
    (None: fewer than two seconds served, or not computed).
    """

    n: int = 0
    errors: int = 0
    p95_ms: float | None = None
    over_limit: int = 0
    over_relative: int = 0
    over_limit_var: float | None = None
    over_relative_var: float | None = None
    negative_feedback: int = 0
    followup_n: int = 0
    reformulations: int = 0
    handoffs: int = 0
    abandonment_n: int = 0
    abandonments: int = 0

    @property
    def error_rate(self) -> float:
        """errors / n (0 when nothing was served)."""
        return self.errors / self.n if self.n else 0.0

    @property
    def negative_feedback_rate(self) -> float:
        """Requests with negative thumbs feedback / requests served (0 when none)."""
        return self.negative_feedback / self.n if self.n else 0.0

    @property
    def reformulation_rate(self) -> float | None:
        """Answers followed by the user's next query within the follow-up window / answers
        whose window has passed (None when none has)."""
        return self.reformulations / self.followup_n if self.followup_n else None

    @property
    def handoff_rate(self) -> float | None:
        """Answers whose quick next query asked for a person / answers whose follow-up
        window has passed (None when none has)."""
        return self.handoffs / self.followup_n if self.followup_n else None

    @property
    def abandonment_rate(self) -> float | None:
        """Answers followed by nothing (no request, no feedback) within the abandonment
        window / answers whose window has passed (None when none has)."""
        return self.abandonments / self.abandonment_n if self.abandonment_n else None


@dataclass(frozen=True, slots=True)
class StageFigures:
    """Both arms of one rollout over [since, until), plus the latency thresholds used."""

    rollout_id: int
    since: datetime
    until: datetime
    champion: ArmFigures
    candidate: ArmFigures
    latency_limit_ms: float
    relative_threshold_ms: float | None

    @property
    def elapsed_seconds(self) -> float:
        """Length of the window in seconds."""
        return (self.until - self.since).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (rates included) for rollout events and reports."""
        arms = {}
        for name, arm in (("champion", self.champion), ("candidate", self.candidate)):
            arms[name] = asdict(arm) | {
                "error_rate": round(arm.error_rate, 6),
                "negative_feedback_rate": round(arm.negative_feedback_rate, 6),
                **{
                    name: None if rate is None else round(rate, 6)
                    for name, rate in (
                        ("reformulation_rate", arm.reformulation_rate),
                        ("handoff_rate", arm.handoff_rate),
                        ("abandonment_rate", arm.abandonment_rate),
                    )
                },
            }
        return {
            "rollout_id": self.rollout_id,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "latency_limit_ms": self.latency_limit_ms,
            "relative_threshold_ms": self.relative_threshold_ms,
            **arms,
        }
