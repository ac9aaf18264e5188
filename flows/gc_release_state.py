"""`gc-release-state`: drop release states nothing may point at any more.

    prefect deployment run 'gc-release-state/prd' --param dry_run=true

Scheduled daily in stg and prd. Keeps the states of the model versions named by the last
RELEASE_STATE_KEEP releases of each env, by every active rollout (champion and candidate,
lead and bundle members) and of versions newer than any release (a candidate whose
rollout has not started); drops the others and every staging area a killed build left.
A staging area whose build is alive (its build lock held) is left for the next run.
"""

from __future__ import annotations

from prefect import flow

from config import get_settings
from core.db import state_database
from core.release_state import GcReport
from models import stateful_models
from tasks.release_state import collect_garbage
from tasks.reporting import publish_markdown


@flow(name="gc-release-state")
def gc_release_state(dry_run: bool = False) -> GcReport:
    """Drop every release state not retained (see the module docstring).

    Args:
        dry_run: only report what would be dropped.
    """
    settings = get_settings()
    with state_database(settings.database_url, wait_seconds=10) as engine:
        report = collect_garbage(engine, settings, stateful_models(), dry_run)

    # Report
    publish_markdown(
        key="gc-release-state",
        markdown=report.markdown(),
        description=report.describe(),
    )
    return report
