"""The demo's preflight of a next image: what serves, judged under a real second environment.

Before the image bump, an operator is offered an image whose lock downgrades scikit-learn
to NEXT_IMAGE_CHANGES. `sml compat preflight` judges every environment's champion and
candidate under a real Python environment with those pins (built by uv once, cached under
LOCAL_DIR/compat-envs, which a fresh demo keeps), and refuses the image: the champions'
pickles do not predict there. The image bump that follows keeps the running pins.

The work runs beside the story, on the second core: the environment is built from the
demo's start (`start_build`), the champions are judged as soon as they exist (`start`,
after the v1 step), and the step prints what was found. Every part is the real one.

Building the environment needs the package registry (or uv's cache): when it cannot be
built the step says why and the story goes on without it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from config import Settings

#: What the offered image changes from the running pins (a downgrade whose pickles are not
#: interchangeable with the running scikit-learn's: tests/core/compat_environments.py).
NEXT_IMAGE_CHANGES = {"scikit-learn": "1.4.2"}
REQUIREMENTS_FILE = "demo-next-image.txt"


def _requirements(settings: Settings) -> Path:
    """The offered image's pins, written under the environments' cache (once)."""
    from cli.compat import environments_cache
    from core.compat_envs import pinned_requirements

    folder = environments_cache(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REQUIREMENTS_FILE
    text = pinned_requirements(NEXT_IMAGE_CHANGES)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _environment(settings: Settings) -> Any:
    """The offered image's environment, built by uv (or reused from the cache).

    Raises:
        EnvironmentBuildError: it cannot be built here.
    """
    from core.compat_envs import prepare_environment, spec_from_file

    path = _requirements(settings)
    return prepare_environment(spec_from_file("requirements", path), path.parent)


@dataclass
class Found:
    """What the preflight found: the environment and the result, or why it stopped."""

    environment: Any = None
    result: Any = None
    error: BaseException | None = None


@dataclass
class Preflight:
    """The preflight step, its work started in the background by the demo."""

    build: threading.Thread | None = None
    judge: threading.Thread | None = None
    found: Found = field(default_factory=Found)

    def start_build(self, settings: Settings) -> None:
        """Build (or reuse) the offered image's environment in the background."""

        def build() -> None:
            try:
                self.found.environment = _environment(settings)
            except BaseException as exc:  # shown by the step, in the story's thread
                self.found.error = exc

        self.found = Found()
        self.build = threading.Thread(target=build, name="preflight-build", daemon=True)
        self.build.start()

    def start(self, settings: Settings) -> None:
        """Judge stg's and prd's champions in the background (they exist: after v1)."""
        self.judge = threading.Thread(
            target=self._judge, args=(settings,), name="preflight-judge", daemon=True
        )
        self.judge.start()

    def _judge(self, settings: Settings) -> None:
        from cli.resources import open_registry
        from core.compat_preflight import preflight_subjects, run_preflight
        from core.db import state_database

        found = self.found
        try:
            if self.build is not None:
                self.build.join()
            if found.error is not None:
                return
            if found.environment is None:
                found.environment = _environment(settings)
            registry = open_registry(settings)
            with state_database(settings.database_url) as engine:
                subjects = preflight_subjects(
                    engine, registry, envs=("stg", "prd"), models=settings.MODELS,
                    keep=settings.RELEASE_STATE_KEEP,
                )  # fmt: skip
            found.result = run_preflight(
                registry,
                found.environment,
                subjects=subjects,
                tolerance=settings.COMPAT_DRIFT_TOLERANCE,
            )
        except BaseException as exc:  # shown by the step, in the story's thread
            found.error = exc

    def step(self, settings: Settings, console: Console) -> None:
        """Judge stg's and prd's champions under the offered image's pins, before it is built."""
        from cli.compat import describe_environment, preflight_table
        from core.compat_envs import EnvironmentBuildError

        changes = ", ".join(
            f"{name} {metadata.version(name)} -> {pin}" for name, pin in NEXT_IMAGE_CHANGES.items()
        )
        console.print(f"an image is offered whose lock changes {changes}")
        path = _requirements(settings)
        console.print(f"[dim]$ sml compat preflight --requirements {path}[/dim]", highlight=False)
        if self.judge is None:
            self.start(settings)
        assert self.judge is not None
        with console.status("judging the champions under that environment (built once by uv)"):
            self.judge.join()
        found, self.build, self.judge = self.found, None, None
        if isinstance(found.error, EnvironmentBuildError):
            console.print(
                f"[yellow]cannot build the environment, preflight skipped:[/yellow] {found.error}"
            )
            return
        if found.error is not None:
            raise found.error
        console.print(describe_environment(found.environment), highlight=False)
        result = found.result
        console.print(preflight_table(result))
        console.print(f"[bold]{result.summary()}[/bold]", highlight=False)
        verdict = "refused: not built" if not result.passed else "would be safe"
        console.print(f"that image is {verdict}; the image bump below keeps the running pins")
