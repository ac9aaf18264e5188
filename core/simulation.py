"""Seeded simulation of many rollouts through the real controller decision code.

Each simulated rollout receives traffic tick by tick (one tick = one controller run):
requests are split between the arms by the stage percent, errors and negative feedback
are Bernoulli draws per request, latencies are lognormal draws kept as a fine log-spaced
histogram per arm and stage. After every tick the stage's cumulative figures are turned
into a `StageFigures` (the same type the SQL analysis returns) and passed to
`core.controller.decide`, exactly as the reconciler does; the rollout then advances,
promotes, rolls back or holds. Runs are vectorised with numpy across rollouts; only the
decision itself is a per-rollout Python call.

Used by tests (A/A false-rollback rate, power against a 2x error rate, the latency gate)
and documented in docs/statistics.md. The models and users it draws from (`Arm`) and the
same traffic as real rows (`write_simulated_traffic`) live in core/simulated_traffic.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import stats

from core.analysis import ArmFigures, StageFigures
from core.canary import CanaryPolicy, Verdict, decide
from core.simulated_traffic import (
    FOLLOWUP_GAP_SECONDS,
    HANDOFF_LABEL,
    Arm,
    share,
    write_simulated_traffic,
)

__all__ = [
    "FOLLOWUP_GAP_SECONDS",
    "HANDOFF_LABEL",
    "Arm",
    "Scenario",
    "SimulationResult",
    "aa_scenario",
    "double_error_scenario",
    "double_reformulation_scenario",
    "simulate_rollouts",
    "triple_latency_scenario",
    "write_simulated_traffic",
]

# Latency histogram: log-spaced bins from 0.5 ms to 20 s (about 2% wide each).
_EDGES = np.geomspace(0.5, 20_000.0, 512)
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A population of rollouts: traffic per tick, tick length, both arms, time limit."""

    name: str
    champion: Arm
    candidate: Arm
    requests_per_tick: int = 6_000
    tick_seconds: float = 60.0
    max_ticks: int = 400
    followup_seconds: float = 60.0
    abandonment_seconds: float = 300.0

    def lag_ticks(self, window_seconds: float) -> int:
        """Ticks before an answer's behaviour window has passed (it is counted after)."""
        return math.ceil(window_seconds / self.tick_seconds)


@dataclass(slots=True)
class SimulationResult:
    """Per rollout: the final action, stage index at the end, ticks used, breaches."""

    scenario: Scenario
    outcomes: list[str]
    final_stage: list[int]
    ticks: list[int]
    breaches: Counter[str] = field(default_factory=Counter)

    @property
    def runs(self) -> int:
        """Number of simulated rollouts."""
        return len(self.outcomes)

    def rate(self, outcome: str) -> float:
        """Share of rollouts that ended with `outcome` (rollback, promote or undecided)."""
        return sum(o == outcome for o in self.outcomes) / self.runs

    def rollback_within(self, stages: int) -> float:
        """Share of rollouts rolled back while at one of the first `stages` stages."""
        hits = sum(
            o == "rollback" and s < stages
            for o, s in zip(self.outcomes, self.final_stage, strict=True)
        )
        return hits / self.runs


def _bin_probabilities(arm: Arm, factor: float = 1.0) -> np.ndarray:
    """Probability of each histogram bin (below-first and above-last mass folded in)."""
    dist = stats.lognorm(s=arm.latency_sigma, scale=arm.latency_median_ms * factor)
    cdf = dist.cdf(_EDGES)
    probs = np.diff(cdf)
    probs[0] += cdf[0]
    probs[-1] += 1.0 - cdf[-1]
    return probs / probs.sum()


def _p95(hist: np.ndarray) -> np.ndarray:
    """p95 per row of a histogram matrix, interpolated in log space inside the bin."""
    n = hist.sum(axis=1)
    cum = hist.cumsum(axis=1)
    target = 0.95 * n
    idx = (cum < target[:, None]).sum(axis=1).clip(0, hist.shape[1] - 1)
    rows = np.arange(hist.shape[0])
    before = np.where(idx > 0, cum[rows, idx - 1], 0)
    inside = np.maximum(hist[rows, idx], 1)
    frac = np.clip((target - before) / inside, 0.0, 1.0)
    log_lo, log_hi = np.log(_EDGES[idx]), np.log(_EDGES[idx + 1])
    p95 = np.exp(log_lo + frac * (log_hi - log_lo))
    return np.where(n > 0, p95, np.nan)


def _count_above(hist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Requests slower than each row's threshold (linear share of the straddling bin)."""
    counts = np.zeros(hist.shape[0], dtype=np.int64)
    ok = np.isfinite(thresholds)
    if not ok.any():
        return counts
    t = np.clip(thresholds[ok], _EDGES[0], _EDGES[-1])
    idx = np.searchsorted(_EDGES, t, side="right") - 1
    idx = idx.clip(0, hist.shape[1] - 1)
    rows = np.nonzero(ok)[0]
    sub = hist[rows]
    # tail[:, j] = requests in bins j.. (a zero column appended for "nothing above")
    tail = np.concatenate(
        [np.cumsum(sub[:, ::-1], axis=1)[:, ::-1], np.zeros((len(rows), 1), np.int64)], axis=1
    )
    above_bins = tail[np.arange(len(rows)), idx + 1]
    lo, hi = np.log(_EDGES[idx]), np.log(_EDGES[idx + 1])
    share = (hi - np.log(t)) / (hi - lo)
    counts[rows] = np.rint(above_bins + share * sub[np.arange(len(rows)), idx]).astype(np.int64)
    return counts


def simulate_rollouts(
    scenario: Scenario, policy: CanaryPolicy, *, runs: int, seed: int
) -> SimulationResult:
    """Simulate `runs` rollouts of `scenario` under `policy`, seeded, through `decide`.

    A rollout that neither promotes nor rolls back within `scenario.max_ticks` ends as
    `undecided`.
    """
    return _Simulation(scenario, policy, runs=runs, seed=seed).run()


@dataclass(slots=True)
class _ArmCounts:
    """One arm's cumulative counts in the current stage, one row per simulated rollout."""

    n: np.ndarray
    errors: np.ndarray
    negative: np.ndarray
    hist: np.ndarray
    followup: _Censored
    abandonment: _Censored

    @classmethod
    def zeros(cls, runs: int, scenario: Scenario) -> _ArmCounts:
        """Counts of `runs` rollouts that have served nothing yet."""
        return cls(
            n=np.zeros(runs, dtype=np.int64),
            errors=np.zeros(runs, dtype=np.int64),
            negative=np.zeros(runs, dtype=np.int64),
            hist=np.zeros((runs, len(_EDGES) - 1), dtype=np.int64),
            followup=_Censored.zeros(runs, 3, scenario.lag_ticks(scenario.followup_seconds)),
            abandonment=_Censored.zeros(runs, 2, scenario.lag_ticks(scenario.abandonment_seconds)),
        )

    def serve(
        self,
        live: np.ndarray,
        served: np.ndarray,
        arm: Arm,
        probs: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Add one tick of `served` requests per live rollout: error, negative-feedback
        and latency-bin draws (in this order: the seeded results depend on it)."""
        self.n[live] += served
        self.errors[live] += rng.binomial(served, arm.error_rate)
        self.negative[live] += rng.binomial(served, arm.negative_feedback_rate)
        self.hist[live] += rng.multinomial(served, probs)
        reformulated = rng.binomial(served, arm.reformulation_rate)
        handoffs = rng.binomial(reformulated, share(arm.handoff_rate, arm.reformulation_rate))
        abandoned = rng.binomial(served, arm.abandonment_rate)
        self.followup.add(live, np.stack([served, reformulated, handoffs]))
        self.abandonment.add(live, np.stack([served, abandoned]))

    def reset(self, run: int) -> None:
        """A new stage of rollout `run` starts from zero."""
        self.n[run] = self.errors[run] = self.negative[run] = 0
        self.hist[run] = 0
        self.followup.reset(run)
        self.abandonment.reset(run)


@dataclass(slots=True)
class _Censored:
    """Behaviour counts that become visible `lag` ticks after the answers they follow,
    as core.behaviour only counts answers whose window has passed.

    total: (fields, runs) cumulative counts of the stage; recent: the last `lag` ticks'
    additions, not visible yet.
    """

    total: np.ndarray
    recent: deque[np.ndarray]
    lag: int

    @classmethod
    def zeros(cls, runs: int, fields: int, lag: int) -> _Censored:
        """Nothing served yet."""
        return cls(np.zeros((fields, runs), dtype=np.int64), deque(), lag)

    def add(self, live: np.ndarray, counts: np.ndarray) -> None:
        """One tick's counts (fields x live rollouts)."""
        tick = np.zeros_like(self.total)
        tick[:, live] = counts
        self.total += tick
        self.recent.append(tick)
        while len(self.recent) > self.lag:
            self.recent.popleft()

    def visible(self, run: int) -> list[int]:
        """The counts of rollout `run` whose window has passed, per field."""
        hidden = sum((tick[:, run] for tick in self.recent), np.zeros(len(self.total), np.int64))
        return [int(v) for v in self.total[:, run] - hidden]

    def reset(self, run: int) -> None:
        """A new stage of rollout `run`: its earlier answers are outside the window."""
        self.total[:, run] = 0
        for tick in self.recent:
            tick[:, run] = 0


class _Simulation:
    """The state of `runs` rollouts of one scenario, advanced tick by tick."""

    def __init__(self, scenario: Scenario, policy: CanaryPolicy, *, runs: int, seed: int) -> None:
        """Every rollout starts at stage 0, active, with nothing served."""
        self.scenario = scenario
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.arms = {"champion": scenario.champion, "candidate": scenario.candidate}
        self.probs = {role: _bin_probabilities(arm) for role, arm in self.arms.items()}
        self.stages = np.array(policy.stages)
        self.stage = np.zeros(runs, dtype=np.int64)
        self.stage_start = np.zeros(runs, dtype=np.int64)
        self.active = np.ones(runs, dtype=bool)
        self.outcomes = ["undecided"] * runs
        self.ticks = [scenario.max_ticks] * runs
        self.breaches: Counter[str] = Counter()
        self.counts = {role: _ArmCounts.zeros(runs, scenario) for role in self.arms}

    def run(self) -> SimulationResult:
        """Tick until every rollout is decided or `max_ticks` have passed."""
        for tick in range(1, self.scenario.max_ticks + 1):
            live = np.nonzero(self.active)[0]
            if live.size == 0:
                break
            self._serve(live)
            for run, figures in zip(live, self._figures(live, tick), strict=True):
                verdict = decide(figures, stage_index=int(self.stage[run]), policy=self.policy)
                self._apply(int(run), verdict, tick)
        return SimulationResult(
            scenario=self.scenario,
            outcomes=self.outcomes,
            final_stage=[int(s) for s in self.stage],
            ticks=self.ticks,
            breaches=self.breaches,
        )

    def _serve(self, live: np.ndarray) -> None:
        """The traffic of one tick, for every live rollout at once."""
        per_tick = self.scenario.requests_per_tick
        n_cand = self.rng.binomial(per_tick, self.stages[self.stage[live]] / 100.0)
        served = {"candidate": n_cand, "champion": per_tick - n_cand}
        for role, n in served.items():
            self.counts[role].serve(live, n, self.arms[role], self.probs[role], self.rng)

    def _figures(self, live: np.ndarray, tick: int) -> Iterator[StageFigures]:
        """The same figures the SQL analysis would return for each live rollout's stage so
        far, in the order of `live`."""
        p95 = {role: _p95(self.counts[role].hist[live]) for role in self.arms}
        relative = p95["champion"] * (1.0 + self.policy.p95_margin)
        cand_hist = self.counts["candidate"].hist[live]
        over = {
            "limit": _count_above(cand_hist, np.full(live.size, self.policy.p95_max_ms)),
            "relative": _count_above(cand_hist, relative),
        }
        tick_seconds = self.scenario.tick_seconds
        for j, run in enumerate(live):
            since = _EPOCH + timedelta(seconds=float(self.stage_start[run]) * tick_seconds)
            yield StageFigures(
                rollout_id=int(run),
                since=since,
                until=_EPOCH + timedelta(seconds=tick * tick_seconds),
                champion=self._arm_figures("champion", run, p95["champion"][j]),
                candidate=self._arm_figures(
                    "candidate", run, p95["candidate"][j], over["limit"][j], over["relative"][j]
                ),
                latency_limit_ms=self.policy.p95_max_ms,
                relative_threshold_ms=None if np.isnan(relative[j]) else float(relative[j]),
            )

    def _arm_figures(
        self, role: str, run: int, p95: float, over_limit: int = 0, over_relative: int = 0
    ) -> ArmFigures:
        """One arm's figures of rollout `run` (`p95` NaN when it served nothing)."""
        c = self.counts[role]
        followup_n, reformulations, handoffs = c.followup.visible(run)
        abandonment_n, abandonments = c.abandonment.visible(run)
        return ArmFigures(
            n=int(c.n[run]),
            errors=int(c.errors[run]),
            p95_ms=None if np.isnan(p95) else float(p95),
            over_limit=int(over_limit),
            over_relative=int(over_relative),
            negative_feedback=int(c.negative[run]),
            followup_n=followup_n,
            reformulations=reformulations,
            handoffs=handoffs,
            abandonment_n=abandonment_n,
            abandonments=abandonments,
        )

    def _apply(self, run: int, verdict: Verdict, tick: int) -> None:
        """Act on a verdict as the reconciler would: end, advance (counts restart) or hold."""
        if verdict.action in ("rollback", "promote"):
            self.active[run] = False
            self.outcomes[run] = verdict.action
            self.ticks[run] = tick
            self.breaches.update(verdict.breaches)
        elif verdict.action == "advance":
            self.stage[run] += 1
            self.stage_start[run] = tick
            for c in self.counts.values():
                c.reset(run)


def _default_champion() -> Arm:
    return Arm(
        error_rate=0.02,
        negative_feedback_rate=0.10,
        latency_median_ms=40.0,
        reformulation_rate=0.10,
        handoff_rate=0.03,
        abandonment_rate=0.20,
    )


def aa_scenario() -> Scenario:
    """Candidate identical to the champion (any rollback is a false alarm)."""
    champion = _default_champion()
    return Scenario("A/A", champion=champion, candidate=champion)


def double_error_scenario() -> Scenario:
    """Candidate with twice the champion's error rate (2% -> 4%)."""
    champion = _default_champion()
    candidate = Arm(0.04, champion.negative_feedback_rate, champion.latency_median_ms)
    return Scenario("2x error rate", champion=champion, candidate=candidate)


def double_reformulation_scenario() -> Scenario:
    """Candidate whose answers make users reformulate twice as often (10% -> 20%), with the
    same error rate, latency, thumbs, hand-offs and abandonment."""
    champion = _default_champion()
    candidate = dataclasses.replace(champion, reformulation_rate=2 * champion.reformulation_rate)
    return Scenario("2x reformulation", champion=champion, candidate=candidate)


def triple_latency_scenario() -> Scenario:
    """Candidate 3x slower (every latency, hence p95, times 3)."""
    champion = _default_champion()
    candidate = Arm(
        champion.error_rate, champion.negative_feedback_rate, champion.latency_median_ms * 3
    )
    return Scenario("3x p95 latency", champion=champion, candidate=candidate)
