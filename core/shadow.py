"""Shadow evaluation: replay recent production inputs through champion and candidate.

1. `sample_requests` draws a random sample of the requests an env served for a model in a
   recent window (SQL in the database), with the true label where feedback holds one.
2. `chunk_requests` cuts the sample into chunks; `replay_chunk` predicts a chunk through
   both models in batches and returns only counts (agreement, errors, per-intent
   agreement, the 2x2 table of correctness on labelled requests), so chunks can run as
   mapped tasks on many workers and be merged (`merge_chunks`) in any order.
3. `measure_latency` times single-request predictions on a small subsample: the latency a
   user would see, which batched replay cannot show.
4. `evaluate` turns the merged counts into rates with confidence intervals (statsmodels
   Wilson intervals), latency percentiles, McNemar's exact test on the paired accuracy
   (statsmodels), a bootstrap interval (scipy) on the accuracy difference, and the gate
   (Settings SHADOW_*), listing every failed threshold.

No Prefect here; tasks/shadow.py and flows/shadow_evaluation.py wrap these.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from scipy import stats
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.types import Integer, String
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from config import Settings
from core import ledger
from core.db.models import UTCDateTime
from core.errors import ConflictError, NotFoundError
from core.gates import GateCheck, GateReport, evaluate_gate
from core.ledger import AliasRegistry, RolloutRecord

CONFIDENCE = 0.95

_SAMPLE_SQL = """
SELECT t.request_id AS request_id, t.input_text AS input_text,
       (SELECT f.value FROM feedback f
        WHERE f.request_id = t.request_id AND f.kind = 'label'
        ORDER BY f.ts DESC LIMIT 1) AS label
FROM traffic t
WHERE t.env = :env AND t.model_name = :model_name
  AND t.ts >= :since AND t.ts < :until
  AND t.role IN ('champion', 'candidate')
ORDER BY random()
LIMIT :limit
"""


class Predictor(Protocol):
    """What replay needs of a model: batch prediction (core.registry.LoadedModel has it)."""

    def predict(self, texts: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One logged request to replay: its id, input text and true label if known."""

    request_id: str
    text: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ShadowThresholds:
    """The shadow gate's thresholds (Settings SHADOW_*)."""

    min_agreement: float
    max_error_rate: float
    max_p95_ms: float
    max_accuracy_drop: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ShadowThresholds:
        """Read the thresholds from Settings."""
        return cls(
            min_agreement=settings.SHADOW_MIN_AGREEMENT,
            max_error_rate=settings.SHADOW_MAX_ERROR_RATE,
            max_p95_ms=settings.SHADOW_MAX_P95_MS,
            max_accuracy_drop=settings.SHADOW_MAX_ACCURACY_DROP,
        )


@dataclass(slots=True)
class ChunkCounts:
    """What a replayed chunk contributes; all counts, so chunks merge by addition.

    agree: both answered and gave the same answer (over `both_answered`); per_intent:
    champion's answer -> [requests both answered, of which agreed]; correct_table:
    [[both right, only champion right], [only candidate right, both wrong]] on labelled
    requests both answered.
    """

    n: int = 0
    champion_errors: int = 0
    candidate_errors: int = 0
    both_answered: int = 0
    agree: int = 0
    labelled: int = 0
    correct_table: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])
    per_intent: dict[str, list[int]] = field(default_factory=dict)
    champion_seconds: float = 0.0
    candidate_seconds: float = 0.0

    def add(self, other: ChunkCounts) -> None:
        """Add another chunk's counts into this one."""
        self.n += other.n
        self.champion_errors += other.champion_errors
        self.candidate_errors += other.candidate_errors
        self.both_answered += other.both_answered
        self.agree += other.agree
        self.labelled += other.labelled
        for i in range(2):
            for j in range(2):
                self.correct_table[i][j] += other.correct_table[i][j]
        for intent, (n, agreed) in other.per_intent.items():
            slot = self.per_intent.setdefault(intent, [0, 0])
            slot[0] += n
            slot[1] += agreed
        self.champion_seconds += other.champion_seconds
        self.candidate_seconds += other.candidate_seconds


@dataclass(frozen=True, slots=True)
class LatencyProfile:
    """Single-request latencies (ms) of both models on the same subsample."""

    champion_ms: tuple[float, ...]
    candidate_ms: tuple[float, ...]

    def percentiles(self, which: str) -> dict[str, float | None]:
        """p50/p95/p99 of `champion` or `candidate` (None when nothing was timed)."""
        values = self.champion_ms if which == "champion" else self.candidate_ms
        if not values:
            return {"p50": None, "p95": None, "p99": None}
        p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate with its Wilson confidence interval."""

    count: int
    n: int
    value: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, count: int, n: int) -> Rate:
        """count / n with a 95% Wilson interval (statsmodels); None values when n = 0."""
        if n == 0:
            return cls(count, n, None, None, None)
        low, high = proportion_confint(count, n, alpha=1 - CONFIDENCE, method="wilson")
        return cls(count, n, count / n, float(low), float(high))

    def describe(self) -> str:
        """`0.912 [0.905, 0.918] (4560/5000)` or `n/a`."""
        if self.value is None:
            return "n/a (0 requests)"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.count}/{self.n})"


@dataclass(frozen=True, slots=True)
class AccuracyComparison:
    """Paired accuracy on labelled requests: both rates, McNemar, and the difference."""

    champion: Rate
    candidate: Rate
    mcnemar_statistic: float
    mcnemar_p_value: float
    drop: float
    drop_low: float
    drop_high: float


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """The evaluation: every figure, its interval, and the gate verdict."""

    model_name: str
    champion_version: str
    candidate_version: str
    requests: int
    agreement: Rate
    champion_error: Rate
    candidate_error: Rate
    champion_latency: dict[str, float | None]
    candidate_latency: dict[str, float | None]
    accuracy: AccuracyComparison | None
    per_intent: dict[str, Rate]
    gate: GateReport
    replay_rows_per_second: float | None = None

    @property
    def passed(self) -> bool:
        """True when every gate threshold holds."""
        return self.gate.passed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for events, artifacts and MLflow."""

        def rate(r: Rate) -> dict[str, Any]:
            return {"count": r.count, "n": r.n, "value": r.value, "low": r.low, "high": r.high}

        accuracy = None
        if self.accuracy is not None:
            a = self.accuracy
            accuracy = {
                "champion": rate(a.champion),
                "candidate": rate(a.candidate),
                "mcnemar_statistic": a.mcnemar_statistic,
                "mcnemar_p_value": a.mcnemar_p_value,
                "drop": a.drop,
                "drop_ci": [a.drop_low, a.drop_high],
            }
        return {
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "candidate_version": self.candidate_version,
            "requests": self.requests,
            "agreement": rate(self.agreement),
            "champion_error": rate(self.champion_error),
            "candidate_error": rate(self.candidate_error),
            "champion_latency_ms": self.champion_latency,
            "candidate_latency_ms": self.candidate_latency,
            "accuracy": accuracy,
            "per_intent_agreement": {k: rate(v) for k, v in self.per_intent.items()},
            "gate": self.gate.as_dict(),
            "replay_rows_per_second": self.replay_rows_per_second,
        }


# --- sampling --------------------------------------------------------------------------


def sample_requests(
    engine: Engine,
    *,
    env: str,
    model_name: str,
    window_hours: float,
    sample_size: int,
    now: datetime,
) -> list[ReplayRequest]:
    """A random sample of requests served in `env` for `model_name` in the last window.

    One row per request (champion- or candidate-arm rows; shadow and fallback duplicates
    excluded), with the newest `label` feedback when there is one.

    Raises:
        ValueError: on a non-positive window or sample size, or a naive `now`.
    """
    if window_hours <= 0 or sample_size < 1:
        raise ValueError("window_hours and sample_size must be positive")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    statement = text(_SAMPLE_SQL).bindparams(
        bindparam("env", type_=String()),
        bindparam("model_name", type_=String()),
        bindparam("since", type_=UTCDateTime()),
        bindparam("until", type_=UTCDateTime()),
        bindparam("limit", type_=Integer()),
    )
    params = {
        "env": env,
        "model_name": model_name,
        "since": now - timedelta(hours=window_hours),
        "until": now,
        "limit": sample_size,
    }
    with engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    return [ReplayRequest(str(r.request_id), str(r.input_text), r.label) for r in rows]


def chunk_requests(requests: Sequence[ReplayRequest], size: int) -> list[list[ReplayRequest]]:
    """Cut the sample into chunks of at most `size` (the unit of work of a mapped task).

    Raises:
        ValueError: if size < 1.
    """
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [list(requests[i : i + size]) for i in range(0, len(requests), size)]


# --- replay ------------------------------------------------------------------------------


def predict_tolerant(model: Predictor, texts: Sequence[str]) -> list[str | None]:
    """Predict a batch; if it raises, bisect to find the failing inputs (None for those).

    A model that fails on some inputs fails the whole batch call, so the batch is split
    in halves until each failure is pinned to its input; successful halves keep the
    speed of batching.
    """
    if not texts:
        return []
    try:
        return [str(p) for p in model.predict(list(texts))]
    except Exception:  # any model failure is a per-request error of the replay
        if len(texts) == 1:
            return [None]
        mid = len(texts) // 2
        return predict_tolerant(model, texts[:mid]) + predict_tolerant(model, texts[mid:])


def replay_chunk(
    champion: Predictor, candidate: Predictor, chunk: Sequence[ReplayRequest]
) -> ChunkCounts:
    """Predict one chunk through both models in batches and count what happened."""
    texts = [r.text for r in chunk]
    started = time.perf_counter()
    champ_out = predict_tolerant(champion, texts)
    champ_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cand_out = predict_tolerant(candidate, texts)
    cand_seconds = time.perf_counter() - started

    counts = ChunkCounts(
        n=len(chunk), champion_seconds=champ_seconds, candidate_seconds=cand_seconds
    )
    counts.champion_errors = sum(p is None for p in champ_out)
    counts.candidate_errors = sum(p is None for p in cand_out)
    per_intent = counts.per_intent
    table = counts.correct_table
    for request, a, b in zip(chunk, champ_out, cand_out, strict=True):
        if a is None or b is None:
            continue
        counts.both_answered += 1
        same = a == b
        counts.agree += same
        slot = per_intent.setdefault(a, [0, 0])
        slot[0] += 1
        slot[1] += same
        if request.label is not None:
            counts.labelled += 1
            table[a != request.label][b != request.label] += 1
    return counts


def merge_chunks(chunks: Iterable[ChunkCounts]) -> ChunkCounts:
    """Add up the counts of every chunk (order does not matter)."""
    total = ChunkCounts()
    for chunk in chunks:
        total.add(chunk)
    return total


def measure_latency(
    champion: Predictor, candidate: Predictor, requests: Sequence[ReplayRequest], *, limit: int
) -> LatencyProfile:
    """Time single-request predictions of both models on the first `limit` requests.

    Failed predictions are timed too (a user waits for a failure as well).
    """
    champ: list[float] = []
    cand: list[float] = []
    for request in requests[:limit]:
        for model, out in ((champion, champ), (candidate, cand)):
            started = time.perf_counter()
            predict_tolerant(model, [request.text])
            out.append((time.perf_counter() - started) * 1000.0)
    return LatencyProfile(tuple(champ), tuple(cand))


# --- statistics and gate ---------------------------------------------------------------


def compare_accuracy(table: Sequence[Sequence[int]], *, seed: int = 0) -> AccuracyComparison | None:
    """Paired accuracy of champion and candidate from the 2x2 table of correctness.

    McNemar's exact test (statsmodels) on the discordant pairs; the accuracy drop
    (champion - candidate) with a 95% bootstrap interval (scipy) over the paired
    per-request differences. None when nothing was labelled.
    """
    (both, champ_only), (cand_only, neither) = table
    n = both + champ_only + cand_only + neither
    if n == 0:
        return None
    test = mcnemar([[both, champ_only], [cand_only, neither]], exact=True)
    differences = np.concatenate(
        [np.ones(champ_only), -np.ones(cand_only), np.zeros(both + neither)]
    )
    drop = float(differences.mean())
    if champ_only + cand_only == 0:
        low = high = 0.0
    else:
        boot = stats.bootstrap(
            (differences,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=2000,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return AccuracyComparison(
        champion=Rate.of(both + champ_only, n),
        candidate=Rate.of(both + cand_only, n),
        mcnemar_statistic=float(test.statistic),
        mcnemar_p_value=float(test.pvalue),
        drop=drop,
        drop_low=low,
        drop_high=high,
    )


def evaluate(
    counts: ChunkCounts,
    latency: LatencyProfile,
    thresholds: ShadowThresholds,
    *,
    model_name: str,
    champion_version: str,
    candidate_version: str,
) -> ShadowReport:
    """Rates with intervals, latency percentiles, paired accuracy, and the gate verdict.

    The gate fails on: agreement below SHADOW_MIN_AGREEMENT, candidate error rate above
    SHADOW_MAX_ERROR_RATE, candidate p95 above SHADOW_MAX_P95_MS, accuracy drop above
    SHADOW_MAX_ACCURACY_DROP (skipped without labels); an empty sample fails too.
    """
    agreement = Rate.of(counts.agree, counts.both_answered)
    champion_error = Rate.of(counts.champion_errors, counts.n)
    candidate_error = Rate.of(counts.candidate_errors, counts.n)
    accuracy = compare_accuracy(counts.correct_table)
    cand_latency = latency.percentiles("candidate")
    gate = evaluate_gate(
        f"shadow {model_name} v{candidate_version} vs v{champion_version}",
        [
            GateCheck("requests", counts.n, ">=", 1, required=True),
            GateCheck("agreement", agreement.value, ">=", thresholds.min_agreement, True),
            GateCheck(
                "candidate_error_rate", candidate_error.value, "<=", thresholds.max_error_rate, True
            ),
            GateCheck("candidate_p95_ms", cand_latency["p95"], "<=", thresholds.max_p95_ms, True),
            GateCheck(
                "accuracy_drop",
                accuracy.drop if accuracy else None,
                "<=",
                thresholds.max_accuracy_drop,
            ),
        ],
    )
    total_seconds = counts.champion_seconds + counts.candidate_seconds
    return ShadowReport(
        model_name=model_name,
        champion_version=champion_version,
        candidate_version=candidate_version,
        requests=counts.n,
        agreement=agreement,
        champion_error=champion_error,
        candidate_error=candidate_error,
        champion_latency=latency.percentiles("champion"),
        candidate_latency=cand_latency,
        accuracy=accuracy,
        per_intent={
            intent: Rate.of(agreed, n) for intent, (n, agreed) in sorted(counts.per_intent.items())
        },
        gate=gate,
        replay_rows_per_second=counts.n / total_seconds if total_seconds > 0 else None,
    )


def report_markdown(report: ShadowReport) -> str:
    """The report as markdown (a Prefect artifact and an MLflow artifact)."""
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"# Shadow evaluation: {report.model_name} v{report.candidate_version} "
        f"vs champion v{report.champion_version}",
        "",
        f"**Verdict: {verdict}** ({report.gate.summary()})",
        "",
        f"Replayed requests: {report.requests}",
        "",
        "| figure | champion | candidate |",
        "|---|---|---|",
        f"| error rate (95% CI) | {report.champion_error.describe()} | "
        f"{report.candidate_error.describe()} |",
    ]
    for p in ("p50", "p95", "p99"):
        a, b = report.champion_latency[p], report.candidate_latency[p]
        lines.append(
            f"| latency {p} (ms) | {'n/a' if a is None else f'{a:.2f}'} | "
            f"{'n/a' if b is None else f'{b:.2f}'} |"
        )
    if report.accuracy is not None:
        acc = report.accuracy
        lines.append(
            f"| accuracy (95% CI) | {acc.champion.describe()} | {acc.candidate.describe()} |"
        )
    lines += ["", f"Agreement (95% CI): {report.agreement.describe()}", ""]
    if report.accuracy is not None:
        acc = report.accuracy
        lines += [
            f"Accuracy drop champion - candidate: {acc.drop:+.4f} "
            f"[{acc.drop_low:+.4f}, {acc.drop_high:+.4f}] (bootstrap 95%); "
            f"McNemar exact p = {acc.mcnemar_p_value:.4g}",
            "",
        ]
    else:
        lines += ["No labelled feedback in the sample: accuracy not compared.", ""]
    lines += ["## Gate", ""] + [f"- {c.describe()}" for c in report.gate.checks]
    return "\n".join(lines) + "\n"


# --- subjects and outcome ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShadowSubjects:
    """Which versions a shadow evaluation compares, and the rollout it belongs to (if any)."""

    env: str
    model_name: str
    champion_version: str
    candidate_version: str
    rollout: RolloutRecord | None


def resolve_subjects(
    engine: Engine,
    registry: AliasRegistry,
    *,
    env: str,
    model_name: str,
    candidate_version: str | None,
) -> ShadowSubjects:
    """Find the champion (current release) and candidate (given, else the active
    rollout's, else the registry's `candidate` alias) of `model_name` in `env`.

    Raises:
        NotFoundError: no release holds the model in `env`, or no candidate can be found.
        ConflictError: the candidate is the champion, or differs from the active rollout's.
    """
    release = ledger.current_release(engine, env)
    champion = (release.model_versions if release else {}).get(model_name)
    if champion is None:
        raise NotFoundError(f"no champion of {model_name!r} in {env}: nothing released yet")
    active = [r for r in ledger.active_rollouts(engine, env) if r.model_name == model_name]
    rollout = active[0] if active else None
    if candidate_version is None and rollout is not None:
        candidate_version = rollout.candidate_version
    if candidate_version is None:
        lookup = getattr(registry, "version_by_alias", None)
        found = lookup(model_name, "candidate") if lookup else None
        if found is None:
            raise NotFoundError(
                f"no candidate of {model_name!r}: name a version, or set the `candidate` alias"
            )
        candidate_version = str(getattr(found, "version", found))
    candidate_version = str(candidate_version)
    if candidate_version == str(champion):
        raise ConflictError(f"{model_name} v{candidate_version} is already the champion in {env}")
    if rollout is not None and rollout.candidate_version != candidate_version:
        raise ConflictError(
            f"rollout #{rollout.id} of {model_name} in {env} is for v{rollout.candidate_version}, "
            f"not v{candidate_version}: end it first"
        )
    return ShadowSubjects(env, model_name, str(champion), candidate_version, rollout)


ShadowAction = Literal["advanced_to_canary", "started_canary", "rolled_back", "reported"]


def act_on_report(
    engine: Engine,
    subjects: ShadowSubjects,
    report: ShadowReport,
    *,
    stages: Sequence[float],
    actor: str,
    registry: AliasRegistry | None = None,
    start_canary: bool = True,
) -> tuple[ShadowAction, int | None]:
    """Record the evaluation in the ledger and move the rollout on its verdict.

    A shadow-mode rollout advances into canary stage 0 on a pass and is rolled back on a
    fail. Without a rollout, a pass starts a canary rollout (when `start_canary`); a fail
    only reports. A canary or paused rollout only gets the event. Returns what was done
    and the rollout id.

    Raises:
        ConflictError: the rollout changed meanwhile (the ledger refuses stale moves).
    """
    figures = report.as_dict()
    summary = report.gate.summary()
    rollout = subjects.rollout
    if rollout is None:
        if not (report.passed and start_canary):
            return "reported", None
        rollout = ledger.start_rollout(
            engine,
            env=subjects.env,
            model_name=subjects.model_name,
            candidate_version=subjects.candidate_version,
            champion_version=subjects.champion_version,
            stages=stages,
            mode="canary",
            actor=actor,
            reason=f"shadow evaluation passed: {summary}",
        )
        ledger.record_event(
            engine, rollout.id, kind="shadow_evaluation", actor=actor, reason=summary,
            figures=figures,
        )  # fmt: skip
        return "started_canary", rollout.id
    ledger.record_event(
        engine, rollout.id, kind="shadow_evaluation", actor=actor, reason=summary, figures=figures
    )
    if rollout.status != "shadow":
        return "reported", rollout.id
    if report.passed:
        ledger.advance_stage(
            engine, rollout.id, expected_stage_index=rollout.stage_index,
            stages=ledger.rollout_stages(engine, rollout.id), actor=actor, reason=summary,
            figures={"gate": report.gate.as_dict()},
        )  # fmt: skip
        return "advanced_to_canary", rollout.id
    ledger.rollback(
        engine, rollout.id, actor=actor, reason=summary,
        figures={"gate": report.gate.as_dict()}, registry=registry,
    )  # fmt: skip
    return "rolled_back", rollout.id


def log_to_mlflow(
    client: Any,
    *,
    experiment: str,
    artifact_location: str | None,
    report: ShadowReport,
    markdown: str,
    files: Sequence[Path],
) -> str:
    """Log the evaluation as an MLflow run (metrics, report, plots); return the run id.

    `client` is an `mlflow.MlflowClient`; the experiment is created if missing.
    """
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=artifact_location)
    )
    run = client.create_run(
        experiment_id,
        run_name=f"shadow-{report.model_name}-v{report.candidate_version}",
        tags={
            "sml.kind": "shadow_evaluation",
            "sml.model": report.model_name,
            "sml.champion_version": report.champion_version,
            "sml.candidate_version": report.candidate_version,
            "sml.verdict": "pass" if report.passed else "fail",
        },
    )
    run_id = str(run.info.run_id)
    metrics = {
        "requests": float(report.requests),
        "agreement": report.agreement.value,
        "champion_error_rate": report.champion_error.value,
        "candidate_error_rate": report.candidate_error.value,
        **{f"champion_latency_{k}_ms": v for k, v in report.champion_latency.items()},
        **{f"candidate_latency_{k}_ms": v for k, v in report.candidate_latency.items()},
    }
    if report.accuracy is not None:
        metrics |= {
            "champion_accuracy": report.accuracy.champion.value,
            "candidate_accuracy": report.accuracy.candidate.value,
            "accuracy_drop": report.accuracy.drop,
            "mcnemar_p_value": report.accuracy.mcnemar_p_value,
        }
    for key, value in metrics.items():
        if value is not None:
            client.log_metric(run_id, key, float(value))
    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "shadow-report.md"
        md.write_text(markdown)
        js = Path(tmp) / "shadow-report.json"
        js.write_text(json.dumps(report.as_dict(), indent=2, default=str))
        for path in (md, js, *files):
            client.log_artifact(run_id, str(path), artifact_path="shadow")
    client.set_terminated(run_id)
    return run_id
