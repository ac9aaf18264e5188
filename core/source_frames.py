"""The canonical shapes of what the source readers return, and their validation.

Pure pandas (no database): `core.source` reads the tables over SQL or Supabase REST and
hands the frames here. Re-exported from `core.source`, where callers import them.
"""

from __future__ import annotations

import pandas as pd

from core.errors import DataError

#: The columns every queries reader returns, in this order.
QUERY_COLUMNS: tuple[str, ...] = ("query_id", "text", "intent", "created_at")
#: The columns the FAQ answers reader returns, in this order.
ANSWER_COLUMNS: tuple[str, ...] = ("answer_id", "intent", "text")


def empty_queries_frame() -> pd.DataFrame:
    """An empty queries frame with the canonical columns and dtypes."""
    return pd.DataFrame(
        {
            "query_id": pd.Series([], dtype="str"),
            "text": pd.Series([], dtype="str"),
            "intent": pd.Series([], dtype="str"),
            "created_at": pd.Series([], dtype="datetime64[ns, UTC]"),
        }
    )


def validate_queries(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Check a frame read from the source and return it in the canonical shape.

    The result has exactly the columns `query_id, text, intent, created_at`
    (created_at timezone-aware UTC), sorted by (created_at, query_id).

    Raises:
        DataError: a required column is missing, or a row has an empty id, text or
            intent, a missing or unparsable timestamp, or a duplicate id.
    """
    missing = [c for c in QUERY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        return empty_queries_frame()
    out = frame.loc[:, list(QUERY_COLUMNS)].copy()
    for column in ("query_id", "text", "intent"):
        values = out[column]
        bad = values.isna() | (values.astype(str).str.strip() == "")
        if bad.any():
            first = out.loc[bad, "query_id"].iloc[0]
            raise DataError(
                f"{origin}: {int(bad.sum())} row(s) with an empty {column} "
                f"(first query_id: {first!r})"
            )
        out[column] = values.astype("str")
    try:
        created = pd.to_datetime(out["created_at"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{origin}: created_at holds a value that is not a timestamp") from exc
    if created.isna().any():
        raise DataError(f"{origin}: {int(created.isna().sum())} row(s) without created_at")
    out["created_at"] = created.astype("datetime64[ns, UTC]")
    duplicated = out["query_id"].duplicated()
    if duplicated.any():
        first = out.loc[duplicated, "query_id"].iloc[0]
        raise DataError(f"{origin}: duplicate query_id {first!r}")
    return out.sort_values(["created_at", "query_id"], kind="stable").reset_index(drop=True)


def validate_faq_answers(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """The FAQ answers as `answer_id, intent, text` (str), sorted by answer_id.

    Raises:
        DataError: a column is missing, the table is empty, or a row has an empty
            field or a duplicate id.
    """
    missing = [c for c in ANSWER_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{origin} holds no answers; fill it with `python create_data.py`")
    out = frame.loc[:, list(ANSWER_COLUMNS)].copy()
    for column in ANSWER_COLUMNS:
        bad = out[column].isna() | (out[column].astype(str).str.strip() == "")
        if bad.any():
            raise DataError(f"{origin}: {int(bad.sum())} row(s) with an empty {column}")
        out[column] = out[column].astype("str")
    duplicated = out["answer_id"].duplicated()
    if duplicated.any():
        raise DataError(
            f"{origin}: duplicate answer_id {out.loc[duplicated, 'answer_id'].iloc[0]!r}"
        )
    return out.sort_values("answer_id", kind="stable").reset_index(drop=True)
