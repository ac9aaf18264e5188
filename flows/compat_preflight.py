"""`compat-preflight`: would the next image break what serves? Judged before it is built.

    prefect deployment run 'compat-preflight/prd' --param lock_path=/checkout/uv.lock

Judges every environment's champion, candidate and rollback targets (within
RELEASE_STATE_KEEP releases) under the environment a lock (or a requirements file, or an
existing interpreter) describes, built by uv once and cached under LOCAL_DIR; records
each verdict on its version under the lock's hash (a retrain on the image built from that
lock reuses it); leaves a report; and fails when a champion would be `broken`, or
`drifted` beyond COMPAT_DRIFT_TOLERANCE (the decision: `core.compat_preflight`).
"""

from __future__ import annotations

from prefect import flow

from config import get_settings
from core.compat_preflight import PreflightResult, preflight_markdown
from core.db import state_database
from core.errors import ConflictError
from tasks.compat_preflight import (
    judge_subjects,
    preflight_subjects,
    prepare_preflight_environment,
)
from tasks.registry import open_registry
from tasks.reporting import publish_markdown

__all__ = ["compat_preflight"]


@flow(name="compat-preflight")
def compat_preflight(
    lock_path: str | None = None,
    requirements_path: str | None = None,
    python_path: str | None = None,
    code_path: str | None = None,
) -> PreflightResult:
    """Judge what serves (and could serve) under another environment; give exactly one of
    `lock_path` (a uv.lock beside its pyproject.toml), `requirements_path`, `python_path`.

    Args:
        code_path: the project code the next image holds (default: this checkout).

    Raises:
        EnvironmentBuildError: the environment cannot be built or started.
        ConflictError: a champion would be broken or drift beyond the tolerance (after
            the report is left).
    """
    settings = get_settings()
    # Extract: the environment (built once), then what each env serves or could serve
    environment = prepare_preflight_environment(
        settings, lock=lock_path, requirements=requirements_path, python=python_path,
        code=code_path,
    )  # fmt: skip
    with state_database(settings.database_url, wait_seconds=10) as engine:
        registry = open_registry(settings)
        subjects = preflight_subjects(engine, registry, settings)

    # Transform + Load: judge each version there, record the verdicts by lock hash
    result = judge_subjects(registry, environment, subjects, settings)

    # Report
    publish_markdown(
        key="compat-preflight", markdown=preflight_markdown(result), description=result.summary()
    )
    if not result.passed:
        raise ConflictError(result.summary())
    return result
