"""The one retry policy of tasks that do I/O: retry transient failures only.

A database outage or an MLflow server hiccup is worth retrying; a DataError, a ledger
refusal (ConflictError) or a bug is not, and retrying would only repeat it.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from core.transient import is_transient_error


def retry_if_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failure was transient."""
    try:
        state.result()
    except Exception as exc:
        return is_transient_error(exc)
    return False


IO_TASK: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 5, 10],
    "retry_condition_fn": retry_if_transient,
    "cache_policy": NO_CACHE,  # these tasks take clients and engines: never cache them
}
"""Options for `@task(**IO_TASK)` on tasks that do I/O."""
