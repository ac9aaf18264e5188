"""`sml compat preflight` and `sml retrain --reproduce`: know before you ship an image.

    sml compat preflight --lock ../next/uv.lock         # the next image's lock
    sml compat preflight --requirements pins.txt        # a list of pins
    sml compat preflight --python /opt/py311/bin/python # an existing interpreter
    sml retrain --reproduce intent-classifier 1         # train v1 again from its lineage

The preflight judges every environment's champion, candidate and rollback targets
(within RELEASE_STATE_KEEP releases) under that environment (built once by uv, cached
under LOCAL_DIR/compat-envs) and prints version, verdict and reason; it exits 1 when a
champion would be broken, or drifted beyond COMPAT_DRIFT_TOLERANCE. Registered from
`cli.registry.register`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer
from rich.console import Console
from rich.table import Table

from cli.resources import ledger_database, open_registry
from config import Settings, load_settings
from config.settings import Environment
from core.errors import SmlError

if TYPE_CHECKING:
    from core.compat_envs import PythonEnvironment
    from core.compat_preflight import PreflightResult
    from core.reproduce import Retrain

compat_app = typer.Typer(help="Compat verdicts under another environment.", no_args_is_help=True)
console = Console()
ENVS: tuple[str, ...] = get_args(Environment)
VERDICT_STYLE = {"identical": "green", "compatible": "green", "drifted": "yellow", "broken": "red"}


def environments_cache(settings: Settings) -> Path:
    """Where built environments are kept (and reused): LOCAL_DIR/compat-envs."""
    return settings.LOCAL_DIR / "compat-envs"


def preflight_table(result: PreflightResult) -> Table:
    """One row per judged version: model, version, roles, verdict, reason."""
    table = Table(title=f"preflight under {result.environment}")
    for column in ("model", "version", "roles", "verdict", "reason"):
        table.add_column(column, overflow="fold")
    for row in result.rows:
        report = row.report
        style = VERDICT_STYLE.get(report.verdict, "white")
        mark = " [bold red](blocks)[/]" if row.blocking else ""
        table.add_row(
            report.name,
            report.version,
            ", ".join(row.subject.roles),
            f"[{style}]{report.verdict}[/]{mark}",
            report.reason,
        )
    return table


def describe_environment(environment: PythonEnvironment) -> str:
    """One line: which environment, and what getting it cost (built or reused)."""
    how = "reused" if environment.reused else "built"
    return f"environment {environment.label}: {how} in {environment.seconds:.1f} s"


@compat_app.command("preflight")
def preflight(
    lock: Annotated[Path | None, typer.Option(help="a uv.lock (its pyproject.toml beside)")] = None,
    requirements: Annotated[Path | None, typer.Option(help="a requirements file of pins")] = None,
    python: Annotated[Path | None, typer.Option(help="an existing interpreter")] = None,
    code: Annotated[
        Path | None, typer.Option(help="the project code the image will hold (default: here)")
    ] = None,
    python_version: Annotated[
        str | None, typer.Option(help="Python of a built environment (default: this one's)")
    ] = None,
    record: Annotated[
        bool, typer.Option(help="record verdicts on the versions (a retrain reuses them)")
    ] = True,
    timeout: Annotated[float, typer.Option(help="seconds allowed to load one pickle")] = 120.0,
) -> None:
    """Judge every env's champion, candidate and rollback targets under another environment."""
    from core.compat_envs import prepare_environment, spec_from_choice
    from core.compat_preflight import preflight_subjects, run_preflight

    settings = load_settings()
    spec = spec_from_choice(
        lock=lock, requirements=requirements, python=python, code_root=code,
        python_version=python_version,
    )  # fmt: skip
    environment = prepare_environment(spec, environments_cache(settings))
    console.print(describe_environment(environment), highlight=False)
    registry = open_registry(settings)
    with ledger_database(settings) as engine:
        subjects = preflight_subjects(
            engine, registry, envs=ENVS, models=settings.MODELS, keep=settings.RELEASE_STATE_KEEP
        )
    result = run_preflight(
        registry,
        environment,
        subjects=subjects,
        tolerance=settings.COMPAT_DRIFT_TOLERANCE,
        timeout_s=timeout,
        record=record,
    )
    console.print(preflight_table(result))
    console.print(result.summary(), highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def retrain_with_family(family: Any) -> Retrain:
    """`core.reproduce.Retrain` for a model family: `models.pipeline.train_family` with
    the recorded configuration."""
    from core.reproduce import Retrained
    from models.pipeline import train_family

    def run(frame: Any, config: Mapping[str, Any]) -> Retrained:
        trained = train_family(frame, family, family.parse_config(dict(config)))
        snapshot = trained.snapshot
        return Retrained(trained.model, snapshot.digest, snapshot.rows, trained.window)

    return run


def retrain(
    model: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="version number")],
    reproduce: Annotated[
        bool, typer.Option("--reproduce", help="train again from the version's lineage")
    ] = False,
) -> None:
    """Retrain from a version's recorded lineage and compare (`--reproduce`)."""
    if not reproduce:
        raise SmlError(
            "only `sml retrain --reproduce MODEL VERSION` is a command: retraining for an "
            "image is the retrain-on-image-change flow"
        )
    from core.reproduce import reproduce_version
    from core.source import read_queries
    from models import get_family

    settings = load_settings()
    family = get_family(model)
    registry = open_registry(settings)
    report = reproduce_version(
        registry,
        model,
        version,
        read_snapshot=lambda until: read_queries(settings, until=until),
        retrain=retrain_with_family(family),
        code_version=settings.CODE_VERSION,
    )
    style = "green" if report.reproduced else "red"
    console.print(f"[{style}]{report.describe()}[/]", highlight=False)
    if not report.reproduced:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `sml compat` and `sml retrain` to the app."""
    app.add_typer(compat_app, name="compat")
    app.command("retrain")(retrain)
