"""core.source: the validating reader, over SQL (SQLite, Postgres) and Supabase REST."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
from sqlalchemy import Column, MetaData, String, Table, insert

from config import load_settings
from core import synthetic
from core.db.engine import make_engine
from core.errors import DataError
from core.source import (
    ANSWER_COLUMNS,
    FAQ_TABLE,
    QUERY_COLUMNS,
    SourceUnavailableError,
    faq_table,
    read_faq_answers,
    read_queries,
    read_queries_sql,
    read_queries_supabase,
    source_table,
)

END = datetime(2026, 6, 1, tzinfo=UTC)
GOOD_KEY = "sb-test-key-0123456789"


# --- SQL ------------------------------------------------------------------------------


def test_read_queries_sql_returns_exact_columns_sorted_and_aware(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic.create_source_table(db_url, rows=300, seed=2, end=END)
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)

    frame = read_queries(load_settings())

    assert list(frame.columns) == list(QUERY_COLUMNS)
    assert len(frame) == 300
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert frame["created_at"].is_monotonic_increasing


def test_read_queries_sql_filters_since_inclusive_until_exclusive(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthetic.create_source_table(db_url, rows=400, seed=3, end=END)
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)
    everything = read_queries(load_settings())
    since = everything["created_at"].iloc[100].to_pydatetime()
    until = everything["created_at"].iloc[300].to_pydatetime()

    window = read_queries(load_settings(), since=since, until=until)

    expected = everything[(everything.created_at >= since) & (everything.created_at < until)]
    assert list(window["query_id"]) == list(expected["query_id"])
    assert window["created_at"].min() == since


def test_read_queries_sql_accepts_since_in_another_timezone(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoneinfo import ZoneInfo

    synthetic.create_source_table(sqlite_url, rows=200, seed=3, end=END)
    monkeypatch.setenv("SOURCE_DATABASE_URL", sqlite_url)
    since_utc = END - timedelta(days=30)

    in_utc = read_queries(load_settings(), since=since_utc)
    in_paris = read_queries(load_settings(), since=since_utc.astimezone(ZoneInfo("Europe/Paris")))

    assert list(in_utc["query_id"]) == list(in_paris["query_id"])


def test_read_queries_sql_missing_table_is_a_clear_data_error(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)

    with pytest.raises(DataError, match=r"'queries'.*does not exist.*create_data\.py"):
        read_queries(load_settings())


def test_read_queries_sql_empty_text_is_rejected(db_url: str) -> None:
    engine = make_engine(db_url)
    table = source_table("queries")
    table.metadata.create_all(engine)
    row = {"intent": "help", "created_at": END, "channel": "web", "locale": "en-US"}
    with engine.begin() as conn:
        conn.execute(insert(table), [{**row, "query_id": "a", "text": "fine"}])
        conn.execute(insert(table), [{**row, "query_id": "b", "text": "   "}])

    with pytest.raises(DataError, match=r"1 row\(s\) with an empty text \(first query_id: 'b'\)"):
        read_queries_sql(engine)
    engine.dispose()


def test_read_queries_sql_missing_column_is_rejected(db_url: str) -> None:
    engine = make_engine(db_url)
    metadata = MetaData()
    Table("queries", metadata, Column("query_id", String, primary_key=True), Column("text", String))
    metadata.create_all(engine)

    with pytest.raises(DataError, match="missing column"):
        read_queries_sql(engine)
    engine.dispose()


def test_read_queries_sql_empty_table_gives_an_empty_typed_frame(sqlite_url: str) -> None:
    synthetic.create_source_table(sqlite_url, rows=0, seed=1)
    engine = make_engine(sqlite_url)

    frame = read_queries_sql(engine)

    assert frame.empty
    assert list(frame.columns) == list(QUERY_COLUMNS)
    assert str(frame["created_at"].dt.tz) == "UTC"
    engine.dispose()


def test_read_queries_naive_since_is_rejected(sqlite_url: str) -> None:
    with pytest.raises(DataError, match="timezone-aware"):
        read_queries(load_settings(), since=datetime(2026, 1, 1))


def test_read_queries_unreachable_database_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATABASE_URL", "postgresql://u:sentinel-pw@127.0.0.1:1/x")

    with pytest.raises(SourceUnavailableError, match="could not reach") as caught:
        read_queries(load_settings())
    assert "sentinel-pw" not in str(caught.value)


def test_read_faq_answers_missing_table_is_a_clear_data_error(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATABASE_URL", db_url)

    with pytest.raises(DataError, match=r"'faq_answers'.*does not exist.*create_data\.py"):
        read_faq_answers(load_settings())


def test_read_faq_answers_empty_table_or_empty_text_is_a_clear_data_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    table = faq_table()
    table.metadata.create_all(engine)
    monkeypatch.setenv("SOURCE_DATABASE_URL", sqlite_url)

    with pytest.raises(DataError, match=r"holds no answers.*create_data\.py"):
        read_faq_answers(load_settings())
    with engine.begin() as conn:
        conn.execute(
            insert(table), [{"answer_id": "a", "intent": "help", "text": " ", "created_at": END}]
        )
    with pytest.raises(DataError, match=r"1 row\(s\) with an empty text"):
        read_faq_answers(load_settings())
    engine.dispose()


# --- Supabase REST ----------------------------------------------------------------------


@dataclass
class FakePostgrest:
    """A PostgREST imitation: GET /rest/v1/<table> with select, gte/lt, order, offset/limit."""

    tables: dict[str, list[dict[str, Any]]]
    key: str = GOOD_KEY
    requests: list[dict[str, str]] = field(default_factory=list)

    def handle(self, path: str, query: list[tuple[str, str]], headers: Any) -> tuple[int, Any]:
        if (
            headers.get("apikey") != self.key
            or headers.get("Authorization") != f"Bearer {self.key}"
        ):
            return 401, {"code": "PGRST301", "message": "JWSError JWSInvalidSignature"}
        name = path.removeprefix("/rest/v1/")
        if name not in self.tables:
            return 404, {
                "code": "PGRST205",
                "message": f"Could not find the table 'public.{name}' in the schema cache",
            }
        params = dict(query)
        self.requests.append(params)
        rows = list(self.tables[name])
        for column, condition in query:
            op, _, value = condition.partition(".")
            if op == "gte":
                rows = [r for r in rows if _ts(r[column]) >= _ts(value)]
            elif op == "lt":
                rows = [r for r in rows if _ts(r[column]) < _ts(value)]
        for part in reversed(params.get("order", "").split(",")):
            if part:
                rows.sort(key=lambda r, c=part.split(".")[0]: r[c])
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 10**9))
        columns = params["select"].split(",")
        return 200, [{c: r[c] for c in columns} for r in rows[offset : offset + limit]]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def postgrest() -> Iterator[tuple[str, FakePostgrest]]:
    """A fake PostgREST on 127.0.0.1: 2,500 generated rows in `queries`, and `faq_answers`."""
    frame = synthetic.generate_queries(2_500, seed=21, end=END)
    rows = [
        {
            "query_id": r.query_id,
            "text": r.text,
            "intent": r.intent,
            "created_at": r.created_at.isoformat(),
            "channel": r.channel,
            "locale": r.locale,
        }
        for r in frame.sample(frac=1.0, random_state=0).itertuples()
    ]
    answers = [
        {**r, "created_at": r["created_at"].isoformat()}
        for r in synthetic.generate_faq_answers(21, end=END, days=180).to_dict("records")
    ]
    fake = FakePostgrest(tables={"queries": rows, FAQ_TABLE: answers})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body = fake.handle(parts.path, parse_qsl(parts.query), self.headers)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", fake
    finally:
        server.shutdown()
        server.server_close()


def test_read_queries_supabase_paginates_over_every_page(
    postgrest: tuple[str, FakePostgrest],
) -> None:
    url, fake = postgrest

    frame = read_queries_supabase(url, GOOD_KEY, page_size=700)

    assert len(frame) == 2_500
    assert frame["query_id"].is_unique
    assert frame["created_at"].is_monotonic_increasing
    assert [r["offset"] for r in fake.requests] == ["0", "700", "1400", "2100"]
    assert {r["limit"] for r in fake.requests} == {"700"}
    assert all(r["order"] == "created_at.asc,query_id.asc" for r in fake.requests)


def test_read_queries_uses_supabase_when_url_and_key_are_set(
    postgrest: tuple[str, FakePostgrest], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fake = postgrest
    monkeypatch.setenv("SUPABASE_URL", url)
    monkeypatch.setenv("SUPABASE_KEY", GOOD_KEY)
    since = END - timedelta(days=30)

    frame = read_queries(load_settings(), since=since, until=END)
    expected = synthetic.generate_queries(2_500, seed=21, end=END)
    expected = expected[(expected.created_at >= since) & (expected.created_at < END)]

    assert list(frame.columns) == list(QUERY_COLUMNS)
    assert list(frame["query_id"]) == list(expected["query_id"])
    pd.testing.assert_series_equal(
        frame["created_at"], expected["created_at"].reset_index(drop=True)
    )
    assert all("created_at" in r for r in fake.requests)


def test_read_queries_supabase_missing_table_is_a_clear_error(
    postgrest: tuple[str, FakePostgrest],
) -> None:
    url, _ = postgrest

    with pytest.raises(DataError, match=r"PGRST205.*table does not exist"):
        read_queries_supabase(url, GOOD_KEY, table="nope")


def test_read_queries_supabase_bad_key_is_a_clear_error_without_the_key(
    postgrest: tuple[str, FakePostgrest],
) -> None:
    url, _ = postgrest
    bad_key = "sentinel-bad-key-987"

    with pytest.raises(DataError, match="check SUPABASE_KEY") as caught:
        read_queries_supabase(url, bad_key)
    assert bad_key not in str(caught.value)


def test_read_queries_supabase_invalid_rows_are_rejected(
    postgrest: tuple[str, FakePostgrest],
) -> None:
    url, fake = postgrest
    fake.tables["queries"][5]["intent"] = ""

    with pytest.raises(DataError, match="empty intent"):
        read_queries_supabase(url, GOOD_KEY)


def test_read_faq_answers_goes_over_supabase_when_url_and_key_are_set(
    postgrest: tuple[str, FakePostgrest], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fake = postgrest
    monkeypatch.setenv("SUPABASE_URL", url)
    monkeypatch.setenv("SUPABASE_KEY", GOOD_KEY)

    answers = read_faq_answers(load_settings(), page_size=50)
    expected = synthetic.generate_faq_answers(21, end=END, days=180)

    assert list(answers.columns) == list(ANSWER_COLUMNS)
    assert list(answers["answer_id"]) == sorted(expected["answer_id"])
    assert [r["offset"] for r in fake.requests] == ["0", "50", "100"]
    assert all(r["order"] == "answer_id.asc" for r in fake.requests)


def test_read_faq_answers_supabase_missing_table_names_create_data(
    postgrest: tuple[str, FakePostgrest], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, fake = postgrest
    del fake.tables[FAQ_TABLE]
    monkeypatch.setenv("SUPABASE_URL", url)
    monkeypatch.setenv("SUPABASE_KEY", GOOD_KEY)

    with pytest.raises(DataError, match=r"'faq_answers'.*PGRST205.*create_data\.py"):
        read_faq_answers(load_settings())
