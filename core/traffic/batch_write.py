"""How one batch of traffic rows reaches the database, and which errors mean it is down.

One transaction per batch: a multi-row INSERT (one prepared `executemany`) on SQLite, one
`COPY ... FROM STDIN` per table on Postgres (psycopg 3). What happens on a failure is the
writer's call: spill on an outage (`is_outage`), isolate the bad rows otherwise.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from core.traffic.records import FEEDBACK_COLUMNS, TRAFFIC_COLUMNS, FeedbackRecord, TrafficRecord

_COPY_TRAFFIC = f"COPY traffic ({', '.join(TRAFFIC_COLUMNS)}) FROM STDIN"
_COPY_FEEDBACK = f"COPY feedback ({', '.join(FEEDBACK_COLUMNS)}) FROM STDIN"
# column names are the record fields (constants), never user input
_INSERT_TRAFFIC = (
    f"INSERT INTO traffic ({', '.join(TRAFFIC_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(TRAFFIC_COLUMNS))})"
)
_INSERT_FEEDBACK = (
    f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})"
)


def _sqlite_ts(ts: datetime) -> str:
    """A timestamp as core.db's UTCDateTime stores it on SQLite: naive UTC text."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def write_rows(
    engine: Engine, traffic: list[TrafficRecord], feedback: list[FeedbackRecord]
) -> None:
    """Write both lists in one transaction: COPY (Postgres) or multi-row INSERT (SQLite).

    Raises:
        sqlalchemy.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error, OSError: the write
            failed and nothing was committed (`is_outage` tells an outage apart).
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:  # type: ignore[union-attr]
                if traffic:
                    with cur.copy(_COPY_TRAFFIC) as copy:
                        for row in traffic:
                            copy.write_row(row)
                if feedback:
                    with cur.copy(_COPY_FEEDBACK) as copy:
                        for fb in feedback:
                            copy.write_row(fb)
        else:
            # one prepared multi-row executemany; timestamps pre-formatted exactly as
            # SQLAlchemy stores UTCDateTime on SQLite (naive UTC), cheaper per row
            # than binding through the ORM types
            if traffic:
                conn.exec_driver_sql(
                    _INSERT_TRAFFIC, [(*r[:1], _sqlite_ts(r[1]), *r[2:]) for r in traffic]
                )
            if feedback:
                conn.exec_driver_sql(
                    _INSERT_FEEDBACK, [(r[0], _sqlite_ts(r[1]), *r[2:]) for r in feedback]
                )


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean "the database is not answering right now"."""
    import psycopg

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | sqlite3.OperationalError
        | OSError,
    ):
        return True
    # SQLAlchemy wraps driver errors; look at the cause as well
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _is_outage_leaf(cause)


def _is_outage_leaf(exc: BaseException) -> bool:
    """The driver-level outage errors, for a cause SQLAlchemy wrapped."""
    import psycopg

    return isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | sqlite3.OperationalError | OSError
    )
