"""`rollback`: point an environment back at an earlier release, from the Prefect UI (a form
built from `RollbackRequest`) or a terminal:

    prefect deployment run 'rollback/prd' \
        --params '{"request": {"env": "prd", "actor": "ana", "reason": "v7 misroutes refunds"}}'

Refused with the reason when a version to be served again is judged `broken` under the
running image (core.compat); `force` proceeds and is recorded as forced.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from config import get_settings
from core.ledger import ReleaseRecord
from core.ledger.verdicts import compat_verdict_fn
from tasks.ledger import open_registry, open_state_database, report_task, rollback_env_task


class RollbackRequest(BaseModel):
    """Which env to roll back, to what, by whom and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Literal["dev", "stg", "prd"] = Field(description="environment to roll back")
    actor: str = Field(min_length=1, max_length=128, description="who does it")
    reason: str = Field(min_length=1, description="why (kept in the ledger and MLflow)")
    to_tag: str | None = Field(
        None, min_length=1, description="release tag to return to (default: the previous one)"
    )
    force: bool = Field(
        False, description="proceed even if a target version is judged broken (recorded)"
    )


@flow(name="rollback")
def rollback(request: RollbackRequest) -> ReleaseRecord:
    """Roll an env back in one state change; routers follow on their next poll."""
    logger = get_run_logger()
    settings = get_settings()
    # Extract
    engine = open_state_database(settings)
    registry = open_registry(settings)
    # Load
    release = rollback_env_task(
        engine,
        request.env,
        request.to_tag,
        request.actor,
        request.reason,
        request.force,
        registry,
        compat_verdict_fn(registry, settings.IMAGE_VERSION),
        settings.IMAGE_VERSION,
    )
    # Report
    models = ", ".join(f"{n} v{v}" for n, v in sorted(release.model_versions.items()))
    summary = f"{request.env} rolled back to {release.tag} ({models})"
    logger.info(summary)
    report_task(
        key=f"rollback-{request.env}-{release.id}",
        markdown=f"# rollback\n\n{summary}\n\n{release.reason}\n\nby {request.actor}\n",
        description=summary,
    )
    engine.dispose()
    return release
