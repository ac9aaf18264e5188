"""The several-models part of `sml demo`: an embedder upgrade released as a bundle, rolled back.

The story, in stg, after the classifier's own canary:
1. an upgraded embedder configuration trains `faq-retriever` v(N+1); its answer index (the
   FAQ corpus embedded by that version) is built as release state, with a progress bar;
2. the classifier is retrained alongside, and the two roll out as one **bundle**: one salt,
   so each user gets both candidates or neither; simulated users ask `/answer` (thumbs up
   when an answer matches their intent) and the controller judges the bundle on those rows
   up to promotion;
3. an operator rolls stg back to the release before the upgrade: models and state pointer
   switch in one ledger write, nothing is rebuilt, and the router serves the previous
   answers again within the time it takes to poll (printed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from config import Settings

if TYPE_CHECKING:
    from cli.lifecycle import Lifecycle

RETRIEVER = "faq-retriever"
CLASSIFIER = "intent-classifier"
# The upgrade: a wider embedding with longer character n-grams (models/faq_retriever.py).
UPGRADED_EMBEDDER: dict[str, Any] = {"dims": 160, "char_ngram_max": 6}
PROBES = 40
RECOVERY_TIMEOUT_SECONDS = 10.0


def answer_ids(body: dict[str, Any]) -> tuple[str, ...]:
    """What a user sees of an /answer response: the answers, in order."""
    return tuple(item["answer_id"] for item in body["answers"])


@dataclass
class BundleStory:
    """The embedder-upgrade steps; shares the lifecycle's router and simulated users."""

    lifecycle: Lifecycle
    before: list[tuple[str, ...]] = field(default_factory=list)
    probes: list[tuple[str, str]] = field(default_factory=list)

    def _answer_users(self, settings: Settings, requests: int) -> dict[str, int]:
        """The lifecycle's simulated users, asking /answer: an answer of their intent among
        those shown is what they asked for."""
        return self.lifecycle._users(settings, requests, endpoint="answer")

    def _probe_answers(self, settings: Settings) -> list[tuple[str, ...]]:
        client = self.lifecycle._router(settings)
        found = []
        for user, text in self.probes:
            response = client.post("/answer", json={"text": text, "user_id": user})
            response.raise_for_status()
            found.append(answer_ids(response.json()))
        return found

    def step_embedder_upgrade(self, settings: Settings, console: Console) -> None:
        """Train an upgraded embedder, build its state, canary it bundled with the classifier."""
        from cli.resources import open_registry
        from cli.state import build_one
        from core import ledger
        from core.db import state_database
        from flows.train import train
        from models import stateful_models

        lc = self.lifecycle
        lc._router(settings)
        self.probes = [(f"probe-{i}", lc.texts[i]) for i in range(PROBES)]
        self.before = self._probe_answers(settings)
        retriever = train(model_name=RETRIEVER, config=UPGRADED_EMBEDDER)
        console.print(f"trained {RETRIEVER} v{retriever.version} with {UPGRADED_EMBEDDER}")
        classifier = train(model_name=CLASSIFIER)
        console.print(f"retrained {CLASSIFIER} v{classifier.version} to ship with it")
        with state_database(settings.database_url) as engine:
            registry = open_registry(settings)
            build_one(settings, engine, registry, (RETRIEVER, retriever.version), console)
            rollout = ledger.start_rollout(
                engine,
                env=settings.ENVIRONMENT,
                model_name=RETRIEVER,
                candidate_version=retriever.version,
                bundle={CLASSIFIER: classifier.version},
                stages=settings.CANARY_STAGES,
                actor="demo-operator",
                reason="embedder upgrade, with the classifier retrained alongside",
                stateful=stateful_models(),
            )
        console.print(
            f"bundle rollout #{rollout.id}: "
            + ", ".join(
                f"{m} v{rollout.champion_versions[m]} -> v{v}"
                for m, v in rollout.candidate_versions.items()
            )
            + " (one salt: a user gets both candidates or neither)"
        )
        lc.rollouts.append(rollout.id)
        lc._sync_router()
        status = lc._drive_canary(settings, console, rollout.id, users=self._answer_users)
        console.print(f"bundle rollout #{rollout.id}: [bold]{status}[/bold]")
        changed = sum(
            a != b for a, b in zip(self.before, self._probe_answers(settings), strict=True)
        )
        console.print(f"{changed} of {PROBES} probe questions now get different answers")

    def step_instant_rollback(self, settings: Settings, console: Console) -> None:
        """Roll stg back to the release before the upgrade: old answers, nothing rebuilt."""
        from cli.resources import open_registry
        from core import ledger
        from core.db import state_database
        from core.release_state import list_states
        from models import stateful_models

        env = settings.ENVIRONMENT
        with state_database(settings.database_url) as engine:
            states_before = len(list_states(engine))
            release = ledger.rollback_env(
                engine,
                env,
                actor="demo-operator",
                reason="roll back the embedder upgrade",
                registry=open_registry(settings),
                stateful=stateful_models(),
            )
            started = time.monotonic()
            console.print(f"$ sml rollback --env {env}  -> {release.tag}")
            while self._probe_answers(settings) != self.before:
                if time.monotonic() - started > RECOVERY_TIMEOUT_SECONDS:
                    raise RuntimeError("the router did not serve the previous answers in time")
                time.sleep(0.05)
            seconds = time.monotonic() - started
            states_after = len(list_states(engine))
        console.print(
            f"the router serves the previous answers {seconds:.2f} s after the rollback "
            f"(all {PROBES} probes identical); release states: {states_before} before, "
            f"{states_after} after (nothing rebuilt)"
        )
