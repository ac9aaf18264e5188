"""The release ledger: the only writer of rollouts, rollout_events and releases.

Modules, one job each:
- `records`: record types, the protocols the ledger needs (registry, compat judgement);
- `releases`, `history`: appending releases, and questions about the past;
- `rollouts`: rollout transitions (advance, set stage, pause, resume, abort, rollback,
  record an event), on the row primitives of `rollout_rows`; opening one (a model or a
  bundle) in `rollout_start`, promoting one (one release for a whole bundle) in
  `rollout_promote`;
- `readiness`: no traffic for a stateful version before its release state is published;
- `reads`: rollouts and their events;
- `env_rollback`: a whole-env rollback as read -> judge -> pure plan -> one transaction;
- `registry_sync`: MLflow aliases and tags, moved after the database committed;
- `routing`: what routers serve; `transactions`: the per-env writer lock;
- `verdicts`: the production compat judgement (`core.compat`).
"""

from core.ledger.env_rollback import (
    EnvRollbackPlan,
    JudgedVersion,
    apply_env_rollback,
    plan_env_rollback,
    rollback_env,
)
from core.ledger.history import (
    ReleaseDiff,
    diff_releases,
    get_release,
    release_at,
    release_by_tag,
    releases_history,
)
from core.ledger.readiness import require_state_ready
from core.ledger.reads import (
    active_rollouts,
    completed_versions,
    get_rollout,
    last_figures,
    list_rollouts,
    rollout_events,
    rollout_stages,
)
from core.ledger.records import (
    SHADOW_STAGE,
    AliasRegistry,
    CompatJudgement,
    EventRecord,
    RolloutMode,
    RolloutRecord,
    VerdictFn,
    VersionInfo,
)
from core.ledger.releases import (
    ENVIRONMENTS,
    ReleaseRecord,
    check_env,
    current_release,
    record_release,
    record_release_in,
    release_tag,
)
from core.ledger.rollouts import (
    abort,
    advance_stage,
    check_stages,
    pause,
    promote,
    record_event,
    resume,
    rollback,
    set_stage,
    start_rollout,
)
from core.ledger.routing import RoutingState, routing_state
from core.ledger.transactions import lock_env, write_transaction

__all__ = [
    "ENVIRONMENTS",
    "SHADOW_STAGE",
    "AliasRegistry",
    "CompatJudgement",
    "EnvRollbackPlan",
    "EventRecord",
    "JudgedVersion",
    "ReleaseDiff",
    "ReleaseRecord",
    "RolloutMode",
    "RolloutRecord",
    "RoutingState",
    "VerdictFn",
    "VersionInfo",
    "abort",
    "active_rollouts",
    "advance_stage",
    "apply_env_rollback",
    "check_env",
    "check_stages",
    "completed_versions",
    "current_release",
    "diff_releases",
    "get_release",
    "get_rollout",
    "last_figures",
    "list_rollouts",
    "lock_env",
    "pause",
    "plan_env_rollback",
    "promote",
    "record_event",
    "record_release",
    "record_release_in",
    "release_at",
    "release_by_tag",
    "release_tag",
    "releases_history",
    "require_state_ready",
    "resume",
    "rollback",
    "rollback_env",
    "rollout_events",
    "rollout_stages",
    "routing_state",
    "set_stage",
    "start_rollout",
    "write_transaction",
]
