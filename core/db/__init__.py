"""The state database: table models, engines and migrations."""

from core.db.engine import make_engine, session_scope, upgrade, wait_for_database
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
    "Base",
    "Feedback",
    "Release",
    "ReleaseStateRow",
    "Rollout",
    "RolloutEvent",
    "Traffic",
    "make_engine",
    "session_scope",
    "upgrade",
    "utcnow",
    "wait_for_database",
]
