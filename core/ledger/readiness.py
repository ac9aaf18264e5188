"""Readiness gate: a model version that reads release state takes no traffic before its
state is published.

Every path that gives a version traffic asks here first: opening a rollout (shadow or
canary), the controller's advance and promote, an env rollback, an env promotion and the
shadow evaluation. Which models read state is the caller's knowledge (`stateful`: the
names of the families with a `state`, computed at the edges; core never imports models),
so with an empty `stateful` nothing is required and nothing is read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import Engine


def require_state_ready(
    engine: Engine, model_versions: Mapping[str, str], stateful: Collection[str]
) -> dict[str, str]:
    """{model: state key} of the stateful models among `model_versions`, each published.

    Raises:
        StateNotReadyError: naming each model version whose state is not ready, and the fix
            (`core.release_state.require_ready`).
    """
    if not any(name in stateful for name in model_versions):
        return {}
    # core.release_state reads releases through core.ledger: imported here, when a state is
    # really required, so that importing the ledger never imports it back (an import cycle).
    from core.release_state import require_ready

    return require_ready(engine, model_versions, stateful)
