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

import numpy as np
from rich.console import Console
from rich.table import Table

from config import Settings, get_settings

MODEL = "intent-classifier"
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
    # the pre-canary load test: one short round (2 s per phase and model, not 5 x 2 s).
    # One 2 s round on a busy laptop is noise-bound (a twin-like v2 measured 0.49x v1's
    # saturation throughput once): wide margins, as for the canary's p95 above
    "LOADTEST_PHASE_SECONDS": "2",
    "LOADTEST_ROUNDS": "1",
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
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
MAX_TICKS_PER_STAGE = 10
HANDOFF = "talk_to_agent"
ANSWER_LEAD = "faq-retriever"  # whose role an /answer request is counted under
# The simulated users talk as users did over the last month (phrasing drifts: create_data.py)
USER_DAYS = 30
# The stale candidate of the behaviour story: v1's configuration on data this old.
STALE_DAYS = 120
STALE_USERS = 600  # users per controller tick in that story
STALE_CONFIG: dict[str, Any] = {"training_window_days": None, "word_ngram_max": 1}
# How a simulated user reacts to a right (True) or wrong (False) answer: thumbs (with a
# label half the time), leave without a word, ask again (rephrased), ask for an agent.
USER_REACTIONS: dict[bool, dict[str, float]] = {
    True: {"thumbs_up": 0.60, "leave": 0.36, "again": 0.03, "agent": 0.01},
    False: {"thumbs_down": 0.10, "leave": 0.10, "again": 0.55, "agent": 0.25},
}
Users = Callable[[Settings, int], dict[str, int]]
"""Simulated users: (settings, requests) -> requests served per role."""


def start_warm_up(settings: Settings) -> list[threading.Thread]:
    """Start Prefect's temporary server and create the MLflow store in the background.

    Both take tens of seconds on 2 cores (the server is a subprocess, the store runs its
    migrations); overlapping them with each other and the first steps saves that much.
    Join the threads before the first flow runs.
    """

    def prefect_server() -> None:
        if os.environ.get("PREFECT_API_URL"):
            return
        from prefect.server.api.server import SubprocessASGIServer

        SubprocessASGIServer().start(timeout=120)

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
class Lifecycle:
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

    def _users(
        self, settings: Settings, requests: int, endpoint: str = "predict"
    ) -> dict[str, int]:
        """`requests` simulated users, each with a short session through the router's
        `endpoint` (predict or answer): they ask, then react to the answer as users do
        (`USER_REACTIONS`): a wrong one makes them ask again or ask for an agent more
        often. Returns requests served per role (the retriever's role for /answer)."""
        client = self._router(settings)
        rng = np.random.default_rng(self.seed + self.served)
        roles: dict[str, int] = {}
        for k in range(requests):
            self._session(client, rng, f"user-{self.served + k}", roles, endpoint)
        self.served += requests
        self.service.writer.flush()
        return roles

    def _ask(self, client: Any, endpoint: str, i: int, user: str) -> tuple[str, str, bool]:
        """Query `i` as `user`: (request id, role, whether the user got what they asked:
        the intent from /predict; an answer of that intent from /answer)."""
        response = client.post(f"/{endpoint}", json={"text": self.texts[i], "user_id": user})
        response.raise_for_status()
        body = response.json()
        if endpoint == "answer":
            right = any(a["intent"] == self.intents[i] for a in body["answers"])
            return body["request_id"], body["served"][ANSWER_LEAD]["role"], right
        return body["request_id"], body["role"], body["intent"] == self.intents[i]

    def _session(
        self,
        client: Any,
        rng: np.random.Generator,
        user: str,
        roles: dict[str, int],
        endpoint: str,
    ) -> None:
        """One user: a query, a reaction; a follow-up query gets its own reaction (after
        which the user stops asking)."""
        i = int(rng.integers(len(self.texts)))
        for follow_up in (False, True):
            request_id, role, right = self._ask(client, endpoint, i, user)
            roles[role] = roles.get(role, 0) + 1
            weights = USER_REACTIONS[right]
            reaction = str(rng.choice(list(weights), p=list(weights.values())))
            if reaction in ("again", "agent") and not follow_up:
                i = self._next_query(rng, self.intents[i] if reaction == "again" else HANDOFF)
                continue
            if reaction.startswith("thumbs"):
                self._feedback(client, rng, request_id, reaction, self.intents[i])
            return

    def _next_query(self, rng: np.random.Generator, intent: str) -> int:
        """Another query of `intent` (the user rephrases, or asks for a person)."""
        same = [j for j, known in enumerate(self.intents) if known == intent]
        return int(rng.choice(same)) if same else int(rng.integers(len(self.texts)))

    @staticmethod
    def _feedback(
        client: Any, rng: np.random.Generator, request_id: str, reaction: str, intent: str
    ) -> None:
        """Thumbs up/down, and half the time the true intent as a label."""
        thumbs = {"request_id": request_id, "kind": "thumbs", "value": reaction.split("_")[1]}
        client.post("/feedback", json=thumbs).raise_for_status()
        if rng.random() < 0.5:
            label = {"request_id": request_id, "kind": "label", "value": intent}
            client.post("/feedback", json=label).raise_for_status()

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
                roles = (users or self._users)(settings, requests)
                served = time.monotonic() - started
                outcomes = rollout_controller(env=settings.ENVIRONMENT)
                ticked = time.monotonic() - started - served
                for outcome in outcomes:
                    if outcome.rollout_id == rollout_id:
                        console.print(
                            f"  {rollout.percent:>5g}%  served {_roles(roles)} "
                            f"[dim]({served:.1f} s)[/dim] -> tick [dim]({ticked:.1f} s)[/dim]: "
                            f"[bold]{outcome.outcome}[/bold]  [dim]{outcome.detail[:70]}[/dim]"
                        )
                        if outcome.outcome in ("advanced", "promoted", "rolled_back"):
                            last = ledger.last_figures(engine, [rollout_id]).get(rollout_id)
                            console.print(f"         [dim]{gate_summary(last)}[/dim]")
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
        self._print_load_test(settings, console)

    @staticmethod
    def _print_load_test(settings: Settings, console: Console) -> None:
        """The pre-canary load test the shadow evaluation ran (its ledger event)."""
        from core import ledger

        engine = _engine(settings)
        try:
            events = [
                e
                for r in ledger.active_rollouts(engine, settings.ENVIRONMENT)
                for e in ledger.rollout_events(engine, r.id)
                if e.kind == "load_test" and e.figures
            ]
        finally:
            engine.dispose()
        for event in events:
            figures = event.figures or {}
            sides = []
            for side in ("champion", "candidate"):
                at_rate = figures[side]["target_rate"]
                saturated = figures[side]["saturation"]
                quantiles = "/".join(_num(at_rate[q]) for q in ("p50_ms", "p95_ms", "p99_ms"))
                sides.append(
                    f"{side} v{figures[f'{side}_version']}: p50/p95/p99 {quantiles} ms, "
                    f"{_num(saturated['throughput_rps'], 0)} req/s at saturation"
                )
            console.print("load test on real routers (loopback): " + "; ".join(sides))
            console.print(f"[bold]{event.reason}[/bold]")

    def step_canary(self, settings: Settings, console: Console) -> None:
        """Controller ticks with users in between, stage by stage, up to promotion."""
        from core import ledger

        engine = _engine(settings)
        active = [r for r in ledger.active_rollouts(engine, settings.ENVIRONMENT)]
        engine.dispose()
        if not active:
            console.print("no active rollout (the shadow gate failed): nothing to canary")
            return
        self.rollouts.append(active[0].id)
        status = self._drive_canary(settings, console, active[0].id)
        console.print(f"rollout #{active[0].id}: [bold]{status}[/bold]")

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

    def step_confusing(self, settings: Settings, console: Console) -> None:
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
        self._canary(
            settings, console, info.version, [50.0, 100.0],
            "half the users at once: a stale model that never fails",
            users=lambda s, _: self._users(s, STALE_USERS),
        )  # fmt: skip

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
        from cli.resources import open_registry
        from core import ledger
        from core.plots import stage_plot
        from core.reporting import stage_records

        self.close()
        engine = _engine(settings)
        try:
            table = Table(title="releases of stg and prd")
            for column in ("#", "env", "tag", "models", "reason"):
                table.add_column(column)
            for env in ("stg", "prd"):
                for r in reversed(ledger.releases_history(engine, env, 10)):
                    models = str(r.model_versions)
                    table.add_row(str(r.id), env, r.tag, models, (r.reason or "")[:60])
            console.print(table)
            out_dir = settings.reports_dir
            for rollout_id in self.rollouts:
                rollout = ledger.get_rollout(engine, rollout_id)
                events = ledger.rollout_events(engine, rollout_id)
                console.print(
                    f"rollout #{rollout.id} v{rollout.candidate_version} vs "
                    f"v{rollout.champion_version}: {rollout.status}; events: "
                    + ", ".join(e.kind for e in events)
                )
                stages = stage_records(
                    rollout_id, events, ledger.rollout_stages(engine, rollout_id)
                )
                if stages:
                    path = stage_plot(
                        f"rollout #{rollout.id}: {MODEL} v{rollout.candidate_version} "
                        f"({rollout.status})",
                        [{"label": s.label, "figures": s.figures} for s in stages],
                        Path(out_dir) / f"rollout-{rollout.id}-stages.png",
                    )
                    console.print(f"  stage figures plotted: {path}")
            aliases = open_registry(settings).aliases(MODEL)
            console.print(f"MLflow aliases of {MODEL} (per environment): {aliases}")
            console.print(f"reports (PNG, markdown): {out_dir}")
        finally:
            engine.dispose()


def _engine(settings: Settings) -> Any:
    from core.db import make_engine

    return make_engine(settings.database_url)


def _roles(roles: dict[str, int]) -> str:
    return ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
