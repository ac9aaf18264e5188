"""Stage figures are SQL in the database: same answers on SQLite and Postgres as numpy's,
exactly (`exact=True`) or from the rollups (counts exact, p95 within 1%, over_relative
never above the exact count)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from core.analysis import stage_figures
from core.db import Feedback, Traffic, utcnow

MODEL = "intent-classifier"


def _rows(
    rollout_id: int,
    role: str,
    latencies: list[float],
    start,
    *,
    errors: int = 0,
    model_name: str = MODEL,
):
    return [
        {
            "request_id": f"{role[:2]}-{rollout_id}-{i}",
            "ts": start + timedelta(milliseconds=i),
            "env": "dev",
            "user_id": f"u{i}",
            "rollout_id": rollout_id,
            "model_name": model_name,
            "model_version": "2" if role == "candidate" else "1",
            "role": role,
            "input_text": "hello",
            "output": "greet",
            "latency_ms": lat,
            "error": "boom" if i < errors else None,
        }
        for i, lat in enumerate(latencies)
    ]


EXACT = pytest.mark.parametrize("exact", [True, False], ids=["exact", "rollups"])


def _close(value: float | None, expected: float, exact: bool) -> bool:
    """Exact: to the last digit; rollups: within the histogram's 1% bin."""
    assert value is not None
    return value == pytest.approx(expected, rel=1e-9 if exact else 0.01)


@EXACT
def test_stage_figures_match_numpy_on_both_backends(engine: Engine, exact: bool) -> None:
    rng = np.random.default_rng(7)
    start = utcnow() - timedelta(minutes=5)
    champ = rng.lognormal(3.0, 0.4, size=501).round(3).tolist()
    cand = rng.lognormal(3.5, 0.4, size=37).round(3).tolist()
    rows = _rows(1, "champion", champ, start, errors=4) + _rows(
        1, "candidate", cand, start, errors=3
    )
    # a candidate failure answered by the champion: not counted for the champion arm
    rows += [dict(rows[-1], role="fallback", request_id="ca-1-0", latency_ms=999.0, error=None)]
    # other rollouts and roles, and rows outside the window, are ignored
    rows += _rows(2, "champion", [5000.0] * 10, start)
    rows += _rows(1, "shadow", [5000.0] * 10, start)
    rows += _rows(1, "champion", [5000.0] * 10, start - timedelta(hours=2))
    feedback = [
        {
            "request_id": "ca-1-0",
            "ts": start + timedelta(minutes=1),
            "kind": "thumbs",
            "value": "down",
        },
        {
            "request_id": "ca-1-0",
            "ts": start + timedelta(minutes=1),
            "kind": "thumbs",
            "value": "down",
        },
        {
            "request_id": "ca-1-1",
            "ts": start + timedelta(minutes=1),
            "kind": "thumbs",
            "value": "up",
        },
        {
            "request_id": "ch-1-5",
            "ts": start + timedelta(minutes=1),
            "kind": "thumbs",
            "value": "down",
        },
        {
            "request_id": "ch-1-6",
            "ts": start + timedelta(minutes=1),
            "kind": "label",
            "value": "down",
        },
    ]
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
        conn.execute(insert(Feedback), feedback)

    figures = stage_figures(
        engine,
        1,
        model_name=MODEL,
        since=start,
        until=utcnow(),
        latency_limit_ms=40.0,
        p95_margin=0.5,
        exact=exact,
    )

    assert figures.champion.n == 501
    assert figures.champion.errors == 4
    assert _close(figures.champion.p95_ms, np.percentile(champ, 95), exact)
    assert figures.candidate.n == 37
    assert figures.candidate.errors == 3
    assert _close(figures.candidate.p95_ms, np.percentile(cand, 95), exact)
    assert figures.champion.over_limit == int((np.array(champ) > 40.0).sum())
    threshold = np.percentile(champ, 95) * 1.5
    over = int((np.array(cand) > threshold).sum())
    assert figures.relative_threshold_ms is not None
    if exact:
        assert figures.relative_threshold_ms == pytest.approx(threshold)
        assert figures.candidate.over_relative == over
    else:  # an upper bound of the threshold, so never more requests above it
        assert threshold <= figures.relative_threshold_ms <= threshold * 1.021
        assert figures.candidate.over_relative <= over
    assert figures.candidate.negative_feedback == 1
    assert figures.champion.negative_feedback == 1
    assert figures.as_dict()["candidate"]["error_rate"] == pytest.approx(3 / 37, abs=1e-6)


@EXACT
def test_stage_figures_empty_window_returns_zero_arms(engine: Engine, exact: bool) -> None:
    now = utcnow()
    figures = stage_figures(
        engine,
        99,
        model_name=MODEL,
        since=now - timedelta(minutes=1),
        until=now,
        latency_limit_ms=250,
        p95_margin=0.5,
        exact=exact,
    )
    assert figures.champion.n == 0
    assert figures.candidate.p95_ms is None
    assert figures.relative_threshold_ms is None
    assert figures.candidate.error_rate == 0.0


@EXACT
@pytest.mark.parametrize("size", [1, 2, 20, 21])
def test_stage_figures_p95_small_samples_interpolate_like_percentile_cont(
    engine: Engine, size: int, exact: bool
) -> None:
    start = utcnow() - timedelta(minutes=1)
    latencies = [float(v) for v in range(size, 0, -1)]
    with engine.begin() as conn:
        conn.execute(insert(Traffic), _rows(3, "champion", latencies, start))
    figures = stage_figures(
        engine,
        3,
        model_name=MODEL,
        since=start,
        until=utcnow(),
        latency_limit_ms=250,
        p95_margin=0.5,
        exact=exact,
    )
    assert _close(figures.champion.p95_ms, float(np.percentile(latencies, 95)), exact)


def test_stage_figures_naive_time_is_refused(engine: Engine) -> None:
    naive = utcnow().replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        stage_figures(
            engine,
            1,
            model_name=MODEL,
            since=naive,
            until=naive,
            latency_limit_ms=1,
            p95_margin=0,
        )


@EXACT
def test_stage_figures_count_a_bundle_request_once_on_its_lead_rows(
    engine: Engine, exact: bool
) -> None:
    """A /answer request of a bundle writes one row per model, all with the bundle's
    rollout id: only the lead's rows are judged, so each request counts once, and the
    member's own errors, latencies and feedback joins do not count twice."""
    start = utcnow() - timedelta(minutes=2)
    lead = _rows(5, "champion", [10.0] * 20, start) + _rows(
        5, "candidate", [30.0] * 10, start, errors=2
    )
    member = [
        dict(row, model_name="faq-retriever", latency_ms=row["latency_ms"] * 100, error="slow")
        for row in lead
    ]
    feedback = [
        {"request_id": "ca-5-3", "ts": start + timedelta(minutes=1), "kind": "thumbs",
         "value": "down"},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Traffic), lead + member)
        conn.execute(insert(Feedback), feedback)

    figures = stage_figures(
        engine, 5, model_name=MODEL, since=start, until=utcnow(), latency_limit_ms=25.0,
        p95_margin=0.5, exact=exact,
    )  # fmt: skip
    assert (figures.champion.n, figures.candidate.n) == (20, 10)
    assert (figures.champion.errors, figures.candidate.errors) == (0, 2)
    assert _close(figures.champion.p95_ms, 10.0, exact)
    assert _close(figures.candidate.p95_ms, 30.0, exact)
    assert (figures.champion.over_limit, figures.candidate.over_limit) == (0, 10)
    assert figures.candidate.over_relative == 10
    assert figures.candidate.negative_feedback == 1
    member_view = stage_figures(
        engine, 5, model_name="faq-retriever", since=start, until=utcnow(),
        latency_limit_ms=25.0, p95_margin=0.5, exact=exact,
    )  # fmt: skip
    assert member_view.candidate.errors == 10  # the member's rows are there, just not judged
