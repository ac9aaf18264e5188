"""`rollback`: point an environment back at an earlier release, from the Prefect UI (a form
built from `RollbackRequest`) or a terminal:

    prefect deployment run 'rollback/prd' \
        --params '{"request": {"env": "prd", "actor": "ana", "reason": "v7 misroutes refunds"}}'

Refused with the reason when a version to be served again is judged `broken` under the
running image (core.compat); `force` proceeds and is recorded as forced.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from config import get_settings
from core.db import state_database
from core.ledger import ReleaseRecord
from core.manual_actions import RollbackRequest
from core.reporting import artifact_key, rollback_report_markdown, rollback_summary
from tasks.ledger import rollback_env
from tasks.registry import open_registry
from tasks.reporting import publish_markdown

__all__ = ["RollbackRequest", "rollback"]


@flow(name="rollback")
def rollback(request: RollbackRequest) -> ReleaseRecord:
    """Roll an env back in one state change; routers follow on their next poll."""
    settings = get_settings()
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract
        registry = open_registry(settings)
        # Load
        release = rollback_env(engine, registry, request, settings.IMAGE_VERSION)

    # Report
    summary = rollback_summary(request.env, release)
    get_run_logger().info(summary)
    publish_markdown(
        key=artifact_key("rollback", request.env, release.id),
        markdown=rollback_report_markdown(summary, release, request.actor),
        description=summary,
    )
    return release
