"""create_data.py and core.synthetic: deterministic synthetic queries with real drift,
written idempotently."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from sqlalchemy import text

from cli.source_data import step_source_data
from config import load_settings
from core import synthetic
from core.db.engine import make_engine
from core.errors import DataError
from core.source import FAQ_TABLE, read_faq_answers, read_queries

ROOT = Path(__file__).resolve().parents[1]
END = datetime(2026, 6, 1, tzinfo=UTC)


def test_generate_queries_same_seed_gives_identical_frames() -> None:
    first = synthetic.generate_queries(500, seed=7, end=END)
    second = synthetic.generate_queries(500, seed=7, end=END)
    other = synthetic.generate_queries(500, seed=8, end=END)

    pd.testing.assert_frame_equal(first, second)
    assert set(first["query_id"]).isdisjoint(other["query_id"])


def _rows_digest(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for row in frame.itertuples(index=False):
        fields = (row.query_id, row.text, row.intent, row.created_at.isoformat())
        digest.update("\x1f".join((*fields, row.channel, row.locale)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


@pytest.mark.parametrize(
    ("seed", "rows", "days", "expected"),
    [
        (42, 2_000, 180, "87b05b03301ddb03d2f1e399b75f236f9d7d5736ae80288c2fae7c6a7b5769d8"),
        (7, 500, 180, "af8b89517f0fabad4a62404d8eae74867aa7e996951d674f5c04c5495542e8b8"),
        (3, 300, 30, "975de3c725145f931ed77a6dd5d3e6550e00c9524edcbb20d8280eeecf993eb3"),
    ],
)
def test_generate_queries_rows_equal_those_before_the_vocabulary_moved_to_a_data_file(
    seed: int, rows: int, days: int, expected: str
) -> None:
    # Digests computed with the generator as it was inside create_data.py (tables in
    # code, weights by position): the data file and the named weights change no row.
    frame = synthetic.generate_queries(rows, seed=seed, end=END, days=days)

    assert _rows_digest(frame) == expected


def test_create_data_script_reexports_the_package_functions() -> None:
    import create_data

    assert create_data.generate_queries is synthetic.generate_queries
    assert create_data.create_source_table is synthetic.create_source_table


def test_generate_queries_more_rows_keeps_the_first_rows_unchanged() -> None:
    small = synthetic.generate_queries(200, seed=3, end=END).set_index("query_id")
    large = synthetic.generate_queries(400, seed=3, end=END).set_index("query_id")

    assert set(small.index) <= set(large.index)
    pd.testing.assert_frame_equal(small, large.loc[small.index])


def test_generate_queries_has_schema_intents_and_time_range() -> None:
    frame = synthetic.generate_queries(3_000, seed=1, end=END, days=180)

    assert list(frame.columns) == ["query_id", "text", "intent", "created_at", "channel", "locale"]
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert frame["created_at"].min() >= END - timedelta(days=180)
    assert frame["created_at"].max() <= END
    assert frame["created_at"].is_monotonic_increasing
    assert frame["query_id"].is_unique
    assert frame["intent"].nunique() >= 8
    assert (frame["text"].str.strip() != "").all()
    # many phrasings per intent, not one sentence each
    assert frame.groupby("intent")["text"].nunique().min() >= 30


def test_generate_queries_contains_typos_casing_and_fillers() -> None:
    frame = synthetic.generate_queries(3_000, seed=1, end=END)
    clean = {
        p.split("{")[0].strip()
        for phrasings in synthetic.load_vocabulary().phrasings.values()
        for era in phrasings.values()
        for p in era
    }
    texts = frame["text"]

    assert texts.str.isupper().any()
    assert texts.str.match(r"^(hi|hello|hey|um|excuse me|good morning|quick question)\b").any()
    # a typo leaves a word no template has
    vocabulary = {w for p in clean for w in p.split()}
    unknown = texts.str.lower().str.split().explode().str.strip("?!.,")
    assert (~unknown.isin(vocabulary)).sum() > 100


def test_generate_queries_newer_rows_use_vocabulary_older_rows_lack() -> None:
    frame = synthetic.generate_queries(6_000, seed=5, end=END)
    oldest = frame.iloc[:1_500]["text"].str.lower()
    newest = frame.iloc[-1_500:]["text"].str.lower()
    marker = r"\b(?:" + "|".join(synthetic.load_vocabulary().modern_markers) + r")\b"

    assert oldest.str.contains(marker).mean() < 0.01
    assert newest.str.contains(marker).mean() > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("seed", [42, 7])
def test_train_on_recent_data_beats_old_data_on_recent_holdout(seed: int) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = synthetic.generate_queries(6_000, seed=seed, end=END)
    cut = int(len(frame) * 0.85)
    holdout = frame.iloc[cut:]
    old = frame.iloc[:1_500]
    recent = frame.iloc[cut - 1_500 : cut]

    def accuracy(train: pd.DataFrame) -> float:
        model = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
        model.fit(train["text"], train["intent"])
        return float((model.predict(holdout["text"]) == holdout["intent"]).mean())

    old_accuracy, recent_accuracy = accuracy(old), accuracy(recent)

    assert recent_accuracy - old_accuracy >= 0.05, (old_accuracy, recent_accuracy)
    # noise and vague queries keep even the good model below perfect
    assert recent_accuracy < 0.99
    assert (old_accuracy, recent_accuracy) == (accuracy(old), accuracy(recent))


def test_create_source_table_twice_gives_the_same_row_count(db_url: str) -> None:
    inserted = synthetic.create_source_table(db_url, rows=1_200, seed=11, end=END)
    again = synthetic.create_source_table(db_url, rows=1_200, seed=11, end=END)
    engine = make_engine(db_url)

    assert (inserted, again) == (1_200, 0)
    assert synthetic.count_rows(engine) == 1_200
    engine.dispose()


def test_create_source_table_more_rows_adds_only_the_new_ones(db_url: str) -> None:
    synthetic.create_source_table(db_url, rows=300, seed=11, end=END)

    added = synthetic.create_source_table(db_url, rows=500, seed=11, end=END)

    assert added == 200


def test_create_source_table_reset_recreates_the_table(db_url: str) -> None:
    synthetic.create_source_table(db_url, rows=300, seed=1, end=END)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM queries WHERE query_id IN (SELECT query_id FROM queries LIMIT 5)")
        )

    inserted = synthetic.create_source_table(db_url, rows=100, seed=2, end=END, reset=True)

    assert inserted == 100
    assert synthetic.count_rows(engine) == 100
    engine.dispose()


def test_create_source_table_stores_aware_utc_timestamps_readable_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic.create_source_table(db_url, rows=250, seed=4, end=END)
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)

    frame = read_queries(load_settings())
    expected = synthetic.generate_queries(250, seed=4, end=END)

    pd.testing.assert_frame_equal(frame, expected[["query_id", "text", "intent", "created_at"]])


def test_create_source_table_writes_the_faq_answers_once_and_readably(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic.create_source_table(db_url, rows=50, seed=11, end=END)
    synthetic.create_source_table(db_url, rows=80, seed=11, end=END)
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)

    answers = read_faq_answers(load_settings())
    expected = synthetic.generate_faq_answers(11, end=END, days=synthetic.DEFAULT_DAYS)
    expected = expected.sort_values("answer_id").reset_index(drop=True)

    assert list(answers.columns) == ["answer_id", "intent", "text"]
    pd.testing.assert_frame_equal(answers, expected[["answer_id", "intent", "text"]])
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stamps = conn.execute(text(f"SELECT answer_id, created_at FROM {FAQ_TABLE}")).all()
    engine.dispose()
    stored = pd.to_datetime(pd.Series({a: c for a, c in stamps}), utc=True)
    assert (stored[expected["answer_id"]].to_numpy() == expected["created_at"].to_numpy()).all()


def test_create_source_table_reset_recreates_the_faq_answers(sqlite_url: str) -> None:
    synthetic.create_source_table(sqlite_url, rows=10, seed=1, end=END)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {FAQ_TABLE} WHERE intent = 'card_lost'"))

    synthetic.create_source_table(sqlite_url, rows=10, seed=1, end=END, reset=True)

    assert synthetic.count_rows(engine, FAQ_TABLE) == len(synthetic.load_faq_corpus().entries())
    engine.dispose()


def test_create_source_table_refuses_the_faq_table_name_for_queries(sqlite_url: str) -> None:
    with pytest.raises(DataError, match="may not be named 'faq_answers'"):
        synthetic.create_source_table(sqlite_url, rows=1, seed=1, table=FAQ_TABLE)


def test_generate_faq_answers_is_deterministic_per_seed_and_covers_every_intent() -> None:
    first = synthetic.generate_faq_answers(7, end=END, days=180)
    second = synthetic.generate_faq_answers(7, end=END, days=180)
    other = synthetic.generate_faq_answers(8, end=END, days=180)

    pd.testing.assert_frame_equal(first, second)
    assert set(first["answer_id"]).isdisjoint(other["answer_id"])
    assert list(first["text"].sort_values()) == list(other["text"].sort_values())
    assert list(first.columns) == ["answer_id", "intent", "text", "created_at"]
    assert first["answer_id"].is_unique
    assert first["created_at"].is_monotonic_increasing
    assert first["created_at"].min() >= END - timedelta(days=180)
    assert first["created_at"].max() <= END
    assert set(first["intent"]) == set(synthetic.load_vocabulary().intents)
    assert first.groupby("intent")["text"].nunique().min() >= 8


def test_faq_answers_drift_like_the_queries_newer_wordings_use_the_new_terms() -> None:
    corpus = synthetic.load_faq_corpus()
    frame = synthetic.generate_faq_answers(7, end=END, days=180)
    era = {e.text: e.era for e in corpus.entries()}
    frame["era"] = frame["text"].map(era)
    marker = r"\b(?:" + "|".join(synthetic.load_vocabulary().modern_markers) + r")\b"
    uses_new_terms = frame["text"].str.lower().str.contains(marker)

    classic, modern = frame[frame["era"] == "classic"], frame[frame["era"] == "modern"]
    assert classic["created_at"].max() < modern["created_at"].min()
    assert uses_new_terms[classic.index].mean() < 0.05
    assert uses_new_terms[modern.index].mean() > 0.9


def test_create_source_table_rejects_a_bad_table_name(sqlite_url: str) -> None:
    with pytest.raises(DataError, match="not a valid identifier"):
        synthetic.create_source_table(sqlite_url, rows=1, seed=1, table="queries; drop")


def test_generate_queries_rejects_a_naive_end() -> None:
    with pytest.raises(DataError, match="timezone-aware"):
        synthetic.generate_queries(10, seed=1, end=datetime(2026, 1, 1))


def test_create_source_table_unreachable_postgres_is_one_clear_error() -> None:
    from core.source import SourceUnavailableError

    url = "postgresql://u:sentinel-pw@127.0.0.1:1/nowhere"
    with pytest.raises(SourceUnavailableError, match="could not reach") as caught:
        synthetic.create_source_table(url, rows=1, seed=1)
    assert "sentinel-pw" not in str(caught.value)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "create_data.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
        cwd=ROOT,
        timeout=300,
    )


def test_create_data_cli_twice_gives_the_same_row_count(isolated_settings: Path) -> None:
    first = _run_cli("--rows", "400", "--seed", "9", "--days", "60")
    second = _run_cli("--rows", "400", "--seed", "9", "--days", "60")
    engine = make_engine(f"sqlite:///{isolated_settings}/source.db")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert re.search(r"^400 new row\(s\)", first.stdout, re.MULTILINE)
    assert re.search(r"^0 new row\(s\).*\(400 already present\)", second.stdout, re.MULTILINE)
    assert "rows per month" in second.stdout
    answers = len(synthetic.load_faq_corpus().entries())
    assert re.search(rf"^{answers} FAQ answer\(s\) in 'faq_answers'", second.stdout, re.MULTILINE)
    assert synthetic.count_rows(engine) == 400
    assert synthetic.count_rows(engine, FAQ_TABLE) == answers
    engine.dispose()


def test_create_data_cli_bad_setting_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATABASE_URL", "nonsense")

    result = _run_cli("--rows", "10")

    assert result.returncode == 2
    assert "SOURCE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_step_source_data_fills_and_summarizes(isolated_settings: Path) -> None:
    console = Console(record=True, width=120)
    settings = load_settings()

    step_source_data(settings, console)
    step_source_data(settings, console)
    output = console.export_text()

    assert re.search(rf"^{synthetic.DEFAULT_ROWS} new row\(s\)", output, re.MULTILINE)
    assert re.search(r"^0 new row\(s\)", output, re.MULTILINE)
    assert "rows per intent" in output
    assert "app-era share" in output


def test_demo_steps_create_data_after_migrate() -> None:
    from cli.demo import STEPS

    functions = [fn for _, fn in STEPS]

    assert step_source_data in functions
    assert functions.index(step_source_data) > 0
