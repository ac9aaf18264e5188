"""The state database: table models, engines and migrations."""

from core.db.engine import (
    LEDGER_TABLES,
    check_ledger_tables,
    make_engine,
    session_scope,
    state_database,
    upgrade,
    wait_for_database,
)
from core.db.models import (
    ACTIVE_STATUSES,
    Base,
    Feedback,
    Release,
    ReleaseStateRow,
    Rollout,
    RolloutEvent,
    Traffic,
    utcnow,
)

__all__ = [
    "ACTIVE_STATUSES",
    "LEDGER_TABLES",
    "Base",
    "Feedback",
    "Release",
    "ReleaseStateRow",
    "Rollout",
    "RolloutEvent",
    "Traffic",
    "check_ledger_tables",
    "make_engine",
    "session_scope",
    "state_database",
    "upgrade",
    "utcnow",
    "wait_for_database",
]
