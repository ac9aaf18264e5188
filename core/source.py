"""The source table of training data: its schema, and a validating reader.

The table (default name `queries`) lives on SOURCE_DATABASE_URL: SQLite on a laptop,
Postgres (Supabase is Postgres) in production. `create_data.py` creates and fills it.
`read_queries` reads it over SQL, or over Supabase REST (supabase-py, paginated) when
SUPABASE_URL and SUPABASE_KEY are set, and validates what it read before returning it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Column, Engine, Index, MetaData, String, Table, Text, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import NoSuchTableError, OperationalError, ProgrammingError

from config import Settings
from core.db.engine import make_engine
from core.db.models import UTCDateTime
from core.errors import DataError, SmlError

#: The columns every reader returns, in this order.
QUERY_COLUMNS: tuple[str, ...] = ("query_id", "text", "intent", "created_at")
#: Extra columns the table carries (realistic context, not returned by the reader).
EXTRA_COLUMNS: tuple[str, ...] = ("channel", "locale")
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


def redacted_url(url: str) -> str:
    """A database URL safe to print: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is never echoed: it may hold a secret
        return "<unparsable database URL>"


def _empty_frame() -> pd.DataFrame:
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
        return _empty_frame()
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
    try:
        present = inspect(engine).has_table(check_table_name(table))
    except OperationalError as exc:
        raise SourceUnavailableError(
            f"could not reach the source database {redacted_url(str(engine.url))}: "
            f"{type(exc.orig).__name__ if exc.orig is not None else 'OperationalError'}"
        ) from None
    if not present:
        raise DataError(f"{origin} does not exist; create it with `python create_data.py`")
    try:
        reflected = Table(table, MetaData(), autoload_with=engine)
    except NoSuchTableError:
        raise DataError(f"{origin} does not exist") from None
    missing = [c for c in QUERY_COLUMNS if c not in reflected.columns]
    if missing:
        raise DataError(f"{origin}: missing column(s) {', '.join(missing)}")
    typed = source_table(table)
    query = select(*(typed.c[c] for c in QUERY_COLUMNS))
    if since is not None:
        query = query.where(typed.c.created_at >= since)
    if until is not None:
        query = query.where(typed.c.created_at < until)
    query = query.order_by(typed.c.created_at, typed.c.query_id)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except OperationalError as exc:
        raise SourceUnavailableError(
            f"reading {origin} failed: "
            f"{type(exc.orig).__name__ if exc.orig is not None else 'OperationalError'}"
        ) from None
    except ProgrammingError as exc:
        raise DataError(f"reading {origin} failed: {type(exc.orig).__name__}") from None
    frame = pd.DataFrame(rows, columns=list(QUERY_COLUMNS))
    return validate_queries(frame, origin)


ClientFactory = Callable[[str, str], Any]


def _default_client(url: str, key: str) -> Any:
    from supabase import create_client

    return create_client(url, key)


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
    import httpx
    from postgrest.exceptions import APIError

    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    origin = f"source table {table!r} at {url}"
    client = client_factory(url, key)
    rows: list[dict[str, Any]] = []
    start = 0
    while True:
        request = client.table(check_table_name(table)).select(",".join(QUERY_COLUMNS))
        if since is not None:
            request = request.gte("created_at", since.isoformat())
        if until is not None:
            request = request.lt("created_at", until.isoformat())
        request = request.order("created_at").order("query_id")
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
            break
        start += page_size
    frame = pd.DataFrame(rows, columns=list(QUERY_COLUMNS)) if rows else _empty_frame()
    return validate_queries(frame, origin)


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
