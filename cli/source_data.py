"""The source data on a console: fill the source table with a progress bar, show its drift.

Used by `create_data.py` (the script) and by `sml demo` (its "source data" step); the
rows themselves come from `core.synthetic`.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config import Settings
from core.source import redacted_url
from core.synthetic import (
    DEFAULT_DAYS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    SourceSummary,
    create_source_table,
    summarize_source,
)


def print_summary(summary: SourceSummary, console: Console) -> None:
    """Print rows per intent, the date range and rows per month (showing the drift)."""
    if summary.rows == 0 or summary.first is None or summary.last is None:
        console.print("the source table is empty")
        return
    console.print(
        f"{summary.rows} queries from {summary.first:%Y-%m-%d} to {summary.last:%Y-%m-%d}"
    )
    intents = Table(title="rows per intent")
    intents.add_column("intent")
    intents.add_column("rows", justify="right")
    for intent, count in summary.per_intent.items():
        intents.add_row(intent, str(count))
    months = Table(title="rows per month (drift: app-era vocabulary)")
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
    """Create and fill the source table of `settings` with a progress bar; return inserts.

    Raises:
        DataError: invalid arguments or table name.
        SourceUnavailableError: the source database does not answer.
    """
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
