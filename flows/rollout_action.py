"""`rollout-action`: start, pause, resume, abort, set the stage of, promote or roll back a
rollout from the Prefect UI (a form built from `RolloutActionRequest`) or a terminal:

    prefect deployment run 'rollout-action/prd' \
        --params '{"request": {"action": "pause", "rollout_id": 7,
                               "actor": "ana", "reason": "ticket 42"}}'
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from config import get_settings
from core.db import state_database
from core.ledger import RolloutRecord
from core.manual_actions import Action, RolloutActionRequest
from core.reporting import artifact_key, rollout_action_report_markdown, rollout_action_summary
from tasks.ledger import apply_rollout_action
from tasks.registry import open_registry
from tasks.reporting import publish_markdown

__all__ = ["Action", "RolloutActionRequest", "rollout_action"]


@flow(name="rollout-action")
def rollout_action(request: RolloutActionRequest) -> RolloutRecord:
    """Apply one manual action to a rollout through the ledger; leave a report."""
    settings = get_settings()
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract (no connection is made until an action needs MLflow)
        registry = open_registry(settings)
        # Load
        record = apply_rollout_action(engine, registry, request, settings)

    # Report
    summary = rollout_action_summary(request.action, record)
    get_run_logger().info(summary)
    publish_markdown(
        key=artifact_key("rollout", record.id, request.action),
        markdown=rollout_action_report_markdown(summary, request.actor, request.reason),
        description=summary,
    )
    return record
