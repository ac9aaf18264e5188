"""Training data checks, snapshot hashing and the window/holdout split."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from core.errors import DataError
from models.intent_classifier import INTENT_LABELS
from models.training import snapshot_digest, split_for_training, validate_training_frame
from tests.factories import DATA_END, training_frame


def test_validate_training_frame_accepts_synthetic_data() -> None:
    validate_training_frame(training_frame(), INTENT_LABELS)


def test_validate_training_frame_empty_refused() -> None:
    with pytest.raises(DataError, match="training data is empty"):
        validate_training_frame(training_frame().iloc[0:0], INTENT_LABELS)


def test_validate_training_frame_one_class_refused() -> None:
    frame = training_frame()
    frame = frame[frame["intent"] == "card_lost"]
    with pytest.raises(DataError, match=r"single class \('card_lost'\)"):
        validate_training_frame(frame, INTENT_LABELS)


def test_validate_training_frame_unknown_labels_listed() -> None:
    frame = training_frame()
    frame.loc[frame.index[:3], "intent"] = ["buy_crypto", "buy_crypto", "weather"]
    with pytest.raises(DataError, match=r"2 unknown label\(s\): 'buy_crypto', 'weather'"):
        validate_training_frame(frame, INTENT_LABELS)


def test_validate_training_frame_missing_column_refused() -> None:
    with pytest.raises(DataError, match="misses column"):
        validate_training_frame(training_frame().drop(columns=["intent"]), INTENT_LABELS)


def test_snapshot_digest_ignores_row_order_but_not_content() -> None:
    frame = training_frame()
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert snapshot_digest(frame) == snapshot_digest(shuffled)
    changed = frame.copy()
    changed.loc[changed.index[0], "text"] = "something else"
    assert snapshot_digest(changed) != snapshot_digest(frame)


def test_split_for_training_respects_window_and_recent_holdout() -> None:
    frame = training_frame()
    split = split_for_training(frame, window_days=30, holdout_days=7, holdout_fraction=0.5, seed=3)
    created = pd.to_datetime(split.train["created_at"], utc=True)
    assert created.min() > DATA_END - timedelta(days=31)
    holdout_times = pd.to_datetime(split.holdout["created_at"], utc=True)
    assert holdout_times.min() > DATA_END - timedelta(days=8)
    assert set(split.train["query_id"]).isdisjoint(split.holdout["query_id"])
    assert split.window_label.endswith("2026-10-31")


def test_split_for_training_same_seed_same_holdout_across_windows() -> None:
    frame = training_frame()
    a = split_for_training(frame, window_days=None, holdout_days=21, holdout_fraction=0.5, seed=0)
    b = split_for_training(frame, window_days=30, holdout_days=21, holdout_fraction=0.5, seed=0)
    assert a.holdout["query_id"].tolist() == b.holdout["query_id"].tolist()
    assert a.window_label.startswith("all..")


def test_split_for_training_empty_window_refused() -> None:
    frame = training_frame()
    old = frame[pd.to_datetime(frame["created_at"], utc=True) < DATA_END - timedelta(days=100)]
    with pytest.raises(DataError, match="no training rows in the last 5 days"):
        split_for_training(
            old,
            window_days=5,
            holdout_days=5,
            holdout_fraction=0.99,
            seed=0,
            end=DATA_END,
        )
