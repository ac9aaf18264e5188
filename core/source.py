"""The source tables: the queries (training data) and the FAQ answers, with validating readers.

The tables (queries: default name `queries`; answers: `faq_answers`) live on
SOURCE_DATABASE_URL: SQLite on a laptop, Postgres (Supabase is Postgres) in production.
`create_data.py` creates and fills both. `read_queries` and `read_faq_answers` read them
over SQL, or over Supabase REST (supabase-py, paginated) when SUPABASE_URL and
SUPABASE_KEY are set, and validate what they read before returning it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    Select,
    String,
    Table,
    Text,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, OperationalError, ProgrammingError

from config import Settings
from core.db.engine import make_engine
from core.db.models import UTCDateTime
from core.errors import DataError, SmlError
from core.source_frames import (
    ANSWER_COLUMNS,
    QUERY_COLUMNS,
    empty_queries_frame,
    validate_faq_answers,
    validate_queries,
)

#: Extra columns the table carries (realistic context, not returned by the reader).
EXTRA_COLUMNS: tuple[str, ...] = ("channel", "locale")
#: The FAQ answer corpus table (the second source table).
FAQ_TABLE = "faq_answers"
#: Rows per Supabase REST request (PostgREST's default `max-rows` is 1000).
SUPABASE_PAGE_SIZE = 1000

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SourceUnavailableError(SmlError):
    """The source database or REST endpoint could not be reached (transient: retry)."""


def check_table_name(name: str) -> str:
    """Return `name` if it is a safe lower-case SQL identifier.

    Raises:
        DataError: if the name could not be used unquoted in SQL.
    """
    if not _IDENTIFIER.match(name):
        raise DataError(
            f"source table name {name!r} is not a valid identifier "
            "(lower-case letters, digits and _, starting with a letter or _)"
        )
    return name


def source_table(name: str = "queries", metadata: MetaData | None = None) -> Table:
    """The SQLAlchemy Core definition of the source table `name`.

    Raises:
        DataError: if `name` is not a valid identifier.
    """
    check_table_name(name)
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("query_id", String(64), primary_key=True),
        Column("text", Text, nullable=False),
        Column("intent", String(64), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("channel", String(16), nullable=False),
        Column("locale", String(16), nullable=False),
        Index(f"ix_{name}_created_at", "created_at"),
    )


def faq_table(metadata: MetaData | None = None) -> Table:
    """The SQLAlchemy Core definition of the FAQ answer table `faq_answers`."""
    return Table(
        FAQ_TABLE,
        metadata if metadata is not None else MetaData(),
        Column("answer_id", String(64), primary_key=True),
        Column("intent", String(64), nullable=False),
        Column("text", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )


def redacted_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is never echoed: it may hold a secret
        return "<unparsable database URL>"


def _as_utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise DataError(f"{name} must be a timezone-aware datetime (got a naive one)")
    return moment.astimezone(UTC)


def read_queries(
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Read the source table, rows with `since <= created_at < until`, validated.

    Goes over Supabase REST when SUPABASE_URL and SUPABASE_KEY are set, else over SQL on
    SOURCE_DATABASE_URL. Returns columns exactly `query_id, text, intent, created_at`.

    Raises:
        DataError: the table is missing or its contents are invalid.
        SourceUnavailableError: the database or REST endpoint could not be reached.
    """
    since_utc = _as_utc(since, "since")
    until_utc = _as_utc(until, "until")
    table = check_table_name(settings.SOURCE_TABLE)
    if settings.uses_supabase:
        assert settings.SUPABASE_URL is not None
        assert settings.SUPABASE_KEY is not None
        return read_queries_supabase(
            settings.SUPABASE_URL,
            settings.SUPABASE_KEY.get_secret_value(),
            table,
            since_utc,
            until_utc,
        )
    engine = make_engine(settings.source_database_url)
    try:
        return read_queries_sql(engine, table, since_utc, until_utc)
    finally:
        engine.dispose()


def _orig_name(exc: OperationalError) -> str:
    return type(exc.orig).__name__ if exc.orig is not None else "OperationalError"


def _check_present(engine: Engine, table: str, columns: Sequence[str], origin: str) -> None:
    """Refuse a missing table or one without `columns`, naming create_data.py as the fix.

    Raises:
        DataError: the table or a column is missing.
        SourceUnavailableError: the database could not be reached.
    """
    try:
        present = inspect(engine).has_table(check_table_name(table))
    except OperationalError as exc:
        raise SourceUnavailableError(
            f"could not reach the source database {redacted_url(str(engine.url))}: "
            f"{_orig_name(exc)}"
        ) from None
    if not present:
        raise DataError(f"{origin} does not exist; create it with `python create_data.py`")
    try:
        reflected = Table(table, MetaData(), autoload_with=engine)
    except NoSuchTableError:
        raise DataError(f"{origin} does not exist") from None
    missing = [c for c in columns if c not in reflected.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {', '.join(missing)}")


def _fetch(engine: Engine, query: Select[Any], origin: str) -> list[Any]:
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    except OperationalError as exc:
        raise SourceUnavailableError(f"reading {origin} failed: {_orig_name(exc)}") from None
    except ProgrammingError as exc:
        raise DataError(f"reading {origin} failed: {type(exc.orig).__name__}") from None


def read_queries_sql(
    engine: Engine,
    table: str = "queries",
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Read and validate the source table over SQL.

    Raises:
        DataError: the table is missing or its contents are invalid.
        SourceUnavailableError: the database could not be reached.
    """
    origin = f"source table {table!r} at {redacted_url(str(engine.url))}"
    _check_present(engine, table, QUERY_COLUMNS, origin)
    typed = source_table(table)
    query = select(*(typed.c[c] for c in QUERY_COLUMNS))
    if since is not None:
        query = query.where(typed.c.created_at >= since)
    if until is not None:
        query = query.where(typed.c.created_at < until)
    query = query.order_by(typed.c.created_at, typed.c.query_id)
    frame = pd.DataFrame(_fetch(engine, query, origin), columns=list(QUERY_COLUMNS))
    return validate_queries(frame, origin)


ClientFactory = Callable[[str, str], Any]


def _default_client(url: str, key: str) -> Any:
    from supabase import create_client

    return create_client(url, key)


@dataclass(frozen=True)
class _RestQuery:
    """One paginated Supabase REST read: table, columns, order and range filters."""

    table: str
    columns: tuple[str, ...]
    order: tuple[str, ...]
    since: datetime | None = None
    until: datetime | None = None


def _supabase_rows(
    url: str, key: str, read: _RestQuery, page_size: int, client_factory: ClientFactory
) -> list[dict[str, Any]]:
    """Every row of `read`, `page_size` rows a request (HTTP ranges over a total order).

    Raises:
        DataError: the table is missing or the key is refused.
        SourceUnavailableError: the endpoint could not be reached.
    """
    import httpx
    from postgrest.exceptions import APIError

    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    origin = f"source table {read.table!r} at {url}"
    client = client_factory(url, key)
    rows: list[dict[str, Any]] = []
    start = 0
    while True:
        request = client.table(check_table_name(read.table)).select(",".join(read.columns))
        if read.since is not None:
            request = request.gte("created_at", read.since.isoformat())
        if read.until is not None:
            request = request.lt("created_at", read.until.isoformat())
        for column in read.order:
            request = request.order(column)
        try:
            response = request.range(start, start + page_size - 1).execute()
        except APIError as exc:
            raise DataError(f"{origin}: {_describe_api_error(exc)}") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(
                f"could not reach Supabase at {url}: {type(exc).__name__}"
            ) from None
        page = list(response.data or [])
        rows.extend(page)
        if len(page) < page_size:
            return rows
        start += page_size


def read_queries_supabase(
    url: str,
    key: str,
    table: str = "queries",
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = SUPABASE_PAGE_SIZE,
    client_factory: ClientFactory = _default_client,
) -> pd.DataFrame:
    """Read and validate the source table over Supabase REST, `page_size` rows a request.

    Pages are requested with HTTP range requests ordered by (created_at, query_id), so
    they neither overlap nor skip rows. The key is never part of an error message.

    Raises:
        DataError: the table is missing, the key is refused, or the contents are invalid.
        SourceUnavailableError: the endpoint could not be reached.
    """
    read = _RestQuery(table, QUERY_COLUMNS, ("created_at", "query_id"), since, until)
    rows = _supabase_rows(url, key, read, page_size, client_factory)
    frame = pd.DataFrame(rows, columns=list(QUERY_COLUMNS)) if rows else empty_queries_frame()
    return validate_queries(frame, f"source table {table!r} at {url}")


def read_faq_answers(
    settings: Settings,
    page_size: int = SUPABASE_PAGE_SIZE,
    client_factory: ClientFactory = _default_client,
) -> pd.DataFrame:
    """Read the FAQ answer corpus (`faq_answers`), validated: answer_id, intent, text.

    Over Supabase REST when SUPABASE_URL and SUPABASE_KEY are set (as `read_queries`),
    else over SQL on SOURCE_DATABASE_URL.

    Raises:
        DataError: the table is missing or empty (run `python create_data.py`), or its
            contents are invalid.
        SourceUnavailableError: the database or REST endpoint could not be reached.
    """
    if settings.uses_supabase:
        assert settings.SUPABASE_URL is not None
        assert settings.SUPABASE_KEY is not None
        url, key = settings.SUPABASE_URL, settings.SUPABASE_KEY.get_secret_value()
        read = _RestQuery(FAQ_TABLE, ANSWER_COLUMNS, ("answer_id",))
        rows = _supabase_rows(url, key, read, page_size, client_factory)
        frame = pd.DataFrame(rows, columns=list(ANSWER_COLUMNS))
        return validate_faq_answers(frame, f"source table {FAQ_TABLE!r} at {url}")
    engine = make_engine(settings.source_database_url)
    try:
        return read_faq_answers_sql(engine)
    finally:
        engine.dispose()


def read_faq_answers_sql(engine: Engine) -> pd.DataFrame:
    """Read and validate the FAQ answer table over SQL (see `read_faq_answers`).

    Raises:
        DataError: the table is missing, empty or invalid.
        SourceUnavailableError: the database could not be reached.
    """
    origin = f"source table {FAQ_TABLE!r} at {redacted_url(str(engine.url))}"
    _check_present(engine, FAQ_TABLE, ANSWER_COLUMNS, origin)
    typed = faq_table()
    query = select(*(typed.c[c] for c in ANSWER_COLUMNS)).order_by(typed.c.answer_id)
    frame = pd.DataFrame(_fetch(engine, query, origin), columns=list(ANSWER_COLUMNS))
    return validate_faq_answers(frame, origin)


def _describe_api_error(exc: Any) -> str:
    """A one-line description of a PostgREST error (code and message, never the key)."""
    code = str(getattr(exc, "code", "") or "")
    message = str(getattr(exc, "message", "") or "").strip()
    hint = ""
    if code in {"42P01", "PGRST205"}:
        hint = " (the table does not exist: create it with `python create_data.py`)"
    elif code in {"401", "403", "PGRST301", "PGRST302", "42501"} or "JWT" in message:
        hint = " (the key was refused: check SUPABASE_KEY)"
    parts = [p for p in (code, message) if p]
    return ("Supabase REST error " + ": ".join(parts) if parts else "Supabase REST error") + hint


__all__ = [
    "ANSWER_COLUMNS",
    "EXTRA_COLUMNS",
    "FAQ_TABLE",
    "QUERY_COLUMNS",
    "SUPABASE_PAGE_SIZE",
    "ClientFactory",
    "SourceUnavailableError",
    "check_table_name",
    "empty_queries_frame",
    "faq_table",
    "read_faq_answers",
    "read_faq_answers_sql",
    "read_queries",
    "read_queries_sql",
    "read_queries_supabase",
    "redacted_url",
    "source_table",
    "validate_faq_answers",
    "validate_queries",
]
