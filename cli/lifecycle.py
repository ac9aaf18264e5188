"""The model lifecycle steps of `sml demo`: users, image bump, retrain, shadow, canary.

`Lifecycle` holds what the steps share (the in-process router, its HTTP client, the
simulated users' data); each public method is one demo step `(settings, console)`.
Everything runs on embedded defaults (SQLite, local MLflow, Prefect's temporary server,
started once for the whole demo) with the short canary policy of `DEMO_OVERRIDES`, so the
whole lifecycle fits in about a minute and a half:

  users (through the router, with thumbs and labels) -> image bump + retrain ->
  shadow evaluation (starts the canary) -> controller ticks: 20, 40, 70, 100% -> promote
  -> a faulty candidate (raises on half its inputs) -> the controller rolls it back.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from cli.demo_report import MODEL, print_load_test, print_summary
from cli.demo_server import DemoPrefectServer
from cli.demo_users import USER_DAYS, SimulatedUsers
from config import Settings, get_settings

DEMO_IMAGE = "demo-image-2"

# The demo's short canary policy (a laptop minute, not a production hour). Applied to the
# process environment for the demo only, before any step reads Settings.
DEMO_OVERRIDES: dict[str, str] = {
    # the story runs in stg (tags with -rc); what stg promotes then travels to prd
    "ENVIRONMENT": "stg",
    # the demo ships both families: the classifier alone, then an embedder upgrade bundled
    "MODELS": "intent-classifier,faq-retriever",
    "CANARY_STAGES": "20,40,70,100",
    "CANARY_BAKE_SECONDS": "0.5",
    "CANARY_MIN_SAMPLES": "30",
    # in process, the candidate path (thread pool + timeout) adds ~1-3 ms to ms-scale
    # models: a relative p95 margin of 50% would hold an identical candidate forever
    "CANARY_P95_MARGIN": "3",
    "CANARY_REQUIRE_APPROVAL": "false",
    "SHADOW_WINDOW_HOURS": "1",
    "SHADOW_SAMPLE_SIZE": "600",
    "SHADOW_BATCH_SIZE": "200",
    # the pre-canary load test: 8 s in 4 interleaved rounds, so a burst of other work hits
    # both models (one 2 s round put a twin at 3.97x its champion's p95); wide margins
    "LOADTEST_PHASE_SECONDS": "0.5",
    "LOADTEST_ROUNDS": "4",
    "LOADTEST_P95_MARGIN": "2",
    "LOADTEST_THROUGHPUT_MARGIN": "0.75",
    "ROUTER_POLL_SECONDS": "0.2",
    "TRAFFIC_FLUSH_SECONDS": "0.1",
    # simulated users react within milliseconds: follow-up and abandonment windows in seconds
    "CANARY_FOLLOWUP_SECONDS": "1",
    "CANARY_ABANDONMENT_SECONDS": "2",
}
PREFECT_QUIET: dict[str, str] = {
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
SERVER_START_SECONDS = 120.0
MAX_TICKS_PER_STAGE = 10
# The advance gate's checks that only time settles (core.canary.advance_gate)
WAITING_FOR_TIME = frozenset({"followed_answers", "bake_seconds"})
# The stale candidate of the behaviour story: v1's configuration on data this old.
STALE_DAYS = 120
STALE_USERS = 600  # users per controller tick in that story
# its 50% stage's CANARY_MIN_SAMPLES: with the demo's 30, one lucky tick could pass the
# advance gate (margin + 2 standard errors) before the always-valid test had seen enough
STALE_MIN_SAMPLES = 1200
STALE_CONFIG: dict[str, Any] = {"training_window_days": None, "word_ngram_max": 1}
Users = Callable[[Settings, int], dict[str, int]]
"""Simulated users: (settings, requests) -> requests served per role."""


def start_warm_up(settings: Settings, server: DemoPrefectServer | None) -> list[threading.Thread]:
    """Wait for the demo's Prefect server and create the MLflow store in the background.

    Both take tens of seconds on 2 cores (the server is a subprocess, spawned earlier:
    `cli.demo_server`; the store runs its migrations); overlapping them with each other
    and the first steps saves that much. Join the threads before the first flow runs.
    """

    def prefect_server() -> None:
        if server is not None:
            server.wait_ready(timeout=SERVER_START_SECONDS)

    def mlflow_store() -> None:
        from cli.resources import open_registry

        open_registry(settings).client.search_experiments()

    threads = [
        threading.Thread(target=prefect_server, name="warm-prefect", daemon=True),
        threading.Thread(target=mlflow_store, name="warm-mlflow", daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads


def apply_demo_environment() -> None:
    """Set the demo's policy and quiet Prefect logs; Settings are re-read afterwards.

    stg and prd share one state database and one MLflow store, as in the shipped config:
    here the embedded ones. Outside dev the state database must be named explicitly, so
    the embedded default is named by its absolute path (unless env or .env set one).
    """
    from config.settings import DEFAULT_DATABASE_URL, value_sources

    if value_sources()["DATABASE_URL"] == "default":
        embedded = Path(DEFAULT_DATABASE_URL.removeprefix("sqlite:///")).resolve()
        os.environ["DATABASE_URL"] = f"sqlite:///{embedded}"
    for key, value in (DEMO_OVERRIDES | PREFECT_QUIET).items():
        os.environ[key] = value
    get_settings.cache_clear()


@dataclass
class Lifecycle(SimulatedUsers):
    """State shared by the lifecycle steps of one demo run."""

    seed: int = 11
    stack: ExitStack = field(default_factory=ExitStack)
    client: Any = None
    service: Any = None
    texts: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    served: int = 0
    rollouts: list[int] = field(default_factory=list)

    # --- plumbing --------------------------------------------------------------------
    def reset(self) -> None:
        """Forget a previous run (close its router first)."""
        self.close()
        self.stack = ExitStack()
        self.texts, self.intents, self.rollouts, self.served = [], [], [], 0

    def close(self) -> None:
        """Stop the in-process router (flushes its traffic)."""
        self.stack.close()
        self.client = self.service = None

    def _router(self, settings: Settings) -> Any:
        if self.client is None:
            with warnings.catch_warnings():  # starlette's notice about httpx, not ours
                warnings.simplefilter("ignore", DeprecationWarning)
                from fastapi.testclient import TestClient

            from core.synthetic import generate_queries
            from serving.app import create_app

            app = create_app(settings)
            self.client = self.stack.enter_context(TestClient(app))
            self.service = app.state.service
            if not self.service.wait_ready(timeout=60):
                raise RuntimeError("the router did not load the champion within 60 s")
            users = generate_queries(3_000, seed=self.seed, days=USER_DAYS)
            self.texts = users["text"].tolist()
            self.intents = users["intent"].tolist()
        return self.client

    def _use_env(self, env: str) -> Settings:
        """Switch the demo to `env` (its own router, aliases and releases); new Settings."""
        if os.environ.get("ENVIRONMENT") != env:
            self.close()  # the in-process router serves one environment
            os.environ["ENVIRONMENT"] = env
            get_settings.cache_clear()
        return get_settings()

    def _sync_router(self) -> None:
        """Let the router see the ledger's new state now (it polls every 0.2 s anyway)."""
        if self.service is not None:
            self.service.poller.poll_once()

    def _drive_canary(
        self, settings: Settings, console: Console, rollout_id: int, users: Users | None = None
    ) -> str:
        """Users (default: /predict ones) + controller ticks until the rollout ends."""
        from cli.tables import gate_summary
        from core import ledger
        from flows.rollout_controller import rollout_controller

        engine = _engine(settings)
        serve = True
        try:
            for _ in range(MAX_TICKS_PER_STAGE * len(settings.CANARY_STAGES)):
                rollout = ledger.get_rollout(engine, rollout_id)
                if not rollout.is_active:
                    return rollout.status
                self._sync_router()
                # enough users for both arms to reach the minimum sample this tick
                share = min(rollout.percent, 100 - rollout.percent) or 100
                requests = math.ceil(settings.CANARY_MIN_SAMPLES * 150 / share)
                started = time.monotonic()
                roles = (users or self._users)(settings, requests) if serve else {}
                served = time.monotonic() - started
                outcomes = rollout_controller(env=settings.ENVIRONMENT)
                ticked = time.monotonic() - started - served
                for outcome in (o for o in outcomes if o.rollout_id == rollout_id):
                    console.print(
                        f"  {rollout.percent:>5g}%  served {_roles(roles) or 'nobody new'} "
                        f"[dim]({served:.1f} s)[/dim] -> tick [dim]({ticked:.1f} s)[/dim]: "
                        f"[bold]{outcome.outcome}[/bold]  [dim]{outcome.detail[:70]}[/dim]"
                    )
                    if outcome.outcome in ("advanced", "promoted", "rolled_back"):
                        last = ledger.last_figures(engine, [rollout_id]).get(rollout_id)
                        console.print(f"         [dim]{gate_summary(last)}[/dim]")
                    # held only until the follow-up windows pass: tick again soon, once
                    waits = set(outcome.waiting_on)
                    serve = not (serve and waits and waits <= WAITING_FOR_TIME)
                    if not serve:
                        time.sleep(settings.CANARY_FOLLOWUP_SECONDS / 2)
            return ledger.get_rollout(engine, rollout_id).status
        finally:
            engine.dispose()

    # --- steps -----------------------------------------------------------------------
    def step_champion(self, settings: Settings, console: Console) -> None:  # noqa: ARG002 (a demo step's signature)
        """Train v1 on the running image in stg (no champion yet: it becomes the champion);
        prd's retrain finds v1 for this image and gives prd its own first release of it."""
        from flows.retrain_on_image_change import retrain_on_image_change

        for env in ("stg", "prd"):
            self._use_env(env)
            for o in retrain_on_image_change():
                console.print(f"{env}: {o.model}: {o.action} v{o.version} ({o.reason})")
        self._use_env("stg")

    def step_users(self, settings: Settings, console: Console) -> None:
        """Simulated users through the router in process, with thumbs and labels."""
        roles = self._users(settings, 600)
        console.print(
            f"600 users, {sum(roles.values())} requests served: {_roles(roles)}; users react "
            "to wrong intents: they ask again, ask for an agent, thumbs down or leave"
        )

    def step_image_bump(self, settings: Settings, console: Console) -> None:  # noqa: ARG002 (a demo step's signature)
        """A new runtime image: judge the champion under it, retrain, open a candidate."""
        from flows.retrain_on_image_change import retrain_on_image_change

        os.environ["IMAGE_VERSION"] = DEMO_IMAGE
        get_settings.cache_clear()
        console.print(f"IMAGE_VERSION -> {DEMO_IMAGE}")
        for o in retrain_on_image_change(image_version=DEMO_IMAGE):
            console.print(f"{o.model}: {o.action} v{o.version} ({o.reason})")

    def step_shadow(self, settings: Settings, console: Console) -> None:
        """Replay recent traffic through champion and candidate; the gate starts the canary."""
        from flows.shadow_evaluation import shadow_evaluation

        report = shadow_evaluation(model_name=MODEL, latency_sample=100)
        console.print(
            f"{report.requests} requests replayed; agreement {report.agreement.describe()}"
        )
        if report.accuracy is not None:
            a = report.accuracy
            console.print(
                f"accuracy champion {a.champion.describe()} vs candidate {a.candidate.describe()}, "
                f"McNemar p={a.mcnemar_p_value:.3g}"
            )
        console.print(f"[bold]{report.gate.summary()}[/bold]")
        print_load_test(settings, console)

    def step_canary(self, settings: Settings, console: Console) -> None:
        """Controller ticks with users in between, stage by stage, up to promotion."""
        from core import ledger

        engine = _engine(settings)
        active = [r for r in ledger.active_rollouts(engine, settings.ENVIRONMENT)]
        engine.dispose()
        if not active:
            raise RuntimeError(
                "no active rollout: the shadow evaluation's gate failed (its verdict is above); "
                "the rest of the story needs the promoted v2"
            )
        self.rollouts.append(active[0].id)
        status = self._drive_canary(settings, console, active[0].id)
        console.print(f"rollout #{active[0].id}: [bold]{status}[/bold]")
        if status != "promoted":
            raise RuntimeError(
                f"rollout #{active[0].id} ended {status} within the demo's "
                f"{MAX_TICKS_PER_STAGE * len(settings.CANARY_STAGES)} ticks, not promoted: "
                "the rest of the story needs the promoted v2"
            )

    def step_promote_to_prd(self, settings: Settings, console: Console) -> None:  # noqa: ARG002 (a demo step's signature)
        """What stg promoted travels to prd: same versions and digests, its own canary."""
        from cli.tables import status_table
        from core.db import state_database
        from flows.promote_release import promote_release

        prd = self._use_env("prd")
        rollouts = promote_release(
            from_env="stg", to_env="prd", actor="demo-operator", reason="stg promoted it"
        )
        for rollout in rollouts:
            console.print(
                f"prd rollout #{rollout.id}: {rollout.model_name} v{rollout.candidate_version} "
                f"(champion v{rollout.champion_version}), as stg promoted it"
            )
            self.rollouts.append(rollout.id)
            status = self._drive_canary(prd, console, rollout.id)
            console.print(f"rollout #{rollout.id}: [bold]{status}[/bold]")
        console.print("[dim]$ sml status[/dim]")
        with state_database(prd.database_url) as engine:
            console.print(status_table(engine))
        self._use_env("stg")

    def step_faulty(self, settings: Settings, console: Console) -> None:
        """A faulty candidate (raises on half its inputs) goes to canary; it is rolled back."""
        from flows.train import train

        info = train(model_name=MODEL, config={"fault_rate": 0.5})
        console.print(f"trained faulty v{info.version} (fault_rate=0.5, a demo-only knob)")
        self._canary(
            settings, console, info.version, settings.CANARY_STAGES,
            "canary straight away (no shadow evaluation)",
        )  # fmt: skip

    def step_confusing(self, settings: Settings, console: Console) -> None:  # noqa: ARG002 (a demo step's signature)
        """A stale candidate: trained on data from before users' phrasing changed. It never
        fails and is as fast; its users ask again and ask for an agent: the behaviour
        gates (reformulation, hand-off) roll it back."""
        from core.db import utcnow
        from flows.train import train

        info = train(
            model_name=MODEL,
            config=STALE_CONFIG,
            data_until=utcnow() - timedelta(days=STALE_DAYS),
        )
        console.print(
            f"trained stale v{info.version}: v1's configuration, data older than {STALE_DAYS} days"
        )
        # enough users per tick for the evidence to build within a few ticks
        os.environ["CANARY_MIN_SAMPLES"] = str(STALE_MIN_SAMPLES)
        get_settings.cache_clear()
        try:
            self._canary(
                get_settings(), console, info.version, [50.0, 100.0],
                "half the users at once: a stale model that never fails",
                users=lambda s, _: self._users(s, STALE_USERS),
            )  # fmt: skip
        finally:  # apply_demo_environment set it so for the whole demo
            os.environ["CANARY_MIN_SAMPLES"] = DEMO_OVERRIDES["CANARY_MIN_SAMPLES"]
            get_settings.cache_clear()

    def _canary(
        self,
        settings: Settings,
        console: Console,
        version: str,
        stages: list[float],
        reason: str,
        users: Users | None = None,
    ) -> None:
        """Start a canary of classifier `version` in the demo's env, drive it to its end."""
        from core import ledger

        engine = _engine(settings)
        rollout = ledger.start_rollout(
            engine, env=settings.ENVIRONMENT, model_name=MODEL, candidate_version=version,
            stages=stages, actor="demo-operator", reason=reason,
        )  # fmt: skip
        engine.dispose()
        self.rollouts.append(rollout.id)
        self._sync_router()
        status = self._drive_canary(settings, console, rollout.id, users=users)
        console.print(f"rollout #{rollout.id}: [bold]{status}[/bold]")

    def step_summary(self, settings: Settings, console: Console) -> None:
        """Releases, rollouts with their events, aliases; PNG plots of each stage."""
        self.close()
        print_summary(settings, console, self.rollouts)


def _engine(settings: Settings) -> Any:
    from core.db import make_engine

    return make_engine(settings.database_url)


def _roles(roles: dict[str, int]) -> str:
    return ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
