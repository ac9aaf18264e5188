"""Create the source table `queries` and fill it with synthetic banking-assistant queries.

Usage:
    python create_data.py [--rows N] [--seed S] [--reset] [--days D]

The table is created over SQL on SOURCE_DATABASE_URL (SQLite locally; Postgres or
Supabase in production: Supabase is Postgres), never through a UI. Rows are
deterministic for a seed: row i has the id and content it would have in any run with
that seed, so a re-run inserts nothing twice, and a larger --rows only adds the new rows.

The data drifts: over the last months the bank launched the Pulse app, the Nova card,
"pockets", instant "zaps" and pay-in-4, and users' phrasing moved with it. A model
trained on recent queries beats one trained on old queries on recent traffic.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable
from sqlalchemy import Engine, Executable, MetaData, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from config import ConfigError, Settings, load_settings
from core.db.engine import make_engine, wait_for_database
from core.errors import DataError, SmlError
from core.source import (
    QUERY_COLUMNS,
    SourceUnavailableError,
    check_table_name,
    redacted_url,
    source_table,
)

DEFAULT_ROWS = 6_000
DEFAULT_SEED = 42
DEFAULT_DAYS = 180
INSERT_BATCH = 1_000

# Phrasings per intent. "classic" ones exist all along (fading); "modern" ones appear
# as the app era arrives and use vocabulary the classic ones never do.
PHRASINGS: dict[str, dict[str, list[str]]] = {
    "check_balance": {
        "classic": [
            "what is my {account} balance",
            "how much money do i have in my {account} account",
            "check balance",
            "can you tell me my current balance",
            "i would like to know the balance of my {account} account",
            "balance inquiry for {account}",
            "how much is left in my account",
            "what is the available balance",
            "show me my account balance",
            "do i have enough money in {account} for a {amount} payment",
        ],
        "modern": [
            "how much is in my {pocket}",
            "whats my {pocket} looking like",
            "bal check on the pulse app",
            "how much can i spend this week",
            "show my spendable in the app",
            "is my {pocket} topped up",
            "whats left in my stash",
            "how much cash in my {pocket} rn",
        ],
    },
    "transfer_money": {
        "classic": [
            "i want to transfer {amount} to {person}",
            "send {amount} to my {account} account",
            "how do i wire money to another bank",
            "move {amount} from checking to savings",
            "make a transfer of {amount}",
            "transfer funds to {person}",
            "set up a bank transfer to {person}",
            "i need to send money abroad",
        ],
        "modern": [
            "zap {amount} to {person}",
            "beam {person} {amount}",
            "split the bill with {person}",
            "instant send {amount} to {person}",
            "pay {person} back via pulse",
            "can i zap {person} {amount} real quick",
            "request {amount} from {person}",
        ],
    },
    "card_lost": {
        "classic": [
            "i lost my {card}",
            "my {card} was stolen",
            "i cannot find my debit card",
            "block my card it is missing",
            "report a lost credit card",
            "someone stole my wallet with my cards",
            "i need a replacement card because mine is lost",
            "cancel my stolen card",
        ],
        "modern": [
            "freeze my nova i think i dropped it",
            "my nova card is gone",
            "lock my nova asap",
            "lost my phone and my wallet pass with it",
            "tap to pay card missing",
            "toggle off my nova its lost",
            "misplaced my nova can you pause it",
        ],
    },
    "reset_password": {
        "classic": [
            "i forgot my password",
            "reset my online banking password",
            "how do i change my password",
            "i am locked out of online banking",
            "my password is not working",
            "i need a new pin for internet banking",
            "cannot log in to my account",
        ],
        "modern": [
            "face id stopped working",
            "pulse keeps logging me out",
            "cant get the 2fa code",
            "passkey not working",
            "otp never arrives",
            "got locked out after the update",
            "magic link expired",
            "biometric login broken",
        ],
    },
    "update_address": {
        "classic": [
            "i moved and need to update my address",
            "change my mailing address",
            "update my home address to {street}",
            "how do i change the address on file",
            "my address has changed",
            "update my contact details",
        ],
        "modern": [
            "just moved update my addy",
            "new place! change addy in profile",
            "edit my addy to {street}",
            "my nova is shipping to my old place",
            "update where you ship my nova",
            "relocated, new addy is {street}",
        ],
    },
    "open_account": {
        "classic": [
            "i would like to open a {account} account",
            "how do i open a new account",
            "open a joint account with my {relation}",
            "what do i need to open a savings account",
            "start a new checking account",
            "can i open an account for my child",
        ],
        "modern": [
            "sign me up for pulse",
            "how do i get a nova",
            "open a {pocket} for my vacation",
            "create a new {pocket}",
            "join the waitlist for nova",
            "onboard me",
            "get a virtual card",
        ],
    },
    "close_account": {
        "classic": [
            "i want to close my account",
            "close my {account} account",
            "how do i cancel my account",
            "terminate my banking relationship",
            "shut down my savings account",
            "close the joint account",
        ],
        "modern": [
            "delete my pulse profile",
            "im done, delete everything",
            "remove my {pocket}",
            "cancel nova premium",
            "how do i deactivate pulse",
            "unsubscribe me from pulse plus",
        ],
    },
    "dispute_charge": {
        "classic": [
            "there is a charge i do not recognize",
            "i want to dispute a transaction of {amount}",
            "i was charged twice at {merchant}",
            "unauthorized charge on my statement",
            "refund a wrong payment of {amount}",
            "i did not make this purchase at {merchant}",
        ],
        "modern": [
            "sus {merchant} thing in my feed",
            "a {merchant} sub keeps billing me",
            "got double tapped at {merchant}",
            "random {amount} pending from {merchant} wtf",
            "billed for a free trial i cancelled",
            "flag this as fraud",
        ],
    },
    "loan_rates": {
        "classic": [
            "what are your mortgage rates",
            "what is the interest rate on a personal loan",
            "how much does a car loan cost",
            "current home loan interest rates",
            "can i get a loan for {amount}",
            "what is the apr on loans",
        ],
        "modern": [
            "buy now pay later options?",
            "can i split {amount} into 4",
            "whats the rate on pulse credit",
            "bnpl fees",
            "pay in 4 for my {merchant} order",
            "credit builder pricing",
        ],
    },
    "talk_to_agent": {
        "classic": [
            "i want to speak to a representative",
            "let me talk to a human",
            "customer service",
            "can i speak with someone",
            "connect me to an agent",
            "i need to call the bank",
            "operator",
        ],
        "modern": [
            "this bot is useless get me a real person",
            "live chat with human pls",
            "escalate this",
            "the chatbot doesnt get it",
            "dm a human",
            "ur bot is trash, real person",
        ],
    },
}
INTENTS: tuple[str, ...] = tuple(PHRASINGS)
# Vague queries that several intents produce alike: no model can tell them apart, which
# keeps accuracy realistic (below 100%) for every model.
AMBIGUOUS: dict[str, list[str]] = {
    "i have a problem with my card": ["card_lost", "dispute_charge", "reset_password"],
    "something is wrong with my account": [
        "check_balance",
        "dispute_charge",
        "reset_password",
        "close_account",
    ],
    "i need help with my money": ["check_balance", "transfer_money", "dispute_charge"],
    "question about my account": ["check_balance", "open_account", "close_account"],
    "can you help me with the app": ["reset_password", "talk_to_agent", "open_account"],
    "i need to change something": ["update_address", "reset_password", "close_account"],
    "about my card": ["card_lost", "open_account", "update_address"],
    "help": list(PHRASINGS),
}
AMBIGUOUS_SHARE = 0.08
#: Share of rows whose stored label is wrong (as with any human-labelled data).
LABEL_NOISE = 0.02
#: Relative volume of each intent.
INTENT_WEIGHTS: tuple[float, ...] = (18, 16, 8, 12, 6, 8, 4, 10, 6, 12)

SLOTS: dict[str, list[str]] = {
    "account": ["checking", "savings", "current", "business", "joint"],
    "pocket": ["pocket", "vault", "goal pot", "round-ups pot", "stash"],
    "card": ["debit card", "credit card", "bank card", "visa card", "atm card"],
    "person": ["mom", "dad", "alex", "sam", "my landlord", "jordan", "my sister", "priya"],
    "relation": ["wife", "husband", "partner", "son", "daughter"],
    "merchant": ["amazon", "netflix", "uber", "a gas station", "spotify", "walmart", "doordash"],
    "street": ["12 oak street", "4 elm road", "221b baker st", "90 pine ave", "7 lake drive"],
}
FILLER_PREFIX = ["hi", "hello", "hey", "um", "excuse me", "good morning", "quick question"]
FILLER_SUFFIX = ["please", "thanks", "thank you", "asap", "?", "!!", "pls", "thx"]
CHANNELS = ("web", "app", "phone", "chat")
LOCALES = ("en-US", "en-GB", "en-CA", "en-AU")
KEYBOARD_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


def modern_share(position: float) -> float:
    """Share of modern phrasings at `position` in the time range (0 = oldest, 1 = newest).

    None before 30% of the range, then rising linearly to 85% at the newest end.
    """
    return 0.0 if position < 0.3 else min(0.85, 0.85 * (position - 0.3) / 0.6)


def _fill(template: str, rng: random.Random) -> str:
    values = {name: rng.choice(options) for name, options in SLOTS.items()}
    values["amount"] = rng.choice(["$", "", "usd "]) + str(rng.choice([20, 50, 75, 100, 250, 1200]))
    return template.format(**values)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swap two neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a character
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double a character
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(KEYBOARD_NEIGHBOURS) + word[i + 1 :]  # fat finger


def add_noise(text: str, rng: random.Random) -> str:
    """Make a clean phrasing look typed by a person: fillers, typos, casing, punctuation."""
    words = [_typo(w, rng) if rng.random() < 0.06 else w for w in text.split()]
    if rng.random() < 0.25:
        words.insert(0, rng.choice(FILLER_PREFIX) + rng.choice(["", ",", "!"]))
    if rng.random() < 0.3:
        words.append(rng.choice(FILLER_SUFFIX))
    out = " ".join(words)
    casing = rng.random()
    if casing < 0.25:
        out = out[:1].upper() + out[1:]
    elif casing < 0.3:
        out = out.upper()
    if rng.random() < 0.2 and not out.endswith(("?", "!")):
        out += rng.choice(["?", ".", "..."])
    return out


def query_id(seed: int, index: int) -> str:
    """The deterministic id of row `index` for `seed`."""
    return "q_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GeneratedQuery:
    """One synthetic row of the source table."""

    query_id: str
    text: str
    intent: str
    created_at: datetime
    channel: str
    locale: str


def generate_query(seed: int, index: int, end: datetime, days: int) -> GeneratedQuery:
    """Row `index` for `seed`: the same in every run, whatever the number of rows asked."""
    rng = random.Random(f"stateful-ml:{seed}:{index}")
    # Volume grows over time: more rows near the end of the range.
    position = rng.random() ** 0.8
    created_at = end - timedelta(seconds=round((1.0 - position) * days * 86_400))
    intent = rng.choices(INTENTS, weights=INTENT_WEIGHTS)[0]
    era = "modern" if rng.random() < modern_share(position) else "classic"
    if rng.random() < AMBIGUOUS_SHARE:
        template = rng.choice([t for t, owners in AMBIGUOUS.items() if intent in owners])
    else:
        template = rng.choice(PHRASINGS[intent][era])
    text = add_noise(_fill(template, rng), rng)
    if rng.random() < LABEL_NOISE:
        intent = rng.choice(INTENTS)
    channel_weights = (4, 2, 3, 1) if era == "classic" else (1, 6, 1, 3)
    return GeneratedQuery(
        query_id=query_id(seed, index),
        text=text,
        intent=intent,
        created_at=created_at,
        channel=rng.choices(CHANNELS, weights=channel_weights)[0],
        locale=rng.choices(LOCALES, weights=(6, 2, 1, 1))[0],
    )


def default_end() -> datetime:
    """The end of the generated time range: today's midnight UTC (stable within a day)."""
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _check_args(rows: int, days: int, end: datetime | None) -> datetime:
    if rows < 0:
        raise DataError(f"rows must be >= 0, got {rows}")
    if days < 1:
        raise DataError(f"days must be >= 1, got {days}")
    if end is None:
        return default_end()
    if end.tzinfo is None:
        raise DataError("end must be a timezone-aware datetime")
    return end.astimezone(UTC)


def generate_queries(
    rows: int, seed: int, end: datetime | None = None, days: int = DEFAULT_DAYS
) -> pd.DataFrame:
    """Generate `rows` synthetic queries over the `days` before `end`, deterministically.

    Columns: query_id, text, intent, created_at (aware UTC), channel, locale; sorted by
    created_at. `end` defaults to today's midnight UTC.

    Raises:
        DataError: rows < 0, days < 1 or a naive `end`.
    """
    end_utc = _check_args(rows, days, end)
    records = [generate_query(seed, i, end_utc, days).__dict__ for i in range(rows)]
    frame = pd.DataFrame.from_records(
        records, columns=[*QUERY_COLUMNS, "channel", "locale"], nrows=rows
    )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    return frame.sort_values(["created_at", "query_id"], kind="stable").reset_index(drop=True)


ProgressCallback = Callable[[int], None]


def _insert_if_absent(engine: Engine, table_name: str, batch: list[dict[str, object]]) -> None:
    table = source_table(table_name)
    dialect = engine.dialect.name
    statement: Executable
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=["query_id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=["query_id"])
    else:
        raise DataError(f"unsupported source database dialect {dialect!r}")
    with engine.begin() as conn:
        conn.execute(statement, batch)


def count_rows(engine: Engine, table: str = "queries") -> int:
    """Rows in the source table (0 if it does not exist)."""
    sa_table = source_table(table)
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
    """Create the source table on `url` and insert the generated rows that are absent.

    Idempotent: rows already present (same seed and index) are left alone. Returns the
    number of rows inserted. `on_progress` is called with the size of each written batch.

    Raises:
        DataError: invalid arguments or table name.
    """
    check_table_name(table)
    engine = make_engine(url)
    try:
        wait_for_source(engine)
        ensure_source_table(engine, table, reset=reset)
        before = count_rows(engine, table)
        frame = generate_queries(rows, seed, end=end, days=days)
        records = frame.to_dict("records")
        for record in records:
            record["created_at"] = record["created_at"].to_pydatetime()
        for start in range(0, len(records), INSERT_BATCH):
            batch = records[start : start + INSERT_BATCH]
            _insert_if_absent(engine, table, batch)
            if on_progress is not None:
                on_progress(len(batch))
        return count_rows(engine, table) - before
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SourceSummary:
    """What the source table holds: totals per intent and per month."""

    rows: int
    first: datetime | None
    last: datetime | None
    per_intent: dict[str, int]
    per_month: list[tuple[str, int, float]]  # (YYYY-MM, rows, share of modern vocabulary)


MODERN_MARKERS: tuple[str, ...] = (
    "pulse",
    "nova",
    "zap",
    "beam",
    "pocket",
    "stash",
    "vault",
    "spendable",
    "addy",
    "bnpl",
    "pay in 4",
    "2fa",
    "otp",
    "passkey",
    "face id",
    "magic link",
    "biometric",
    "sus",
    "bot",
    "chatbot",
    "dm",
    "feed",
    "onboard",
    "virtual card",
)


def summarize_source(url: str, table: str = "queries") -> SourceSummary:
    """Count rows per intent and per month, with the share of app-era vocabulary per month.

    Raises:
        DataError: the table does not exist or is invalid.
    """
    from core.source import read_queries_sql

    engine = make_engine(url)
    try:
        frame = read_queries_sql(engine, table)
    finally:
        engine.dispose()
    if frame.empty:
        return SourceSummary(0, None, None, {}, [])
    lowered = frame["text"].str.lower()
    modern = lowered.str.contains(r"\b(?:" + "|".join(MODERN_MARKERS) + r")\b", regex=True)
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


def print_summary(summary: SourceSummary, console: Console) -> None:
    """Print rows per intent, the date range and rows per month (showing the drift)."""
    if summary.rows == 0:
        console.print("the source table is empty")
        return
    assert summary.first is not None
    assert summary.last is not None
    console.print(
        f"{summary.rows} queries from {summary.first:%Y-%m-%d} to {summary.last:%Y-%m-%d}"
    )
    intents = RichTable(title="rows per intent")
    intents.add_column("intent")
    intents.add_column("rows", justify="right")
    for intent, count in summary.per_intent.items():
        intents.add_row(intent, str(count))
    months = RichTable(title="rows per month (drift: app-era vocabulary)")
    months.add_column("month")
    months.add_column("rows", justify="right")
    months.add_column("app-era share", justify="right")
    months.add_column("")
    for month, count, share in summary.per_month:
        months.add_row(month, str(count), f"{share:.0%}", "█" * round(share * 20))
    console.print(intents)
    console.print(months)


def fill_source(
    settings: Settings, rows: int, seed: int, reset: bool, days: int, console: Console
) -> int:
    """Create and fill the source table of `settings` with a progress bar; return inserts."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"writing {settings.SOURCE_TABLE}", total=rows)
        inserted = create_source_table(
            settings.source_database_url,
            rows=rows,
            seed=seed,
            reset=reset,
            table=settings.SOURCE_TABLE,
            days=days,
            on_progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"{inserted} new row(s) in {settings.SOURCE_TABLE!r} at "
        f"{redacted_url(settings.source_database_url)} ({rows - inserted} already present)",
        soft_wrap=True,
    )
    return inserted


def step_source_data(settings: Settings, console: Console) -> None:
    """Demo step: create the source data (idempotent) and print its summary."""
    fill_source(
        settings, DEFAULT_ROWS, DEFAULT_SEED, reset=False, days=DEFAULT_DAYS, console=console
    )
    print_summary(summarize_source(settings.source_database_url, settings.SOURCE_TABLE), console)


def main(
    rows: int = typer.Option(DEFAULT_ROWS, "--rows", min=0, help="rows to generate"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="random seed (same seed, same rows)"),
    reset: bool = typer.Option(False, "--reset", help="drop and recreate the table first"),
    days: int = typer.Option(DEFAULT_DAYS, "--days", min=1, help="days of history"),
) -> None:
    """Create the source table on SOURCE_DATABASE_URL and fill it (idempotent)."""
    console = Console()
    try:
        settings = load_settings()
        fill_source(settings, rows, seed, reset, days, console)
        print_summary(
            summarize_source(settings.source_database_url, settings.SOURCE_TABLE), console
        )
    except (ConfigError, SmlError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(main)
