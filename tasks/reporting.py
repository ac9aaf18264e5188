"""Prefect artifacts: the reports flows leave in the UI (markdown, tables, progress).

The text comes from core.reporting; these only publish it. Progress helpers are plain
functions, not tasks: a task run per progress tick would only clutter the run's graph.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE


@task(name="report-publish-markdown", cache_policy=NO_CACHE)
def publish_markdown(key: str, markdown: str, description: str) -> None:
    """Leave a markdown report as a Prefect artifact under `key`."""
    create_markdown_artifact(markdown=markdown, key=key, description=description)


@task(name="report-publish-table", cache_policy=NO_CACHE)
def publish_table(key: str, table: list[dict[str, Any]], description: str) -> None:
    """Leave a table (one dict per row) as a Prefect artifact under `key`."""
    create_table_artifact(table=table, key=key, description=description)


def start_progress(key: str, description: str) -> UUID:
    """A progress artifact at 0%; returns its id for `advance_progress`.

    Raises:
        TypeError: called from async code (Prefect would hand back a coroutine).
    """
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
    return _sync_result(artifact_id)


def advance_progress(artifact_id: UUID, done: int, total: int) -> None:
    """Set a progress artifact to `done` of `total` (as a percentage).

    Raises:
        TypeError: called from async code (Prefect would hand back a coroutine).
    """
    _sync_result(update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1)))


def _sync_result(value: object) -> UUID:
    """The artifact id Prefect's artifact calls return in sync code.

    They dispatch on the caller (`async_dispatch`) and are typed `UUID | Coroutine`: our
    flows are sync, so anything but a UUID means an async caller, a bug to report.
    """
    if not isinstance(value, UUID):
        raise TypeError(f"expected an artifact id, got {type(value).__name__}: call from sync code")
    return value
