"""What a router serves before the state database has ever answered: the registry alias.

The ledger is the truth of what an environment serves. A router that starts while the
state database is unreachable has no last known state to keep serving, so until the
ledger first answers it serves each model's environment champion as the MLflow alias
`core.aliases.env_alias(ENVIRONMENT, "champion")` names it (read-only: the router never
moves an alias; loads are digest-verified as always). As soon as the ledger answers, the
router follows it, and a later outage keeps the ledger's last known state: the alias is
never consulted again (after a first read it could only be staler than what we hold).

The decision is a pure function (`state_source`) so it can be tested without threads;
the poller (serving/rollout_state.py) calls it from its own thread, off the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from core.aliases import env_alias
from core.ledger.routing import RoutingState

StateSource = Literal["ledger", "registry-alias"]
LEDGER: StateSource = "ledger"
REGISTRY_ALIAS: StateSource = "registry-alias"


class AliasedVersion(Protocol):
    """What an alias lookup answers: the version it points at."""

    @property
    def version(self) -> str:
        """The registered version number."""
        ...


class AliasSource(Protocol):
    """Where alias lookups go (the model registry in production)."""

    def version_by_alias(self, name: str, alias: str) -> AliasedVersion | None:
        """The version `alias` of model `name` points at, or None when it is not set."""
        ...


def state_source(
    *, ledger_answered: bool, ledger_ever_answered: bool, has_alias_source: bool
) -> StateSource | None:
    """Which state this poll applies: None keeps the plans in force.

    - the ledger answered: its state (always; it is the truth);
    - it did not, and never has: the registry alias, if the router has an alias source;
    - it did not, but did before: None (the last known ledger state keeps serving).
    """
    if ledger_answered:
        return LEDGER
    if not ledger_ever_answered and has_alias_source:
        return REGISTRY_ALIAS
    return None


def alias_states(
    source: AliasSource, env: str, models: Sequence[str]
) -> Mapping[str, RoutingState]:
    """Champion-only routing states from each model's `<env>-champion` alias.

    A model whose alias is not set is left out (it is not served, as with no release).

    Raises:
        Exception: whatever the registry raises when it cannot be read (the poller
            catches it and retries on its next poll).
    """
    alias = env_alias(env, "champion")
    states: dict[str, RoutingState] = {}
    for name in models:
        found = source.version_by_alias(name, alias)
        if found is not None:
            states[name] = RoutingState(model_name=name, champion_version=str(found.version))
    return states


__all__ = [
    "LEDGER",
    "REGISTRY_ALIAS",
    "AliasSource",
    "AliasedVersion",
    "StateSource",
    "alias_states",
    "state_source",
]
