"""Create the source tables: `queries` (synthetic banking-assistant queries) and
`faq_answers` (the FAQ answer corpus the faq-retriever's answer index is built from).

Usage:
    python create_data.py [--rows N] [--seed S] [--reset] [--days D]

The table is created over SQL on SOURCE_DATABASE_URL (SQLite locally; Postgres or
Supabase in production: Supabase is Postgres), never through a UI. Rows are
deterministic for a seed: row i has the id and content it would have in any run with
that seed, so a re-run inserts nothing twice, and a larger --rows only adds the new rows.

The data drifts: over the last months the bank launched the Pulse app, the Nova card,
"pockets", instant "zaps" and pay-in-4, and users' phrasing moved with it. A model
trained on recent queries beats one trained on old queries on recent traffic. The FAQ
answers (`faq_answers(answer_id, intent, text, created_at)`, several answers per intent,
each in older and newer wordings, core/synthetic/faq_answers.yaml) are written to the
same database with the same seed, idempotently too; `--reset` recreates both tables.

This script only parses arguments: the generator and its data files are the package
`core.synthetic` (core/synthetic/vocabulary.yaml, faq_answers.yaml), the console output
`cli.source_data`.
"""

from __future__ import annotations

import typer
from rich.console import Console

from cli.source_data import fill_source, print_summary
from config import ConfigError, load_settings
from core.db.engine import make_engine
from core.errors import SmlError
from core.source import FAQ_TABLE
from core.synthetic import (
    DEFAULT_DAYS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    count_rows,
    create_source_table,
    ensure_source_table,
    generate_queries,
    summarize_source,
)

# Re-exported for code that imported them from this script before they moved into the
# package; new code imports `core.synthetic`.
__all__ = [
    "count_rows",
    "create_source_table",
    "ensure_source_table",
    "generate_queries",
    "main",
]


def print_faq_answers(url: str, console: Console) -> None:
    """Print how many FAQ answers the source database holds (written by `fill_source`)."""
    engine = make_engine(url)
    try:
        console.print(f"{count_rows(engine, FAQ_TABLE)} FAQ answer(s) in {FAQ_TABLE!r}")
    finally:
        engine.dispose()


def main(
    rows: int = typer.Option(DEFAULT_ROWS, "--rows", min=0, help="rows to generate"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="random seed (same seed, same rows)"),
    reset: bool = typer.Option(False, "--reset", help="drop and recreate the table first"),
    days: int = typer.Option(DEFAULT_DAYS, "--days", min=1, help="days of history"),
) -> None:
    """Create the source tables on SOURCE_DATABASE_URL and fill them (idempotent)."""
    console = Console()
    try:
        settings = load_settings()
        fill_source(settings, rows, seed, reset, days, console)
        print_faq_answers(settings.source_database_url, console)
        print_summary(
            summarize_source(settings.source_database_url, settings.SOURCE_TABLE), console
        )
    except (ConfigError, SmlError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    typer.run(main)
