"""`promote-release`: one release travels to the next environment (dev -> stg -> prd).

Opens in `to_env` a canary rollout of exactly the versions (same artifact digests) that
`from_env`'s current release runs, one per model whose version differs; the controller
takes them from there. Refused when a version never completed a rollout in `from_env`
unless `force` (recorded on the rollout and its release as forced), and always when a
digest differs from the registry's:

    prefect deployment run 'promote-release/prd' \
        --params '{"from_env": "stg", "to_env": "prd", "actor": "ana", "reason": "rc ok"}'
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger

from config import get_settings
from core.db import state_database
from core.ledger import RolloutRecord
from core.promotion import promotion_markdown, promotion_summary
from core.reporting import artifact_key
from tasks.promotion import apply_promotion, plan_promotion, read_promotion
from tasks.registry import open_registry
from tasks.reporting import publish_markdown

Env = Literal["dev", "stg", "prd"]


@flow(name="promote-release")
def promote_release(
    from_env: Env, to_env: Env, actor: str, reason: str, force: bool = False
) -> list[RolloutRecord]:
    """Open in `to_env` the rollouts of `from_env`'s current release; return them."""
    settings = get_settings()
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract
        registry = open_registry(settings)
        facts = read_promotion(engine, registry, from_env, to_env)
        # Transform
        plan = plan_promotion(facts, force=force, actor=actor, reason=reason)
        # Load
        rollouts = apply_promotion(engine, plan, registry, settings.CANARY_STAGES)

    # Report
    summary = promotion_summary(from_env, to_env, rollouts)
    get_run_logger().info(summary)
    publish_markdown(
        key=artifact_key("promote-release", from_env, to_env, rollouts[0].id),
        markdown=promotion_markdown(summary, rollouts, actor),
        description=summary,
    )
    return rollouts
