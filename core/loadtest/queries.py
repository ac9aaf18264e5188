"""What the load test replays: the most recent production queries of a model."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from core.db import Traffic


def recent_queries(engine: Engine, *, env: str, model_name: str, limit: int) -> list[str]:
    """The input texts of the `limit` most recent requests the champion answered for users
    of `env` (`role='champion'` rows: one per request the champion served; replays and
    fallbacks are left out), newest first."""
    query = (
        select(Traffic.input_text)
        .where(
            Traffic.env == env,
            Traffic.model_name == model_name,
            Traffic.role == "champion",
        )
        .order_by(Traffic.ts.desc(), Traffic.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return replayable(str(text) for text in conn.scalars(query))


def replayable(texts: Iterable[str]) -> list[str]:
    """The texts a router accepts as requests: blank ones (which it refuses with 422, and
    which a model's golden inputs include on purpose) are left out."""
    return [text for text in texts if text.strip()]
