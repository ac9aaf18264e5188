"""Behaviour metrics (reformulation, hand-off, abandonment) are SQL over the traffic log:
the same counts on SQLite and Postgres as a hand count of a small, exact history."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from core.analysis import stage_figures
from core.behaviour import BehaviourWindows
from core.db import Feedback, Traffic, utcnow

MODEL = "intent-classifier"
WINDOWS = BehaviourWindows(followup_seconds=60, abandonment_seconds=300, handoff_labels=("agent",))


def _row(
    request_id: str,
    ts: datetime,
    user: str | None,
    role: str = "champion",
    *,
    output: str = "balance",
    model_name: str = MODEL,
    rollout_id: int = 1,
) -> dict[str, object]:
    return {
        "request_id": request_id,
        "ts": ts,
        "env": "dev",
        "user_id": user,
        "rollout_id": rollout_id,
        "model_name": model_name,
        "model_version": "2" if role == "candidate" else "1",
        "role": role,
        "input_text": "q",
        "output": output,
        "latency_ms": 3.0,
        "error": None,
    }


def _figures(engine: Engine, since: datetime, until: datetime, windows=WINDOWS):
    return stage_figures(
        engine,
        1,
        model_name=MODEL,
        since=since,
        until=until,
        latency_limit_ms=250.0,
        p95_margin=0.5,
        behaviour=windows,
    )


def test_behaviour_counts_follow_each_user_on_both_backends(engine: Engine) -> None:
    until = utcnow()
    t0 = until - timedelta(minutes=30)
    s = timedelta(seconds=1)
    rows = [
        # champion: u1 asks again after 20 s (a reformulation), then leaves (abandoned)
        _row("c1", t0, "u1"),
        _row("c2", t0 + 20 * s, "u1"),
        # u2's next query comes 2 minutes later (not a reformulation; not abandoned)
        _row("c3", t0, "u2"),
        _row("c4", t0 + 120 * s, "u2"),
        # u3 asks for a person 10 s after the answer: a reformulation and a hand-off
        _row("c5", t0, "u3"),
        _row("c6", t0 + 10 * s, "u3", output="agent"),
        # no user id: served, but not followed
        _row("c7", t0, None),
        # candidate: u4 answered, thumbs within 5 minutes (not abandoned), no next query
        _row("k1", t0, "u4", "candidate"),
        # u5 asks again after 30 s (an /answer request: a retriever row too, not counted
        # here: the rollout is judged on its lead model's rows)
        _row("k2", t0, "u5", "candidate"),
        _row("k3", t0 + 30 * s, "u5", "candidate"),
        _row("k3", t0 + 30 * s, "u5", "candidate", model_name="faq-retriever", output="a1"),
        # too recent: inside both windows, not counted yet (censored)
        _row("k4", until - 30 * s, "u6", "candidate"),
        # other rollouts, shadow rows and fallback rows are not answers of this rollout
        _row("x1", t0 + 5 * s, "u4", "candidate", rollout_id=2),
        _row("x2", t0 + 5 * s, "u4", "shadow"),
    ]
    feedback = [{"request_id": "k1", "ts": t0 + 240 * s, "kind": "thumbs", "value": "up"}]
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
        conn.execute(insert(Feedback), feedback)

    figures = _figures(engine, t0 - s, until)
    champ, cand = figures.champion, figures.candidate
    # champion answers followed: c1..c6 (c7 has no user); reformulated: c1, c5; hand-off: c5
    assert (champ.n, champ.followup_n, champ.reformulations, champ.handoffs) == (7, 6, 2, 1)
    # abandoned: c2 (last of u1), c4 (last of u2), c6 (last of u3)
    assert (champ.abandonment_n, champ.abandonments) == (6, 3)
    # candidate: k4 is too recent for both windows; k3's next is nobody's
    assert (cand.n, cand.followup_n, cand.reformulations, cand.handoffs) == (4, 3, 1, 0)
    assert (cand.abandonment_n, cand.abandonments) == (3, 1)
    assert champ.reformulation_rate == pytest.approx(2 / 6)
    assert cand.abandonment_rate == pytest.approx(1 / 3)
    shown = figures.as_dict()["candidate"]
    assert shown["handoff_rate"] == 0.0
    assert shown["abandonment_rate"] == pytest.approx(1 / 3, abs=1e-6)


def test_handoff_is_read_from_any_model_row_of_the_next_request(engine: Engine) -> None:
    """A bundle led by the retriever: its rows hold answer ids; the classifier's row of the
    same next request names the hand-off."""
    until = utcnow()
    t0 = until - timedelta(minutes=30)
    rows = [
        _row("r1", t0, "u1", model_name="faq-retriever", output="a1"),
        _row("r2", t0 + timedelta(seconds=5), "u1", model_name="faq-retriever", output="a9"),
        _row("r2", t0 + timedelta(seconds=5), "u1", output="agent"),
    ]
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
    figures = stage_figures(
        engine, 1, model_name="faq-retriever", since=t0, until=until,
        latency_limit_ms=250.0, p95_margin=0.5, behaviour=WINDOWS,
    )  # fmt: skip
    assert (figures.champion.reformulations, figures.champion.handoffs) == (1, 1)


def test_without_windows_or_before_any_window_passes_the_rates_are_unknown(
    engine: Engine,
) -> None:
    until = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(Traffic), [_row("n1", until - timedelta(seconds=10), "u1")])
    fresh = _figures(engine, until - timedelta(minutes=1), until)
    assert fresh.champion.n == 1
    assert fresh.champion.followup_n == 0
    assert fresh.champion.reformulation_rate is None
    assert fresh.as_dict()["champion"]["abandonment_rate"] is None
    plain = stage_figures(
        engine, 1, model_name=MODEL, since=until - timedelta(minutes=1), until=until,
        latency_limit_ms=250.0, p95_margin=0.5,
    )  # fmt: skip
    assert plain.champion.abandonment_n == 0


def test_windows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        BehaviourWindows(followup_seconds=0, abandonment_seconds=300)
