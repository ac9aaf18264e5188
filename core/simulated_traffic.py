"""Simulated models and users, and their traffic as real rows (`write_simulated_traffic`).

`Arm` says how one model behaves (errors, latency, thumbs) and how its users behave after
an answer (reformulation, hand-off, abandonment). `core.simulation` draws from it in bulk
for its vectorised rollouts; `write_simulated_traffic` writes one stage's requests as the
router would (traffic and feedback rows), so the real SQL analysis, the behaviour
statement and the reconciler can be driven on real rows in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Engine, insert

from core.db import Feedback, Traffic
from core.ledger import RolloutRecord

# Simulated users' quick next query (write_simulated_traffic): this long after the answer,
# classified as the intent classifier's hand-off label for a hand-off.
FOLLOWUP_GAP_SECONDS = 5.0
HANDOFF_LABEL = "talk_to_agent"


@dataclass(frozen=True, slots=True)
class Arm:
    """How one model behaves, and how its users behave after an answer.

    error_rate, negative_feedback_rate: per request; latency: lognormal. The behaviour
    rates are per answer, as core.behaviour measures them: reformulation (the user's next
    query comes within the follow-up window), hand-off (that next query asks for a person:
    a subset of the reformulations), abandonment (no next request and no feedback).
    """

    error_rate: float
    negative_feedback_rate: float
    latency_median_ms: float
    latency_sigma: float = 0.35
    reformulation_rate: float = 0.0
    handoff_rate: float = 0.0
    abandonment_rate: float = 0.0

    def __post_init__(self) -> None:
        """Raises ValueError when the behaviour rates cannot all hold at once."""
        if not 0 <= self.handoff_rate <= self.reformulation_rate <= 1:
            raise ValueError("expected 0 <= handoff_rate <= reformulation_rate <= 1")
        if self.abandonment_rate > (1 - self.reformulation_rate) * (
            1 - self.negative_feedback_rate
        ):
            raise ValueError("abandonment_rate above the answers with no follow-up or feedback")


def share(part: float, whole: float) -> float:
    """part / whole as a probability (0 when whole is 0)."""
    return min(part / whole, 1.0) if whole > 0 else 0.0


def write_simulated_traffic(
    engine: Engine,
    rollout: RolloutRecord,
    *,
    champion: Arm,
    candidate: Arm,
    requests: int,
    start: datetime,
    span_seconds: float,
    rng: np.random.Generator,
) -> int:
    """Write `requests` real traffic rows (and feedback) of a rollout's stage, each request
    by its own simulated user.

    Each request goes to the candidate with probability `rollout.percent / 100`, fails
    with the arm's error rate, gets a lognormal latency, and negative thumbs feedback
    with the arm's rate; timestamps spread evenly over [start, start + span). A failed
    candidate request also gets its role=fallback row, as the router writes it. Then the
    user behaves as the arm says: reformulates (a next query FOLLOWUP_GAP_SECONDS later,
    classified HANDOFF_LABEL for a hand-off; that follow-up answer gets thumbs up), or
    leaves without a word (abandonment), or else gives thumbs up. Used to drive the real
    SQL analysis and reconciler in tests and the full-path simulation.

    Returns the number of traffic rows written.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the rows cannot be inserted (nothing is written).
    """
    is_cand = rng.random(requests) < rollout.percent / 100.0
    traffic: list[dict[str, object]] = []
    feedback: list[dict[str, object]] = []
    prefix = f"sim-{rollout.id}-{rollout.stage_index}-{rng.integers(1 << 40):x}"
    for i in range(requests):
        in_candidate = bool(is_cand[i])
        arm = candidate if in_candidate else champion
        ts = start + timedelta(seconds=span_seconds * i / max(requests, 1))
        request_id = f"{prefix}-{i}"
        rows = _request_rows(
            rollout, arm, in_candidate=in_candidate, user=f"{prefix}-u{i}",
            request_id=request_id, ts=ts, rng=rng,
        )  # fmt: skip
        traffic.extend(rows)
        negative = rng.random() < arm.negative_feedback_rate
        if negative:
            feedback.append(_thumbs(request_id, ts, "down"))
        follow = _follow_up(arm, rows[0], rng)
        traffic.extend(follow)
        feedback.extend(_thumbs(str(r["request_id"]), r["ts"], "up") for r in follow)
        if not (follow or negative or _abandons(arm, rng)):
            feedback.append(_thumbs(request_id, ts, "up"))
    with engine.begin() as conn:
        if traffic:
            conn.execute(insert(Traffic), traffic)
        if feedback:
            conn.execute(insert(Feedback), feedback)
    return len(traffic)


def _thumbs(request_id: str, ts: object, value: str) -> dict[str, object]:
    """A thumbs feedback row."""
    return {"request_id": request_id, "ts": ts, "kind": "thumbs", "value": value}


def _follow_up(
    arm: Arm,
    answer: dict[str, object],
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """The user's quick next query after `answer` (a reformulation, sometimes a hand-off),
    drawn with the arm's rates: [] or one row of the same user and arm."""
    if rng.random() >= arm.reformulation_rate:
        return []
    handoff = rng.random() < share(arm.handoff_rate, arm.reformulation_rate)
    ts = answer["ts"]
    assert isinstance(ts, datetime)
    return [
        answer
        | {
            "request_id": f"{answer['request_id']}-again",
            "ts": ts + timedelta(seconds=FOLLOWUP_GAP_SECONDS),
            "output": HANDOFF_LABEL if handoff else "intent",
            "error": None,
        }
    ]


def _abandons(arm: Arm, rng: np.random.Generator) -> bool:
    """Whether a user with no follow-up and no negative thumbs leaves without a word: drawn
    so that the arm's abandonment rate is the share over all answers."""
    room = (1 - arm.reformulation_rate) * (1 - arm.negative_feedback_rate)
    return bool(rng.random() < share(arm.abandonment_rate, room))


def _request_rows(
    rollout: RolloutRecord,
    arm: Arm,
    *,
    in_candidate: bool,
    user: str,
    request_id: str,
    ts: datetime,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """The traffic rows of one simulated request by `user`: its arm's row, and the fallback
    row the router adds when a candidate request fails. Draws the failure, then the
    latency (this order: the seeded results depend on it)."""
    failed = rng.random() < arm.error_rate
    row = {
        "request_id": request_id,
        "ts": ts,
        "env": rollout.env,
        "user_id": user,
        "rollout_id": rollout.id,
        "model_name": rollout.model_name,
        "model_version": rollout.candidate_version if in_candidate else rollout.champion_version,
        "role": "candidate" if in_candidate else "champion",
        "input_text": "simulated request",
        "output": None if failed else "intent",
        "latency_ms": float(rng.lognormal(np.log(arm.latency_median_ms), arm.latency_sigma)),
        "error": "SimulatedError: failed" if failed else None,
    }
    if not (failed and in_candidate):
        return [row]
    fallback = row | {
        "role": "fallback",
        "model_version": rollout.champion_version,
        "output": "intent",
        "error": row["error"],
    }
    return [row, fallback]
