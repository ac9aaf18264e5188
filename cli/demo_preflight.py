"""The demo's preflight of a next image: what serves, judged under a real second environment.

Before the image bump, an operator is offered an image whose lock downgrades scikit-learn
to NEXT_IMAGE_CHANGES. `sml compat preflight` judges every environment's champion and
candidate under a real Python environment with those pins (built by uv once, cached under
LOCAL_DIR/compat-envs, which a fresh demo keeps), and refuses the image: the champions'
pickles do not predict there. The image bump that follows keeps the running pins.

Building the environment needs the package registry (or uv's cache): when it cannot be
built the step says why and the story goes on without it.
"""

from __future__ import annotations

from importlib import metadata

from rich.console import Console

from config import Settings

#: What the offered image changes from the running pins (a downgrade whose pickles are not
#: interchangeable with the running scikit-learn's: tests/core/compat_environments.py).
NEXT_IMAGE_CHANGES = {"scikit-learn": "1.4.2"}
REQUIREMENTS_FILE = "demo-next-image.txt"


def step_preflight(settings: Settings, console: Console) -> None:
    """Judge stg's and prd's champions under the offered image's pins, before it is built."""
    from cli.compat import describe_environment, environments_cache, preflight_table
    from cli.resources import open_registry
    from core.compat_envs import (
        EnvironmentBuildError,
        pinned_requirements,
        prepare_environment,
        spec_from_file,
    )
    from core.compat_preflight import preflight_subjects, run_preflight
    from core.db import state_database

    folder = environments_cache(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REQUIREMENTS_FILE
    text = pinned_requirements(NEXT_IMAGE_CHANGES)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    changes = ", ".join(
        f"{name} {metadata.version(name)} -> {pin}" for name, pin in NEXT_IMAGE_CHANGES.items()
    )
    console.print(f"an image is offered whose lock changes {changes}")
    console.print(f"[dim]$ sml compat preflight --requirements {path}[/dim]", highlight=False)
    try:
        with console.status("building that environment with uv (once, then cached)"):
            environment = prepare_environment(spec_from_file("requirements", path), folder)
    except EnvironmentBuildError as exc:
        console.print(f"[yellow]cannot build the environment, preflight skipped:[/yellow] {exc}")
        return
    console.print(describe_environment(environment), highlight=False)
    registry = open_registry(settings)
    with state_database(settings.database_url) as engine:
        subjects = preflight_subjects(
            engine, registry, envs=("stg", "prd"), models=settings.MODELS,
            keep=settings.RELEASE_STATE_KEEP,
        )  # fmt: skip
    result = run_preflight(
        registry, environment, subjects=subjects, tolerance=settings.COMPAT_DRIFT_TOLERANCE
    )
    console.print(preflight_table(result))
    console.print(f"[bold]{result.summary()}[/bold]", highlight=False)
    verdict = "refused: not built" if not result.passed else "would be safe"
    console.print(f"that image is {verdict}; the image bump below keeps the running pins")
