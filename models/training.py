"""Training data handling shared by the text model families: validate, hash, window, split.

Every function takes and returns plain pandas frames with the source reader's columns
(`query_id, text, intent, created_at`); none of them reads a database or a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from core.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("query_id", "text", "intent", "created_at")


@dataclass(frozen=True)
class TrainingSplit:
    """Rows to fit on and rows held out for evaluation, plus the window they came from."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    window_start: datetime | None
    window_end: datetime

    @property
    def window_label(self) -> str:
        """`<start>..<end>` in ISO dates (`start` is `all` for no window)."""
        start = self.window_start.date().isoformat() if self.window_start else "all"
        return f"{start}..{self.window_end.date().isoformat()}"


def validate_training_frame(frame: pd.DataFrame, labels: Collection[str]) -> None:
    """Refuse data a classifier must not be trained on.

    Raises:
        DataError: the frame misses a column, is empty, holds labels outside `labels`
            (they are listed), holds empty texts, or has fewer than two classes.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"training data misses column(s) {', '.join(missing)}")
    if frame.empty:
        raise DataError("training data is empty: the source table has no rows to train on")
    unknown = sorted(set(frame["intent"].astype(str)) - set(labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise DataError(
            f"training data holds {len(unknown)} unknown label(s): {shown}{more}; "
            f"expected only {', '.join(sorted(labels))}"
        )
    if frame["text"].isna().any() or (frame["text"].astype(str).str.strip() == "").any():
        raise DataError("training data holds empty texts")
    classes = frame["intent"].nunique()
    if classes < 2:
        only = frame["intent"].iloc[0]
        raise DataError(
            f"training data holds a single class ({only!r}): a classifier needs at least two"
        )


def snapshot_digest(frame: pd.DataFrame) -> str:
    """A sha256 of the rows' content, independent of row order (the data snapshot hash)."""
    ordered = frame.sort_values("query_id", kind="stable")
    created = pd.to_datetime(ordered["created_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    digest = hashlib.sha256()
    for row in zip(
        ordered["query_id"].astype(str),
        ordered["text"].astype(str),
        ordered["intent"].astype(str),
        created,
        strict=True,
    ):
        digest.update("\x1f".join(row).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def split_for_training(
    frame: pd.DataFrame,
    *,
    window_days: int | None,
    holdout_days: int,
    holdout_fraction: float,
    seed: int,
    end: datetime | None = None,
) -> TrainingSplit:
    """Hold out a random share of the most recent rows, train on the window minus those.

    The holdout is a `holdout_fraction` sample (seeded) of the rows from the last
    `holdout_days` before `end` (default: the newest row), so two configurations split
    with the same seed are evaluated on the same recent rows. The training rows are the
    other rows of the last `window_days` days (all rows when `window_days` is None).

    Raises:
        DataError: if the training part is empty or holds fewer than two classes.
    """
    created = pd.to_datetime(frame["created_at"], utc=True)
    window_end = end if end is not None else created.max().to_pydatetime()
    recent = created > window_end - timedelta(days=holdout_days)
    rng = np.random.default_rng(seed)
    in_holdout = recent.to_numpy() & (rng.random(len(frame)) < holdout_fraction)
    window_start = window_end - timedelta(days=window_days) if window_days else None
    in_window = (created > window_start).to_numpy() if window_start else np.ones(len(frame), bool)
    train = frame[in_window & ~in_holdout].reset_index(drop=True)
    holdout = frame[in_holdout].reset_index(drop=True)
    if train.empty:
        raise DataError(
            f"no training rows in the last {window_days} days before {window_end:%Y-%m-%d}"
        )
    if train["intent"].nunique() < 2:
        raise DataError("the training window holds a single class: a classifier needs two")
    return TrainingSplit(train, holdout, window_start, window_end)
