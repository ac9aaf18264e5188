"""The load test's figures: latency percentiles, error rate and throughput of one model.

Client-side figures: every latency is measured by the load generator on one clock
(`time.perf_counter`) for both models, from the moment a request was due (open loop) or
sent (closed loop) to its response. Percentiles are over successful requests; a failed
request (a non-200 answer, a timeout, a refused connection) counts in the error rate
only. Throughput is successful responses per second of the phase's wall time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["target_rate", "saturation"]
PHASES: tuple[Phase, ...] = ("target_rate", "saturation")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (NumPy's
    default method); None for no values.

    Raises:
        ValueError: q is outside [0, 100].
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class PhaseSample:
    """What one model did in one phase of one round: every successful request's latency,
    the failures, and the phase's wall time."""

    phase: Phase
    latencies_ms: tuple[float, ...]
    errors: int
    seconds: float

    @property
    def requests(self) -> int:
        """Requests answered or failed in the phase."""
        return len(self.latencies_ms) + self.errors


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """One model's figures over one phase (all rounds pooled)."""

    phase: Phase
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        """Failed requests / requests (None when none was sent)."""
        return self.errors / self.requests if self.requests else None

    @property
    def throughput_rps(self) -> float | None:
        """Successful responses per second of wall time (None for no time measured)."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (ledger figures, reports)."""
        return {
            "phase": self.phase,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "error_rate": self.error_rate,
            "throughput_rps": self.throughput_rps,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


def summarize(phase: Phase, samples: Sequence[PhaseSample]) -> LoadFigures:
    """Pool the rounds of one phase of one model into its figures.

    Raises:
        ValueError: a sample is of another phase.
    """
    if any(s.phase != phase for s in samples):
        raise ValueError(f"summarize({phase!r}) got samples of another phase")
    latencies = [ms for s in samples for ms in s.latencies_ms]
    return LoadFigures(
        phase=phase,
        requests=sum(s.requests for s in samples),
        errors=sum(s.errors for s in samples),
        seconds=sum(s.seconds for s in samples),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
    )


def error_rate(figures: Sequence[LoadFigures]) -> float | None:
    """Failed / sent over several phases of one model (None when none was sent)."""
    sent = sum(f.requests for f in figures)
    return sum(f.errors for f in figures) / sent if sent else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
