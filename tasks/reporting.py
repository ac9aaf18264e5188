"""Prefect artifacts: the reports flows leave in the UI (markdown, tables, progress).

The text comes from core.reporting; these only publish it. Progress helpers are plain
functions, not tasks: a task run per progress tick would only clutter the run's graph.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
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

PROGRESS_EVERY_SECONDS = 0.5
"""The shortest interval between two writes of a progress artifact."""


@task(name="report-publish-markdown", cache_policy=NO_CACHE)
def publish_markdown(key: str, markdown: str, description: str) -> None:
    """Leave a markdown report as a Prefect artifact under `key`."""
    create_markdown_artifact(markdown=markdown, key=key, description=description)


@task(name="report-publish-table", cache_policy=NO_CACHE)
def publish_table(key: str, table: list[dict[str, Any]], description: str) -> None:
    """Leave a table (one dict per row) as a Prefect artifact under `key`."""
    create_table_artifact(table=table, key=key, description=description)


@dataclass
class Progress:
    """A progress artifact advanced as work completes, written at most once per
    `every_seconds` (and always at the end): each write is an API call, and a flow that
    maps a thousand quick chunks should not make a thousand of them."""

    artifact_id: UUID
    total: int
    every_seconds: float = PROGRESS_EVERY_SECONDS
    _written_at: float = field(default=-math.inf, repr=False)

    def advance(self, done: int) -> None:
        """Record `done` of `total`; written now if it is the end or the interval passed.

        Raises:
            TypeError: called from async code (Prefect would hand back a coroutine).
        """
        now = time.monotonic()
        if done < self.total and now - self._written_at < self.every_seconds:
            return
        self._written_at = now
        percent = 100.0 * done / max(self.total, 1)
        _sync_result(update_progress_artifact(self.artifact_id, progress=percent))


def start_progress(key: str, description: str, total: int) -> Progress:
    """A progress artifact at 0% of `total` units of work.

    Raises:
        TypeError: called from async code (Prefect would hand back a coroutine).
    """
    artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
    return Progress(_sync_result(artifact_id), total)


def _sync_result(value: object) -> UUID:
    """The artifact id Prefect's artifact calls return in sync code.

    They dispatch on the caller (`async_dispatch`) and are typed `UUID | Coroutine`: our
    flows are sync, so anything but a UUID means an async caller, a bug to report.
    """
    if not isinstance(value, UUID):
        raise TypeError(f"expected an artifact id, got {type(value).__name__}: call from sync code")
    return value
