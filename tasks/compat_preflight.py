"""Prefect tasks of `compat-preflight`: each wraps one call of `core.compat_envs` or
`core.compat_preflight`.

Building an environment runs uv (the package registry) and retries only transient errors;
`EnvironmentBuildError` (a pin that does not exist, no uv) is an answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from prefect import get_run_logger, task
from sqlalchemy import Engine

from config import Settings
from config.settings import Environment
from core import compat_preflight
from core.compat_envs import PythonEnvironment, prepare_environment, spec_from_choice
from core.compat_preflight import PreflightResult, PreflightSubject
from core.registry import ModelRegistry
from tasks.policies import IO_TASK

ENVS: tuple[str, ...] = get_args(Environment)


@task(name="preflight-prepare-environment", **IO_TASK)
def prepare_preflight_environment(
    settings: Settings,
    *,
    lock: str | None,
    requirements: str | None,
    python: str | None,
    code: str | None,
) -> PythonEnvironment:
    """The environment to judge under, built by uv once (cached under LOCAL_DIR)."""
    spec = spec_from_choice(
        lock=Path(lock) if lock else None,
        requirements=Path(requirements) if requirements else None,
        python=Path(python) if python else None,
        code_root=Path(code) if code else None,
    )
    environment = prepare_environment(spec, settings.LOCAL_DIR / "compat-envs")
    how = "reused" if environment.reused else "built"
    get_run_logger().info("%s %s in %.1f s", how, environment.label, environment.seconds)
    return environment


@task(name="preflight-subjects", **IO_TASK)
def preflight_subjects(
    engine: Engine, registry: ModelRegistry, settings: Settings
) -> list[PreflightSubject]:
    """Every env's champion, candidate and rollback targets (RELEASE_STATE_KEEP releases)."""
    return compat_preflight.preflight_subjects(
        engine, registry, envs=ENVS, models=settings.MODELS, keep=settings.RELEASE_STATE_KEEP
    )


@task(name="preflight-judge", **IO_TASK)
def judge_subjects(
    registry: ModelRegistry,
    environment: PythonEnvironment,
    subjects: list[PreflightSubject],
    settings: Settings,
) -> PreflightResult:
    """Judge each subject under the environment and record the verdicts by lock hash."""
    result = compat_preflight.run_preflight(
        registry, environment, subjects=subjects, tolerance=settings.COMPAT_DRIFT_TOLERANCE
    )
    logger = get_run_logger()
    for row in result.rows:
        level = logger.warning if row.blocking else logger.info
        level("%s v%s: %s (%s)", row.report.name, row.report.version, row.report.verdict,
              row.report.reason)  # fmt: skip
    return result
