"""Per-minute and per-hour rollups of the traffic log: stage figures that do not grow with
the stage (issue 13).

`traffic_rollups` holds, per (rollout, model, arm, bucket) with a bucket a minute or an
hour of `traffic.ts`: requests, errors, requests slower than the latency limit, requests
with negative thumbs feedback, and a fixed log-spaced latency histogram
(core.latency_histogram). Only the rows a stage is judged on are rolled up: a rollout id
and role champion or candidate. core.rollup_figures reads a stage from O(hours + 120)
rollup rows and the raw rows of the two partial minutes at its edges.

How far the rollups have read is one row of `rollup_marks`: the last traffic id and the
last feedback id rolled up. Ids, not timestamps: the traffic writer batches and replays
spilled rows, so a row whose `ts` is minutes (or hours) in the past can arrive after rows
stamped later; it still gets a new, higher id, so reading `id > mark` counts every row
exactly once, wherever its minute is. The one way ids arrive out of order is two writers
in flight at once on Postgres (a sequence hands out ids before the commit), so the
refresh reads only up to a *safe bound*: on Postgres, the largest ids, once every
transaction that was writing traffic or feedback when they were read has ended (a writer
holds ROW EXCLUSIVE on the table from before it draws an id until it ends, and `pg_locks`
shows it; no lock is taken, so writers and autovacuum never wait for a refresh: an
earlier `LOCK TABLE ... IN SHARE MODE` queued behind autovacuum for its 1 s
deadlock_timeout on a 10M-row table); on SQLite writers are serialised and commit in id
order, so the largest id is safe as read. Writers still running after `lock_timeout_s`
raise `RollupsBehindError` and the caller computes exactly instead (core.analysis).

Feedback arrives after its request, sometimes before the request's row is written. A
request counts as negative once, when both its row and its first negative thumbs are
read: new traffic rows look up negative feedback up to the new feedback mark, and new
negative feedback looks up traffic rows up to the old traffic mark whose request had no
negative feedback before. Together they count each (row, request has negative feedback)
pair once, in whichever order the two arrive.

One refresh is a loop of transactions, each: lock the mark row (`SELECT ... FOR UPDATE`
on Postgres, `BEGIN IMMEDIATE` on SQLite), roll up at most `chunk_rows` ids past it, merge
into the rollup rows, move the mark. Rollups and mark commit together, so a crash leaves
both as they were; two controllers refreshing at once queue on the mark row, and the
second reads the first one's mark, so nothing is counted twice.

The over-limit counts use the latency limit stored with the mark when it was created; a
stage asked for another limit estimates over_limit from the histogram (never above the
exact count) until `reset_rollups` starts them again with the new limit.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from core.db.models import RollupMark, TrafficRollup, utcnow
from core.errors import SmlError
from core.latency_histogram import bin_sql, merge_encoded

# Values of a `thumbs` feedback row that count as negative (the router accepts these).
NEGATIVE_THUMBS: tuple[str, ...] = ("down", "-1", "0", "negative", "bad")
MARK = "traffic"
SPANS_MINUTES = (1, 60)
CHUNK_ROWS = 250_000
STAGE_ROLES = ("champion", "candidate")
# A literal list of our own constants (no quote among them): the rollup statements use it
# more than once, where one expanding bind parameter would not do.
_NEGATIVE_SQL = "(" + ", ".join(f"'{v}'" for v in NEGATIVE_THUMBS) + ")"
_ROLES_SQL = "('champion', 'candidate')"


class RollupsBehindError(SmlError):
    """The rollups could not be brought up to date now (a writer held the traffic table
    past the lock timeout): compute the figures exactly instead."""


@dataclass(frozen=True, slots=True)
class Mark:
    """How far the rollups have read, and the latency limit their over_limit counts use."""

    traffic_id: int
    feedback_id: int
    limit_ms: float


def minute_sql(dialect: str, column: str) -> str:
    """SQL for the minute (since the epoch) of a timestamp column."""
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch FROM {column}) / 60) AS BIGINT)"
    return f"CAST(strftime('%s', {column}) AS INTEGER) / 60"


def negative_exists_sql(request_id: str, *, upto: str | None = None) -> str:
    """SQL: the request has negative thumbs feedback (with id <= `upto`, when given)."""
    bound = f" AND f.id <= {upto}" if upto else ""
    # our own constants only: every value is a bound parameter
    where = f"f.kind = 'thumbs' AND f.value IN {_NEGATIVE_SQL}{bound}"
    return f"EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = {request_id} AND {where})"  # noqa: S608


def _traffic_sql(dialect: str) -> str:
    """New traffic rows (t_old, t_new] per rollout, model, arm, minute and latency bin."""
    return f"""
WITH t AS (
    SELECT t.rollout_id, t.model_name, t.role, {minute_sql(dialect, "t.ts")} AS minute,
           {bin_sql("t.latency_ms")} AS bin,
           CASE WHEN t.error IS NOT NULL THEN 1 ELSE 0 END AS failed,
           CASE WHEN t.latency_ms > :limit_ms THEN 1 ELSE 0 END AS slow,
           CASE WHEN {negative_exists_sql("t.request_id", upto=":f_new")} THEN 1 ELSE 0 END
               AS negative
    FROM traffic t
    WHERE t.id > :t_old AND t.id <= :t_new AND t.rollout_id IS NOT NULL
      AND t.role IN {_ROLES_SQL}
)
SELECT rollout_id, model_name, role, minute, bin, count(*) AS n, sum(failed) AS errors,
       sum(slow) AS over_limit, sum(negative) AS negative_feedback
FROM t GROUP BY rollout_id, model_name, role, minute, bin
"""  # noqa: S608 (our constants; values are bound)


def _feedback_sql(dialect: str) -> str:
    """Requests already rolled up (id <= t_old) whose first negative thumbs is new."""
    return f"""
SELECT t.rollout_id, t.model_name, t.role, {minute_sql(dialect, "t.ts")} AS minute,
       count(DISTINCT t.id) AS negative_feedback
FROM feedback nf JOIN traffic t ON t.request_id = nf.request_id
WHERE nf.id > :f_old AND nf.id <= :f_new AND nf.kind = 'thumbs'
  AND nf.value IN {_NEGATIVE_SQL}
  AND t.id <= :t_old AND t.rollout_id IS NOT NULL AND t.role IN {_ROLES_SQL}
  AND NOT {negative_exists_sql("nf.request_id", upto=":f_old")}
GROUP BY t.rollout_id, t.model_name, t.role, minute
"""  # noqa: S608 (our constants; values are bound)


def ensure_ln(conn: Connection) -> None:
    """SQLite builds without math functions lack `ln`: give the connection Python's."""
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.exec_driver_sql("SELECT ln(2.0)")
    except OperationalError:
        import math

        raw = conn.connection.driver_connection
        raw.create_function("ln", 1, math.log, deterministic=True)  # type: ignore[union-attr]


_IN_FLIGHT_SQL = text("""
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()
  AND relation IN ('traffic'::regclass, 'feedback'::regclass)
""")


def safe_bounds(engine: Engine, *, lock_timeout_s: float = 5.0) -> tuple[int, int]:
    """(traffic id, feedback id) up to which every row that will ever exist is visible.

    Postgres: read the largest ids, then wait for the transactions that were writing to
    traffic or feedback at that moment (they hold ROW EXCLUSIVE on the table from before
    they draw an id until they end) to commit or roll back. No lock is taken: writers and
    autovacuum never wait for a refresh. SQLite: writers are serialised, the ids are safe.

    Raises:
        RollupsBehindError: if those writers are still running after `lock_timeout_s`.
    """
    with engine.connect() as conn:
        traffic, feedback = conn.execute(
            text("SELECT (SELECT coalesce(max(id), 0) FROM traffic), "
                 "(SELECT coalesce(max(id), 0) FROM feedback)")
        ).one()  # fmt: skip
        conn.rollback()
        if conn.dialect.name == "postgresql":
            _wait_for_writers(conn, lock_timeout_s)
    return int(traffic), int(feedback)


def _wait_for_writers(conn: Connection, timeout_s: float) -> None:
    """Wait until every transaction now writing traffic or feedback has ended."""
    waiting = set(conn.execute(_IN_FLIGHT_SQL).scalars())
    conn.rollback()
    deadline = time.monotonic() + timeout_s
    while waiting:
        if time.monotonic() > deadline:
            raise RollupsBehindError(
                f"traffic rollups: {len(waiting)} writer(s) held the traffic table "
                f"over {timeout_s} s"
            )
        time.sleep(0.005)
        waiting &= set(conn.execute(_IN_FLIGHT_SQL).scalars())
        conn.rollback()


@contextmanager
def mark_transaction(engine: Engine) -> Iterator[Connection]:
    """One refresh step's transaction (SQLite: the write lock taken first)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def insert_for(conn: Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def lock_mark(conn: Connection, *, limit_ms: float) -> Mark:
    """The mark row, locked until the transaction ends (created at zero with `limit_ms`
    the first time)."""
    conn.execute(
        insert_for(conn)(RollupMark)
        .values(name=MARK, traffic_id=0, feedback_id=0, limit_ms=limit_ms, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = conn.execute(
        select(RollupMark.traffic_id, RollupMark.feedback_id, RollupMark.limit_ms)
        .where(RollupMark.name == MARK)
        .with_for_update()
    ).one()
    return Mark(int(row.traffic_id), int(row.feedback_id), float(row.limit_ms))


def read_mark(engine: Engine) -> Mark | None:
    """The mark as committed (None before the first refresh)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RollupMark.traffic_id, RollupMark.feedback_id, RollupMark.limit_ms).where(
                RollupMark.name == MARK
            )
        ).one_or_none()
    return None if row is None else Mark(int(row[0]), int(row[1]), float(row[2]))


def refresh_rollups(
    engine: Engine,
    *,
    latency_limit_ms: float,
    chunk_rows: int = CHUNK_ROWS,
    lock_timeout_s: float = 5.0,
    bounds: tuple[int, int] | None = None,
) -> Mark:
    """Roll up every traffic and feedback row committed so far; return the new mark.
    `bounds`: `safe_bounds` as the caller read them (else read here).

    `latency_limit_ms` is stored with the mark the first time (over_limit counts); later
    calls keep the stored one. Each chunk of `chunk_rows` ids is one transaction.

    Raises:
        ValueError: if chunk_rows < 1.
        RollupsBehindError: if the safe bound could not be read in time (Postgres).
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    traffic_bound, feedback_bound = bounds or safe_bounds(engine, lock_timeout_s=lock_timeout_s)
    while True:
        with mark_transaction(engine) as conn:
            mark = lock_mark(conn, limit_ms=latency_limit_ms)
            if mark.traffic_id >= traffic_bound and mark.feedback_id >= feedback_bound:
                return mark
            t_new = max(mark.traffic_id, min(traffic_bound, mark.traffic_id + chunk_rows))
            f_new = max(mark.feedback_id, min(feedback_bound, mark.feedback_id + chunk_rows))
            ensure_ln(conn)
            deltas = _read_deltas(conn, mark, t_new=t_new, f_new=f_new)
            merge_deltas(conn, deltas)
            advance_mark(conn, t_new=t_new, f_new=f_new)
        if t_new >= traffic_bound and f_new >= feedback_bound:
            return Mark(t_new, f_new, mark.limit_ms)


@dataclass(slots=True)
class _Delta:
    """What one refresh adds to one rollup row."""

    n: int = 0
    errors: int = 0
    over_limit: int = 0
    negative_feedback: int = 0
    bins: dict[int, int] | None = None


Key = tuple[int, str, str, int, int]  # rollout, model, role, span_minutes, bucket


def _read_deltas(conn: Connection, mark: Mark, *, t_new: int, f_new: int) -> dict[Key, _Delta]:
    """Both passes (new traffic rows; new first negative feedback on older rows), added up
    per rollup row of every span."""
    deltas: dict[Key, _Delta] = defaultdict(_Delta)
    dialect = conn.dialect.name
    params = {"t_old": mark.traffic_id, "t_new": t_new, "f_old": mark.feedback_id,
              "f_new": f_new, "limit_ms": mark.limit_ms}  # fmt: skip
    for row in conn.execute(text(_traffic_sql(dialect)), params).mappings():
        for span in SPANS_MINUTES:
            key = (row["rollout_id"], row["model_name"], row["role"], span,
                   row["minute"] // span * span)  # fmt: skip
            delta = deltas[key]
            delta.n += int(row["n"])
            delta.errors += int(row["errors"])
            delta.over_limit += int(row["over_limit"])
            delta.negative_feedback += int(row["negative_feedback"])
            delta.bins = delta.bins or {}
            delta.bins[int(row["bin"])] = delta.bins.get(int(row["bin"]), 0) + int(row["n"])
    if f_new > mark.feedback_id and mark.traffic_id > 0:
        for row in conn.execute(text(_feedback_sql(dialect)), params).mappings():
            for span in SPANS_MINUTES:
                key = (row["rollout_id"], row["model_name"], row["role"], span,
                       row["minute"] // span * span)  # fmt: skip
                deltas[key].negative_feedback += int(row["negative_feedback"])
    return deltas


def merge_deltas(conn: Connection, deltas: dict[Key, _Delta]) -> None:
    """Add `deltas` to their rollup rows (read, add, upsert): only the mark's holder
    writes rollups, so no other writer can slip in between."""
    if not deltas:
        return
    existing = _existing_rows(conn, list(deltas))
    values = [_merged(key, delta, existing.get(key)) for key, delta in deltas.items()]
    stmt = insert_for(conn)(TrafficRollup)
    columns = {c: stmt.excluded[c] for c in ("n", "errors", "over_limit", "negative_feedback",
                                            "latency_bins")}  # fmt: skip
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["rollout_id", "model_name", "role", "span_minutes", "bucket"],
            set_=columns,
        ),
        values,
    )


# Postgres: the rollup rows of exactly these keys, one join against the key arrays. An OR
# of one condition per key (a refresh touches ~4 keys per rollout with traffic: 2 arms x 2
# spans) took ~15 ms with 40 rollouts, most of it planning the OR; this takes ~2 ms.
_EXISTING_PG = """
SELECT r.* FROM unnest(CAST(:rollout_ids AS integer[]), CAST(:model_names AS varchar[]),
                       CAST(:roles AS varchar[]), CAST(:spans AS integer[]),
                       CAST(:buckets AS bigint[]))
    AS k(rollout_id, model_name, role, span_minutes, bucket)
JOIN traffic_rollups r USING (rollout_id, model_name, role, span_minutes, bucket)
"""


def _existing_rows(conn: Connection, keys: list[Key]) -> dict[Key, Any]:
    """The rollup rows `keys` already hold (absent keys are new rows)."""
    cols = TrafficRollup.__table__.c
    if conn.dialect.name == "postgresql":
        columns = list(zip(*keys, strict=True))
        names = ("rollout_ids", "model_names", "roles", "spans", "buckets")
        query: Any = text(_EXISTING_PG).columns(*cols)
        rows = conn.execute(query, {n: list(c) for n, c in zip(names, columns, strict=True)})
    else:  # SQLite: one range of buckets per (rollout, model, arm, span) on the primary key
        ranges: dict[tuple[int, str, str, int], list[int]] = defaultdict(list)
        for key in keys:
            ranges[key[:4]].append(key[4])
        held = or_(*(
            and_(cols.rollout_id == r, cols.model_name == m, cols.role == role,
                 cols.span_minutes == span, cols.bucket.between(min(b), max(b)))
            for (r, m, role, span), b in ranges.items()
        ))  # fmt: skip
        rows = conn.execute(select(*cols).where(held))
    return {
        (row.rollout_id, row.model_name, row.role, row.span_minutes, row.bucket): row
        for row in rows
    }


def _merged(key: Key, delta: _Delta, row: Any) -> dict[str, Any]:
    """One rollup row's values after adding `delta` to what it held (`row`, or nothing)."""
    bins = merge_encoded(None if row is None else row.latency_bins, delta.bins or {})
    held = (0, 0, 0, 0) if row is None else (row.n, row.errors, row.over_limit,
                                             row.negative_feedback)  # fmt: skip
    return {
        "rollout_id": key[0], "model_name": key[1], "role": key[2],
        "span_minutes": key[3], "bucket": key[4],
        "n": held[0] + delta.n, "errors": held[1] + delta.errors,
        "over_limit": held[2] + delta.over_limit,
        "negative_feedback": held[3] + delta.negative_feedback,
        "latency_bins": bins,
    }  # fmt: skip


def advance_mark(conn: Connection, *, t_new: int, f_new: int) -> None:
    """Move the mark (same transaction as the rollups it covers)."""
    conn.execute(
        update(RollupMark)
        .where(RollupMark.name == MARK)
        .values(traffic_id=t_new, feedback_id=f_new, updated_at=utcnow())
    )


def reset_rollups(engine: Engine) -> None:
    """Drop every rollup and the mark in one transaction: the next refresh rolls up the
    whole traffic log again (with the latency limit it is given). For a changed latency
    limit, or a rollup suspected wrong."""
    with mark_transaction(engine) as conn:
        conn.execute(delete(TrafficRollup))
        conn.execute(delete(RollupMark))
