"""One load test run: the phases of both models, interleaved, on one client clock.

Rounds x phases x models: in each round, each phase (target rate, then saturation) runs
once per model, one model at a time, the order alternating (champion first, then
candidate first, ...), so machine noise (other processes, a GC, CPU frequency) hits both
alike. Each model's phase samples are pooled over the rounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from config import Settings
from core.loadtest.client import Target, closed_loop, open_loop, warm_up
from core.loadtest.stats import PHASES, LoadFigures, Phase, PhaseSample, summarize

WARM_UP_REQUESTS = 20


@dataclass(frozen=True, slots=True)
class LoadTestPlan:
    """How hard and how long: the open-loop rate, the closed-loop connections, seconds per
    phase and model, rounds, the per-request timeout and how many recent queries replay."""

    queries: int
    rate_rps: float
    connections: int
    phase_seconds: float
    rounds: int
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LoadTestPlan:
        """From Settings LOADTEST_*; `overrides` (by field name) that are None are ignored."""
        plan = cls(
            queries=settings.LOADTEST_QUERIES,
            rate_rps=settings.LOADTEST_RATE_RPS,
            connections=settings.LOADTEST_CONNECTIONS,
            phase_seconds=settings.LOADTEST_PHASE_SECONDS,
            rounds=settings.LOADTEST_ROUNDS,
            timeout_seconds=settings.LOADTEST_TIMEOUT_SECONDS,
        )
        return replace(plan, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (reports)."""
        return {
            "queries": self.queries,
            "rate_rps": self.rate_rps,
            "connections": self.connections,
            "phase_seconds": self.phase_seconds,
            "rounds": self.rounds,
            "timeout_seconds": self.timeout_seconds,
        }


@dataclass(frozen=True, slots=True)
class Measurements:
    """Every phase sample of every model (by label, e.g. champion/candidate)."""

    samples: Mapping[str, tuple[PhaseSample, ...]]

    def figures(self, label: str, phase: Phase) -> LoadFigures:
        """The pooled figures of one model in one phase."""
        return summarize(phase, [s for s in self.samples[label] if s.phase == phase])

    def latencies(self, label: str, phase: Phase) -> list[float]:
        """Every successful request's latency of one model in one phase (for plots)."""
        return [ms for s in self.samples[label] if s.phase == phase for ms in s.latencies_ms]


def schedule(labels: Sequence[str], rounds: int) -> list[tuple[Phase, str]]:
    """The order of the (phase, model) runs: every round runs each phase for each model,
    the models' order alternating from one phase run to the next."""
    order: list[tuple[Phase, str]] = []
    for r in range(rounds):
        for p, phase in enumerate(PHASES):
            ordered = labels if (r * len(PHASES) + p) % 2 == 0 else list(reversed(labels))
            order.extend((phase, label) for label in ordered)
    return order


async def _phase(
    target: Target, texts: Sequence[str], phase: Phase, plan: LoadTestPlan
) -> PhaseSample:
    if phase == "target_rate":
        return await open_loop(
            target, texts, rate_rps=plan.rate_rps, seconds=plan.phase_seconds,
            timeout=plan.timeout_seconds,
        )  # fmt: skip
    return await closed_loop(
        target, texts, connections=plan.connections, seconds=plan.phase_seconds,
        timeout=plan.timeout_seconds,
    )  # fmt: skip


async def _run(
    targets: Mapping[str, Target], texts: Sequence[str], plan: LoadTestPlan
) -> Measurements:
    for target in targets.values():
        await warm_up(target, texts, requests=WARM_UP_REQUESTS, timeout=plan.timeout_seconds)
    samples: dict[str, list[PhaseSample]] = {label: [] for label in targets}
    for phase, label in schedule(list(targets), plan.rounds):
        samples[label].append(await _phase(targets[label], texts, phase, plan))
    return Measurements({label: tuple(s) for label, s in samples.items()})


def run_load(
    targets: Mapping[str, Target], texts: Sequence[str], plan: LoadTestPlan
) -> Measurements:
    """Warm every router up, then run the interleaved phases (blocking).

    Raises:
        ValueError: no texts to replay.
        RuntimeError: a router failed every warm-up request.
    """
    if not texts:
        raise ValueError("the load test needs at least one query to replay")
    return asyncio.run(_run(targets, texts, plan))
