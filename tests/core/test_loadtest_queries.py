"""What the load test replays: the most recent champion queries of a model in an env, on
SQLite and on the real Postgres."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, insert

from core.db import Traffic, utcnow
from core.loadtest import recent_queries, replayable

MODEL = "intent-classifier"


def _row(i: int, *, role: str = "champion", env: str = "dev", model: str = MODEL) -> dict:
    return {
        "request_id": f"q{i}-{role}-{env}-{model}", "ts": utcnow() - timedelta(minutes=60 - i),
        "env": env, "user_id": f"u{i}", "rollout_id": None, "model_name": model,
        "model_version": "1", "role": role, "input_text": f"query {i}", "output": "x",
        "latency_ms": 3.0, "error": None,
    }  # fmt: skip


def test_recent_queries_are_the_newest_champion_rows_of_the_env_and_model(
    engine: Engine,
) -> None:
    rows = [_row(i) for i in range(10)]
    rows += [_row(20, role="shadow"), _row(21, role="fallback"), _row(22, role="candidate")]
    rows += [_row(23, env="prd"), _row(24, model="faq-retriever")]
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)

    texts = recent_queries(engine, env="dev", model_name=MODEL, limit=3)

    assert texts == ["query 9", "query 8", "query 7"]


def test_replayable_leaves_out_blank_texts() -> None:
    assert replayable(["", "  ", "hi", "???"]) == ["hi", "???"]
