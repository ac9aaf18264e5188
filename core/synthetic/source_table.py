"""Writing the synthetic rows into the source table, idempotently, and summarising it.

The table is created over SQL on the source database (SQLite locally; Postgres or
Supabase in production: Supabase is Postgres), never through a UI. Rows are inserted
with "on conflict do nothing" on their deterministic id, so running it again with the
same seed inserts nothing twice, and a larger row count only adds the new rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Executable, MetaData, Table, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from core.db.engine import make_engine, wait_for_database
from core.errors import DataError
from core.source import (
    FAQ_TABLE,
    SourceUnavailableError,
    check_table_name,
    faq_table,
    read_queries_sql,
    redacted_url,
    source_table,
)
from core.synthetic.faq import generate_faq_answers
from core.synthetic.generator import DEFAULT_DAYS, check_args, generate_queries
from core.synthetic.vocabulary import load_vocabulary

INSERT_BATCH = 1_000

ProgressCallback = Callable[[int], None]


def _insert_if_absent(
    engine: Engine, table: Table, batch: list[dict[str, object]], key: str = "query_id"
) -> None:
    dialect = engine.dialect.name
    statement: Executable
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        raise DataError(f"unsupported source database dialect {dialect!r}")
    with engine.begin() as conn:
        conn.execute(statement, batch)


def count_rows(engine: Engine, table: str = "queries") -> int:
    """Rows in the source table `table` (0 if it does not exist)."""
    sa_table = faq_table() if table == FAQ_TABLE else source_table(table)
    if not inspect(engine).has_table(table):
        return 0
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(sa_table)).scalar_one())


def wait_for_source(engine: Engine, timeout: float = 10.0) -> None:
    """Wait briefly for the source database to answer.

    Raises:
        SourceUnavailableError: it does not answer within `timeout` seconds.
    """
    try:
        wait_for_database(engine, timeout=timeout)
    except OperationalError:
        raise SourceUnavailableError(
            f"could not reach the source database {redacted_url(str(engine.url))}"
        ) from None


def ensure_source_table(engine: Engine, table: str = "queries", reset: bool = False) -> None:
    """Create the source table if absent; with `reset`, drop it first."""
    metadata = MetaData()
    sa_table = source_table(table, metadata)
    if reset:
        sa_table.drop(engine, checkfirst=True)
    metadata.create_all(engine, checkfirst=True)


def create_source_table(
    url: str,
    rows: int,
    seed: int,
    reset: bool = False,
    table: str = "queries",
    days: int = DEFAULT_DAYS,
    end: datetime | None = None,
    on_progress: ProgressCallback | None = None,
) -> int:
    """Create the source tables on `url` and insert the generated rows that are absent.

    Writes the queries into `table` and the FAQ answer corpus of the same seed, time
    range and database into `faq_answers` (`create_faq_table`); `reset` drops both first.
    Idempotent: rows already present (same seed and index) are left alone. Returns the
    number of query rows inserted. `on_progress` is called with the size of each written
    batch of queries.

    Raises:
        DataError: invalid arguments or table name (`table` may not be `faq_answers`).
        SourceUnavailableError: the database does not answer.
    """
    check_table_name(table)
    if table == FAQ_TABLE:
        raise DataError(f"the queries table may not be named {FAQ_TABLE!r}: the answers use it")
    end_utc = check_args(rows, days, end)
    engine = make_engine(url)
    try:
        wait_for_source(engine)
        ensure_source_table(engine, table, reset=reset)
        create_faq_table(engine, seed, end=end_utc, days=days, reset=reset)
        before = count_rows(engine, table)
        frame = generate_queries(rows, seed, end=end_utc, days=days)
        records = frame.to_dict("records")
        for record in records:
            record["created_at"] = record["created_at"].to_pydatetime()
        for start in range(0, len(records), INSERT_BATCH):
            batch = records[start : start + INSERT_BATCH]
            _insert_if_absent(engine, source_table(table), batch)
            if on_progress is not None:
                on_progress(len(batch))
        return count_rows(engine, table) - before
    finally:
        engine.dispose()


def create_faq_table(
    engine: Engine, seed: int, *, end: datetime, days: int, reset: bool = False
) -> int:
    """Create the `faq_answers` table if absent and insert the seed's absent answers.

    The rows are `core.synthetic.faq.generate_faq_answers(seed, end, days)`, inserted
    with "on conflict do nothing" on answer_id (idempotent). Returns the rows inserted.

    Raises:
        DataError: a naive `end` or days < 1.
        VocabularyError: the packaged FAQ corpus is unusable.
    """
    metadata = MetaData()
    table = faq_table(metadata)
    if reset:
        table.drop(engine, checkfirst=True)
    metadata.create_all(engine, checkfirst=True)
    frame = generate_faq_answers(seed, end=end, days=days)
    records = frame.to_dict("records")
    for record in records:
        record["created_at"] = record["created_at"].to_pydatetime()
    before = count_rows(engine, FAQ_TABLE)
    for start in range(0, len(records), INSERT_BATCH):
        _insert_if_absent(engine, table, records[start : start + INSERT_BATCH], "answer_id")
    return count_rows(engine, FAQ_TABLE) - before


@dataclass(frozen=True)
class SourceSummary:
    """What the source table holds: totals per intent and per month."""

    rows: int
    first: datetime | None
    last: datetime | None
    per_intent: dict[str, int]
    per_month: list[tuple[str, int, float]]  # (YYYY-MM, rows, share of modern vocabulary)


def summarize_source(url: str, table: str = "queries") -> SourceSummary:
    """Count rows per intent and per month, with the share of app-era vocabulary per month.

    Raises:
        DataError: the table does not exist or is invalid.
    """
    engine = make_engine(url)
    try:
        frame = read_queries_sql(engine, table)
    finally:
        engine.dispose()
    if frame.empty:
        return SourceSummary(0, None, None, {}, [])
    markers = load_vocabulary().modern_markers
    lowered = frame["text"].str.lower()
    modern = lowered.str.contains(r"\b(?:" + "|".join(markers) + r")\b", regex=True)
    month = frame["created_at"].dt.strftime("%Y-%m")
    per_month = [
        (str(m), len(group), float(modern[group.index].mean()))
        for m, group in frame.groupby(month, sort=True)
    ]
    per_intent = {str(k): int(v) for k, v in frame["intent"].value_counts().sort_index().items()}
    return SourceSummary(
        rows=len(frame),
        first=frame["created_at"].min().to_pydatetime(),
        last=frame["created_at"].max().to_pydatetime(),
        per_intent=per_intent,
        per_month=per_month,
    )
