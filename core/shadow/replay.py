"""Shadow evaluation, steps 1-3: sample recent requests, replay them, time single requests.

1. `sample_requests` draws a random sample of the requests an env served for a model in a
   recent window (SQL in the database), with the true label where feedback holds one.
2. `chunk_requests` cuts the sample into chunks; `replay_chunk` predicts a chunk through
   both models in batches and returns only counts (agreement, errors, per-intent
   agreement, the 2x2 table of correctness on labelled requests), so chunks can run as
   mapped tasks on many workers and be merged (`merge_chunks`) in any order.
3. `measure_latency` times single-request predictions on a small subsample: the latency a
   user would see, which batched replay cannot show.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.types import Integer, String

from config import Settings
from core.db.models import UTCDateTime

# One row per sampled request; a champion-arm row of the champion version is joined (in
# SQL) to the candidate's online shadow row of the same request, the newest if several.
_SAMPLE_SQL = """
SELECT t.request_id AS request_id, t.input_text AS input_text,
       (SELECT f.value FROM feedback f
        WHERE f.request_id = t.request_id AND f.kind = 'label'
        ORDER BY f.ts DESC LIMIT 1) AS label,
       t.output AS champion_output, t.error AS champion_error, t.latency_ms AS champion_ms,
       s.id AS shadow_id, s.output AS shadow_output, s.error AS shadow_error,
       s.latency_ms AS shadow_ms
FROM traffic t
LEFT JOIN traffic s ON t.role = 'champion' AND t.model_version = :champion_version
  AND s.id = (SELECT MAX(s2.id) FROM traffic s2
              WHERE s2.request_id = t.request_id AND s2.role = 'shadow'
                AND s2.env = t.env AND s2.model_name = t.model_name
                AND s2.model_version = :candidate_version)
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
class OnlinePair:
    """What the router logged for one request: the champion's row and the candidate's
    online shadow row (same request_id). An output is None when its row holds an error."""

    champion_output: str | None
    candidate_output: str | None
    champion_ms: float
    candidate_ms: float


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One logged request: its id, input text, true label if known, and the online pair
    when the candidate already answered it in online shadow (then it needs no replay)."""

    request_id: str
    text: str
    label: str | None = None
    online: OnlinePair | None = None


@dataclass(slots=True)
class ChunkCounts:
    """What a replayed chunk contributes; all counts, so chunks merge by addition.

    agree: both answered and gave the same answer (over `both_answered`); per_intent:
    champion's answer -> [requests both answered, of which agreed]; correct_table:
    [[both right, only champion right], [only candidate right, both wrong]] on labelled
    requests both answered. online / replayed: how many of the `n` requests came from
    the online shadow rows and how many were replayed.
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
    online: int = 0
    replayed: int = 0

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
        self.online += other.online
        self.replayed += other.replayed

    def count_pair(self, label: str | None, champion: str | None, candidate: str | None) -> None:
        """Count one request's two answers (None: that model failed on it)."""
        self.n += 1
        self.champion_errors += champion is None
        self.candidate_errors += candidate is None
        if champion is None or candidate is None:
            return
        self.both_answered += 1
        same = champion == candidate
        self.agree += same
        slot = self.per_intent.setdefault(champion, [0, 0])
        slot[0] += 1
        slot[1] += same
        if label is not None:
            self.labelled += 1
            self.correct_table[champion != label][candidate != label] += 1


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
class ShadowSampling:
    """How much recent traffic to replay: the window, the sample, the chunk size, and how
    many requests to time one by one (Settings SHADOW_*, each overridable per run)."""

    window_hours: float
    sample_size: int
    batch_size: int
    latency_sample: int = 200

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        window_hours: float | None = None,
        sample_size: int | None = None,
        batch_size: int | None = None,
        latency_sample: int = 200,
    ) -> ShadowSampling:
        """SHADOW_WINDOW_HOURS, SHADOW_SAMPLE_SIZE, SHADOW_BATCH_SIZE unless given."""
        return cls(
            window_hours=settings.SHADOW_WINDOW_HOURS if window_hours is None else window_hours,
            sample_size=settings.SHADOW_SAMPLE_SIZE if sample_size is None else sample_size,
            batch_size=settings.SHADOW_BATCH_SIZE if batch_size is None else batch_size,
            latency_sample=latency_sample,
        )


# --- sampling --------------------------------------------------------------------------


def sample_requests(
    engine: Engine,
    *,
    env: str,
    model_name: str,
    window_hours: float,
    sample_size: int,
    now: datetime,
    champion_version: str | None = None,
    candidate_version: str | None = None,
) -> list[ReplayRequest]:
    """A random sample of requests served in `env` for `model_name` in the last window.

    One row per request (champion- or candidate-arm rows; shadow and fallback duplicates
    excluded), with the newest `label` feedback when there is one. With both versions
    given, a request served by the champion version that also has the candidate
    version's online shadow row carries that pair (`ReplayRequest.online`), joined in
    SQL: no other traffic row leaves the database.

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
        bindparam("champion_version", type_=String()),
        bindparam("candidate_version", type_=String()),
    )
    params = {
        "champion_version": champion_version,
        "candidate_version": candidate_version,
        "env": env,
        "model_name": model_name,
        "since": now - timedelta(hours=window_hours),
        "until": now,
        "limit": sample_size,
    }
    with engine.connect() as conn:
        rows = conn.execute(statement, params).all()
    return [
        ReplayRequest(str(r.request_id), str(r.input_text), r.label, _online_pair(r)) for r in rows
    ]


def _online_pair(row: Any) -> OnlinePair | None:
    """The row's online pair, None without a shadow row; an errored row answers None."""
    if row.shadow_id is None:
        return None

    def answer(output: str | None, error: str | None) -> str | None:
        return None if error is not None or output is None else str(output)

    return OnlinePair(
        champion_output=answer(row.champion_output, row.champion_error),
        candidate_output=answer(row.shadow_output, row.shadow_error),
        champion_ms=float(row.champion_ms),
        candidate_ms=float(row.shadow_ms),
    )


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
        replayed=len(chunk), champion_seconds=champ_seconds, candidate_seconds=cand_seconds
    )
    for request, a, b in zip(chunk, champ_out, cand_out, strict=True):
        counts.count_pair(request.label, a, b)
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
