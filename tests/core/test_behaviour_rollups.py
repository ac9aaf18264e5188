"""The behaviour rollups give the controller the same counts as every row would, on both
backends: ticks over a history that grows, rows and feedback that arrive minutes late,
windows that change, a crash in the middle of a refresh, two controllers at once; and a
tick follows only the rows of the stage's edges."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select

import core.behaviour_rollups as behaviour_rollups
from core.analysis import stage_figures
from core.behaviour import BehaviourCounts, BehaviourWindows
from core.behaviour_rollups import minute_of, refresh_behaviour, window_seconds
from core.db import Feedback, Traffic
from core.db.models import BehaviourMark, BehaviourRollup
from core.rollups import safe_bounds

LEAD = "intent-classifier"
OTHER = "faq-retriever"
WINDOWS = BehaviourWindows(followup_seconds=30, abandonment_seconds=90, handoff_labels=("agent",))
T0 = datetime(2026, 11, 1, 9, 0, 17, 250_000, tzinfo=UTC)  # mid-minute on purpose
MINUTES = 40
FIELDS = tuple(asdict(BehaviourCounts()))


def _row(request_id: str, ts: datetime, user: str | None, role: str, **kw: Any) -> dict[str, Any]:
    return {
        "request_id": request_id, "ts": ts, "env": "prd", "user_id": user,
        "rollout_id": kw.get("rollout_id", 1), "model_name": kw.get("model_name", LEAD),
        "model_version": "2" if role == "candidate" else "1", "role": role,
        "input_text": "q", "output": kw.get("output", "balance"), "latency_ms": 3.0,
        "error": None,
    }  # fmt: skip


def _history(
    seed: int, minutes: float = MINUTES, users: int = 25
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """~40 minutes of 24 sticky users (and one without an id): gaps around both windows,
    hand-offs named by the lead row or only by the other model's row of the request,
    feedback before and after the abandonment window, another rollout's rows between."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for u in range(users):
        user = None if u == users - 1 else f"u{u}"
        role = "candidate" if u % 2 else "champion"
        ts = T0 + timedelta(seconds=rng.uniform(0, 120))
        n = 0
        while ts < T0 + timedelta(minutes=minutes):
            rid = f"{u}-{n}"
            lead_output = "agent" if rng.random() < 0.1 else "balance"
            rows.append(_row(rid, ts, user, role, output=lead_output))
            if rng.random() < 0.3:  # a bundle: the other model's row of the same request
                other = "agent" if rng.random() < 0.3 else "a1"
                rows.append(_row(rid, ts, user, role, model_name=OTHER, output=other))
            if rng.random() < 0.2:
                delay = rng.choice((10, 80, 200))
                feedback.append({"request_id": rid, "ts": ts + timedelta(seconds=delay),
                                 "kind": "thumbs", "value": "down"})  # fmt: skip
            if rng.random() < 0.05:
                rows.append(_row(f"x{rid}", ts, user, "candidate", rollout_id=2))
            ts += timedelta(seconds=rng.choice((4, 12, 29, 31, 45, 89, 91, 150, 400)))
            n += 1
    return rows, feedback


def _arrived(items: list[dict[str, Any]], lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    return [r for r in items if lo <= r["ts"] < hi]


def _log(engine: Engine, rows: list[dict[str, Any]], feedback: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        if rows:
            conn.execute(insert(Traffic), rows)
        if feedback:
            conn.execute(insert(Feedback), feedback)


def _counts(engine: Engine, since: datetime, until: datetime, *, exact: bool,
            windows: BehaviourWindows = WINDOWS) -> dict[str, tuple[int, ...]]:  # fmt: skip
    figures = stage_figures(
        engine, 1, model_name=LEAD, since=since, until=until, latency_limit_ms=250.0,
        p95_margin=0.5, behaviour=windows, exact=exact,
    )  # fmt: skip
    return {
        arm: tuple(getattr(getattr(figures, arm), f) for f in FIELDS)
        for arm in ("champion", "candidate")
    }


def _assert_same(engine: Engine, until: datetime, windows: BehaviourWindows = WINDOWS) -> None:
    """Stages of several starts (whole minutes, mid-minute, the rollout's start) ending at
    `until` count the same from the rollups as from every row."""
    for since in (T0 - timedelta(seconds=1), T0 + timedelta(minutes=3, seconds=20.5),
                  until - timedelta(minutes=12), until - timedelta(seconds=100)):  # fmt: skip
        if since < until:
            rolled = _counts(engine, since, until, exact=False, windows=windows)
            assert rolled == _counts(engine, since, until, exact=True, windows=windows), since


def _rolled_up(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        sums = conn.execute(
            select(func.count(), *(func.sum(getattr(BehaviourRollup, f)) for f in FIELDS))
        ).one()
    return {"rows": sums[0], **{f: int(v or 0) for f, v in zip(FIELDS, sums[1:], strict=True)}}


def test_ticks_over_a_growing_history_count_as_every_row_does(engine: Engine) -> None:
    rows, feedback = _history(seed=5)
    previous = T0 - timedelta(minutes=1)
    for minutes in (4, 9.5, 17, 23.25, 31, 41, 47):
        until = T0 + timedelta(minutes=minutes)
        _log(engine, _arrived(rows, previous, until), _arrived(feedback, previous, until))
        previous = until
        _assert_same(engine, until)
    held = _rolled_up(engine)
    # not vacuous: most of the history was read from rollups, with every kind of outcome
    assert held["rows"] > 60
    assert min(held["reformulations"], held["handoffs"], held["abandonments"]) > 0
    assert held["followup_n"] > 300


def test_stages_over_hours_read_hour_rollups_that_follow_their_minutes(engine: Engine) -> None:
    """Over 2.5 hours the whole hours come from hour rows (each the sum of its minutes,
    also after late rows recount some of them), and every count is still exact."""
    rows, feedback = _history(seed=31, minutes=150, users=9)
    until = T0 + timedelta(minutes=100)
    _log(engine, rows_until(rows, until), _arrived(feedback, T0 - timedelta(minutes=1), until))
    _assert_same(engine, until)
    late_ts = T0 + timedelta(minutes=30, seconds=50)  # in the first whole hour
    late = [_row("late-h1", late_ts, "u0", "champion"),
            _row("late-h2", late_ts + timedelta(seconds=15), "u0", "champion")]  # fmt: skip
    _log(engine, late + [r for r in rows if r["ts"] >= until],
         _arrived(feedback, until, T0 + timedelta(hours=3)))  # fmt: skip
    final = T0 + timedelta(minutes=160)
    _assert_same(engine, final)
    for since in (T0 - timedelta(seconds=1), T0 + timedelta(minutes=42, seconds=7)):
        assert _counts(engine, since, final, exact=False) == _counts(
            engine, since, final, exact=True
        )
    with engine.connect() as conn:
        spans = dict(conn.execute(
            select(BehaviourRollup.span_minutes, func.count()).group_by(
                BehaviourRollup.span_minutes)
        ).all())  # fmt: skip
        hours = conn.execute(
            select(BehaviourRollup.role, BehaviourRollup.minute, BehaviourRollup.followup_n,
                   BehaviourRollup.abandonments)
            .where(BehaviourRollup.span_minutes == 60)
        ).all()  # fmt: skip
        for role, first, followup_n, abandonments in hours:
            summed = conn.execute(
                select(func.sum(BehaviourRollup.followup_n),
                       func.sum(BehaviourRollup.abandonments))
                .where(BehaviourRollup.span_minutes == 1, BehaviourRollup.role == role,
                       BehaviourRollup.minute >= first, BehaviourRollup.minute < first + 60)
            ).one()  # fmt: skip
            assert (followup_n, abandonments) == tuple(summed), (role, first)
    assert spans[60] >= 4  # 2+ hours x 2 arms
    assert spans[1] > 200


def test_rows_and_feedback_that_arrive_minutes_late_are_counted(engine: Engine) -> None:
    rows, feedback = _history(seed=9)
    until = T0 + timedelta(minutes=30)
    # answers at the end of a minute whose next request is in the next one
    edge = T0.replace(second=0, microsecond=0) + timedelta(minutes=6, seconds=50)
    crossing = [
        _row("edge-a", edge, "edge-1", "champion"),
        _row("edge-b", edge + timedelta(seconds=20), "edge-1", "champion"),
        _row("edge-c", edge + timedelta(minutes=6, seconds=5), "edge-2", "candidate"),
    ]
    _log(engine, _arrived(rows, T0 - timedelta(minutes=1), until) + crossing, [])
    _assert_same(engine, until)
    before = _rolled_up(engine)
    # A router's spilled batch replayed 20 minutes late: the other model's row naming a
    # hand-off for a request whose previous answer is a minute earlier; a user's quick
    # second question a minute after the answer (a reformulation now); a new user's
    # answers; an earlier answer asked again.
    late = [
        _row("edge-b", edge + timedelta(seconds=20), "edge-1", "champion", model_name=OTHER,
             output="agent"),
        _row("edge-d", edge + timedelta(minutes=6, seconds=25), "edge-2", "candidate"),
    ]  # fmt: skip
    old = T0 + timedelta(minutes=18, seconds=3)
    late += [
        _row("late-1", old, "late-user", "champion"),
        _row("late-2", old + timedelta(seconds=10), "late-user", "champion"),
        _row("late-3", old + timedelta(seconds=20), "late-user", "champion"),
    ]
    answered = next(r for r in rows if r["ts"] > old and r["model_name"] == LEAD and r["user_id"])
    late.append(_row(answered["request_id"] + "-again", answered["ts"] + timedelta(seconds=5),
                     answered["user_id"], answered["role"]))  # fmt: skip
    _log(engine, late, [])
    later = until + timedelta(minutes=1)
    _assert_same(engine, later)
    after = _rolled_up(engine)
    assert after["followup_n"] > before["followup_n"]  # the late answers were counted
    assert after["handoffs"] > before["handoffs"]
    # then every thumbs so far, minutes after the answers they are about
    _log(engine, [], _arrived(feedback, T0 - timedelta(minutes=1), until))
    _assert_same(engine, later + timedelta(seconds=5))
    assert _rolled_up(engine)["abandonments"] < after["abandonments"]


def test_other_windows_or_labels_count_again_from_the_rows(engine: Engine) -> None:
    rows, feedback = _history(seed=13)
    until = T0 + timedelta(minutes=35)
    _log(engine, rows_until(rows, until), _arrived(feedback, T0 - timedelta(minutes=1), until))
    _assert_same(engine, until)
    wider = BehaviourWindows(followup_seconds=100, abandonment_seconds=130, handoff_labels=())
    _assert_same(engine, until, windows=wider)
    with engine.connect() as conn:
        marks = conn.execute(select(BehaviourMark.followup_seconds)).scalars().all()
    assert marks == [100.0]
    _assert_same(engine, until + timedelta(minutes=2))


def rows_until(rows: list[dict[str, Any]], until: datetime) -> list[dict[str, Any]]:
    return [r for r in rows if r["ts"] < until]


def test_a_refresh_that_dies_midway_leaves_rollups_and_mark_as_they_were(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, feedback = _history(seed=17)
    until = T0 + timedelta(minutes=30)
    _log(engine, rows_until(rows, until), _arrived(feedback, T0 - timedelta(minutes=1), until))
    real = behaviour_rollups.answer_counts
    calls: list[int] = []

    def dies_on_the_third_chunk(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the controller's pod was killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(behaviour_rollups, "CHUNK_MINUTES", 5)
    monkeypatch.setattr(behaviour_rollups, "answer_counts", dies_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        refresh_behaviour(engine, rollout_id=1, model_name=LEAD, windows=WINDOWS, now=until,
                          bounds=safe_bounds(engine))  # fmt: skip
    assert _rolled_up(engine)["rows"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(BehaviourMark)).scalar_one() == 0
    monkeypatch.setattr(behaviour_rollups, "answer_counts", real)
    _assert_same(engine, until)
    assert _rolled_up(engine)["rows"] > 0


@pytest.mark.postgres
def test_two_controllers_refreshing_at_once_count_each_minute_once(postgres_url: str) -> None:
    from core.db import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        rows, feedback = _history(seed=21)
        until = T0 + timedelta(minutes=40)
        _log(engine, rows_until(rows, until), _arrived(feedback, T0 - timedelta(minutes=1), until))
        start = threading.Barrier(2)
        horizons: list[int | None] = []

        def controller() -> None:
            start.wait()
            horizons.append(refresh_behaviour(
                engine, rollout_id=1, model_name=LEAD, windows=WINDOWS, now=until,
                bounds=safe_bounds(engine),
            ))  # fmt: skip

        threads = [threading.Thread(target=controller) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert horizons[0] == horizons[1] == minute_of(until - timedelta(seconds=90))
        _assert_same(engine, until)
    finally:
        engine.dispose()


def test_a_tick_follows_only_the_rows_at_the_stage_edges(engine: Engine) -> None:
    """After the rollups caught up, a tick over a 40-minute stage reads the users' rows of
    its head minute and of the last windows only: O(minutes), not O(rows)."""
    rows, feedback = _history(seed=25)
    until = T0 + timedelta(minutes=45)
    _log(engine, rows, feedback)
    since = T0 + timedelta(seconds=2.5)
    _counts(engine, since, until - timedelta(minutes=1), exact=False)  # the catch-up
    spans: list[tuple[datetime, datetime]] = []

    def record(conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
        if "LEAD(ts)" in str(clause):
            bound = params or (multiparams[0] if multiparams else {})
            spans.append((bound["since"], bound["until"]))

    event.listen(engine, "before_execute", record)
    try:
        _counts(engine, since, until, exact=False)
    finally:
        event.remove(engine, "before_execute", record)
    reach = timedelta(seconds=window_seconds(WINDOWS)) + timedelta(minutes=2)
    assert spans, "the behaviour statements were not seen"
    for lo, hi in spans:
        assert hi - lo <= reach, (lo, hi)
