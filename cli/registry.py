"""`sml registry`: registered model versions with their lineage and compat verdicts.

    sml registry                         # every model of Settings.MODELS, every version
    sml registry --model intent-classifier --image 2026.11.2
    sml registry show intent-classifier prd-champion   # default: <ENVIRONMENT>-champion
    sml registry -o json; sml registry show intent-classifier 3 -o json
    sml registry check intent-classifier 3    # judge under the running image, record it

Tables are built by `versions_table`, reused by the demo step and `sml term`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.options import Output, OutputFormat
from cli.records import print_json
from cli.resources import open_registry
from config import Settings, load_settings
from core.aliases import env_alias

if TYPE_CHECKING:
    from core.compat import CompatReport
    from core.registry import ModelRegistry, ModelVersionInfo

registry_app = typer.Typer(
    help="Model registry: versions, aliases, lineage tags and compat verdicts.",
    invoke_without_command=True,
)
console = Console()

VERDICT_STYLE = {
    "identical": "green",
    "compatible": "green",
    "drifted": "yellow",
    "broken": "red",
}


def verdict_cell(info: ModelVersionInfo, image_version: str) -> str:
    """The compat verdict of a version under `image_version`, styled.

    A version trained on that image is shown as `native`; `-` means not judged yet
    (`sml registry check` judges it).
    """
    if info.image_version == image_version:
        return "[green]native[/green]"
    verdict = info.compat_verdict(image_version)
    if verdict is None:
        return "[dim]-[/dim]"
    return f"[{VERDICT_STYLE.get(verdict, 'white')}]{verdict}[/]"


def other_verdicts(info: ModelVersionInfo, image_version: str) -> str:
    """Verdicts recorded under other images, `image: verdict`, comma separated."""
    from core.registry import TAG_COMPAT_PREFIX

    found = []
    for key, value in sorted(info.tags.items()):
        if key.startswith(TAG_COMPAT_PREFIX) and not key.endswith(".reason"):
            image = key.removeprefix(TAG_COMPAT_PREFIX)
            if image != image_version:
                found.append(f"{image}: {value}")
    return ", ".join(found)


def versions_table(
    registry: ModelRegistry,
    models: list[str],
    image_version: str,
    *,
    only_image: str | None = None,
) -> Table:
    """One row per version: aliases, image, code, accuracy, window, sha256, verdicts."""
    table = Table(title=f"model registry (running image {image_version})")
    for column in (
        "model",
        "version",
        "aliases",
        "image",
        "code",
        "created (UTC)",
        "holdout acc.",
        "window",
        "sha256",
        f"under {image_version}",
        "other verdicts",
    ):
        table.add_column(column, overflow="fold")
    for name in models:
        versions = registry.list_versions(name, image_version=only_image)
        if not versions:
            table.add_row(name, "-", "[dim]no versions[/dim]", *[""] * 8)
            continue
        for info in reversed(versions):
            aliases = ", ".join(f"[bold]{a}[/bold]" for a in sorted(info.aliases))
            accuracy = info.tags.get("holdout_accuracy")
            table.add_row(
                name,
                info.version,
                aliases,
                info.image_version,
                info.tags.get("code_version", ""),
                f"{info.created_at:%Y-%m-%d %H:%M}",
                f"{float(accuracy):.1%}" if accuracy else "",
                info.tags.get("training_window", ""),
                info.artifact_sha256[:12],
                verdict_cell(info, image_version),
                other_verdicts(info, image_version),
            )
    return table


def tags_table(info: ModelVersionInfo) -> Table:
    """Every tag of one version."""
    table = Table(title=f"{info.name} v{info.version} ({', '.join(info.aliases) or 'no alias'})")
    table.add_column("tag", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("run id", info.run_id)
    table.add_row("created", info.created_at.isoformat(timespec="seconds"))
    for key, value in sorted(info.tags.items()):
        table.add_row(key, value)
    return table


def describe_report(report: CompatReport) -> str:
    """One line: version, verdict (styled) and reason."""
    style = VERDICT_STYLE.get(report.verdict, "white")
    return (
        f"{report.name} v{report.version} under {report.image_version}: "
        f"[{style}][bold]{report.verdict}[/bold][/] ({report.reason})"
    )


def _champion(settings: Settings) -> str:
    """The alias a command means when none is named: this environment's champion."""
    return env_alias(settings.ENVIRONMENT, "champion")


@registry_app.callback()
def list_versions(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="one model (default: Settings.MODELS)")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="only versions trained on this image")
    ] = None,
    output: Output = OutputFormat.text,
) -> None:
    """List registered versions with aliases, lineage and compat verdicts."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    registry = open_registry(settings)
    models = [model] if model else list(settings.MODELS)
    if output is OutputFormat.json:
        running = settings.IMAGE_VERSION
        versions = [
            version_json(info, running)
            for name in models
            for info in reversed(registry.list_versions(name, image_version=image))
        ]
        print_json({"schema": "sml.registry/v1", "image_version": running, "versions": versions})
        return
    console.print(versions_table(registry, models, settings.IMAGE_VERSION, only_image=image))


def version_json(info: ModelVersionInfo, image_version: str) -> dict[str, Any]:
    """A registered version: aliases, lineage, the full sha256, the verdict under
    `image_version` (None: never judged there) and every tag."""
    return {
        "name": info.name,
        "version": info.version,
        "aliases": sorted(info.aliases),
        "image_version": info.image_version,
        "code_version": info.tags.get("code_version"),
        "created_at": info.created_at.isoformat(),
        "run_id": info.run_id,
        "artifact_sha256": info.artifact_sha256,
        "verdict": info.compat_verdict(image_version),
        "tags": dict(sorted(info.tags.items())),
    }


@registry_app.command("show")
def show_version(
    model: Annotated[str, typer.Argument(help="model name")],
    ref: Annotated[
        str | None,
        typer.Argument(help="version number or alias (default: <ENVIRONMENT>-champion)"),
    ] = None,
    output: Output = OutputFormat.text,
) -> None:
    """Every tag of one version (by number or alias, like `prd-champion`)."""
    settings = load_settings()
    registry = open_registry(settings)
    info = registry.resolve(model, ref or _champion(settings))
    if output is OutputFormat.json:
        print_json(
            {"schema": "sml.registry-version/v1"} | version_json(info, settings.IMAGE_VERSION)
        )
        return
    console.print(tags_table(info))


@registry_app.command("check")
def check_version(
    model: Annotated[str, typer.Argument(help="model name")],
    ref: Annotated[
        str | None,
        typer.Argument(help="version number or alias (default: <ENVIRONMENT>-champion)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds allowed to load the pickle")] = 120.0,
) -> None:
    """Judge a version under the running image (loads it in a subprocess) and record it."""
    from core.compat import check_version as judge
    from core.compat import record_verdict

    settings = load_settings()
    registry = open_registry(settings)
    info = registry.resolve(model, ref or _champion(settings))
    report = judge(registry, model, info.version, timeout_s=timeout)
    record_verdict(registry, report)
    console.print(describe_report(report), highlight=False)
    if report.verdict == "broken":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `sml registry` to the app, and the compat commands (`sml compat`, `sml retrain`)."""
    from cli.compat import register as register_compat

    app.add_typer(registry_app, name="registry")
    register_compat(app)


def step_registry_state(settings: Settings, console: Console) -> None:
    """Demo: the registry after the first champion (aliases, lineage, compat verdicts)."""
    registry = open_registry(settings)
    console.print(versions_table(registry, list(settings.MODELS), settings.IMAGE_VERSION))
    alias = _champion(settings)
    for name in settings.MODELS:
        champion = registry.version_by_alias(name, alias)
        if champion is not None:
            console.print(
                f"{name} {alias} v{champion.version}: image {champion.image_version}, "
                f"snapshot {champion.tags.get('data_snapshot_hash', '')[:12]}, "
                f"artifact sha256 {champion.artifact_sha256[:12]}, "
                f"golden digest {champion.golden_digest[:12]}"
            )


def term_registry(ctx: Any) -> ModelRegistry:
    """`sml term` preloader: `PRELOADED["registry"] = term_registry`."""
    return open_registry(ctx.settings)
