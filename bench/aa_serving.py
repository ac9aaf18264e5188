"""Benchmark: real-serving A/A canaries, counted: how often is an identical candidate rolled back?

Two versions of the intent classifier trained identically (the same snapshot, config and
seed) take turns: each run opens a canary of the version that is not the champion (stages
10 -> 50 -> 100 %), real `sml serve` processes on loopback answer a closed-loop load of
simulated users at 1 or at 32 connections (runs alternate), and the real controller
(`core.controller.reconcile`, the function the rollout-controller flow runs per tick) ticks
every `--tick` seconds on the traffic rows until it promotes or rolls back. The stages move
within seconds because the bench's Settings shorten CANARY_BAKE_SECONDS and
CANARY_MIN_SAMPLES; every other threshold (CANARY_ALPHA, margins, p95 limit) is the
configured one.

Users behave like users, the same on both arms: each has a need (an intent), asks, reads
the answer for a few seconds, and then reformulates or asks for an agent when the answer
was wrong, sometimes asks something new when it was right, sometimes gives thumbs, and
otherwise leaves; a connection serves whichever user is ready next, and a new user arrives
when none is, so the load stays closed-loop while one user's requests are seconds apart.

Every rollback of an identical candidate is false. Printed: each run's outcome, the gates
that fired, the candidate/champion p95 ratio (the controller's own `stage_figures` over the
stages where both arms served), then the false-rollback count and rate against CANARY_ALPHA
with a one-sided 95% upper bound.

    uv run python bench/aa_serving.py [--runs 24] [--routers 2] [--postgres]

`--postgres` runs on a fresh database at TEST_POSTGRES_URL (dropped at the end); the
default is a SQLite state database in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config import Settings
    from core.canary import CanaryPolicy
    from core.registry import ModelRegistry
    from core.tick import TickOutcome

ROOT = Path(__file__).resolve().parent.parent
MODEL = "intent-classifier"
ENV = "dev"
ACTOR = "aa-bench"
HAND_OFF = "talk_to_agent"
SML = [sys.executable, "-c", "from cli.main import main; main()"]
DATA_END = datetime(2026, 11, 1, tzinfo=UTC)  # a fixed snapshot: identical on every day
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
LATENCY_GATES = frozenset({"p95_limit", "p95_vs_champion"})


# --- configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class Behaviour:
    """What a simulated user does after an answer (identical on both arms)."""

    think_seconds: tuple[float, float] = (0.5, 3.0)
    """Reading time before the same user's next query (uniform; within the controller's
    follow-up window, so a next query counts as a reformulation)."""
    reformulate_if_wrong: float = 0.6
    agent_if_wrong: float = 0.2
    again_if_right: float = 0.5
    thumbs: float = 0.1
    """Chance of thumbs after an answer: down when wrong, up when right."""


@dataclass(frozen=True)
class AAConfig:
    """One bench: how many A/A rollouts, their load, the controller's pace."""

    runs: int = 24
    connections: tuple[int, ...] = (1, 32)
    routers: int = 2
    stages: tuple[float, ...] = (10.0, 50.0, 100.0)
    bake_seconds: float = 3.0
    min_samples: int = 100
    tick_seconds: float = 0.5
    followup_seconds: float = 4.0
    """CANARY_FOLLOWUP_SECONDS: users react within seconds here, not minutes."""
    abandonment_seconds: float = 6.0
    """CANARY_ABANDONMENT_SECONDS."""
    run_timeout_seconds: float = 180.0
    training_rows: int = 3_000
    seed: int = 7
    behaviour: Behaviour = field(default_factory=Behaviour)


@dataclass(frozen=True)
class StageSeen:
    """One stage as the controller judged it (the figures stored with its event)."""

    stage_index: int
    percent: float
    action: str
    champion_n: int
    champion_p95_ms: float | None
    candidate_n: int
    candidate_p95_ms: float | None
    breaches: tuple[str, ...]

    @property
    def p95_ratio(self) -> float | None:
        """Candidate p95 / champion p95 (None unless both arms served)."""
        if self.champion_p95_ms and self.candidate_p95_ms is not None:
            return self.candidate_p95_ms / self.champion_p95_ms
        return None

    def describe(self) -> str:
        """`10%: 0.98x` (or the arms' sizes where no ratio applies), and any breach."""
        ratio = self.p95_ratio
        both = ratio is not None and self.percent < 100.0
        seen = f"{ratio:.2f}x" if both else f"champion n={self.champion_n}"
        why = f" ({self.action}: {', '.join(self.breaches)})" if self.breaches else ""
        return f"{self.percent:g}%: {seen}{why}"


@dataclass(frozen=True)
class RunResult:
    """One A/A rollout: how it ended, who decided, and each stage as the controller saw it."""

    index: int
    connections: int
    rollout_id: int
    outcome: str  # promoted | rolled_back | undecided
    decided_by: str | None
    stages: tuple[StageSeen, ...]
    requests: int
    failed_requests: int
    users: int
    seconds: float

    @property
    def breaches(self) -> tuple[str, ...]:
        """The gates that rolled the candidate back (empty unless rolled back)."""
        return tuple(g for s in self.stages for g in s.breaches)

    @property
    def p95_ratio(self) -> float | None:
        """Median over the stages where both arms served of candidate p95 / champion p95."""
        ratios = [s.p95_ratio for s in self.stages if s.percent < 100.0]
        known = [r for r in ratios if r is not None]
        return statistics.median(known) if known else None


@dataclass(frozen=True)
class Summary:
    """The counts over every run, against the allowed family-wise rate alpha."""

    results: tuple[RunResult, ...]
    twin_agreement: float
    """Share of the users' texts on which the two versions give the same intent."""
    runs: int
    decided: int
    false_rollbacks: int
    alpha: float
    gates: Counter[str]
    median_ratio: dict[int, float]

    @property
    def rate(self) -> float:
        """False rollbacks / decided rollouts (0 when none was decided)."""
        return self.false_rollbacks / self.decided if self.decided else 0.0

    @property
    def upper_bound(self) -> float:
        """One-sided 95% Clopper-Pearson upper bound of the false-rollback rate."""
        from scipy.stats import beta

        k, n = self.false_rollbacks, self.decided
        return 1.0 if n == 0 or k == n else float(beta.ppf(0.95, k + 1, n - k))


# --- simulated users ------------------------------------------------------------------------
@dataclass(order=True)
class User:
    """A user waiting to send `text` (their current need is `intent`) at `ready_at`."""

    ready_at: float
    user_id: str = field(compare=False)
    intent: str = field(compare=False)
    text: str = field(compare=False)


class UserPool:
    """Users of one run: the earliest ready user asks next; a new one arrives when nobody is.

    Not thread-safe: one event loop drives it.
    """

    def __init__(
        self, texts: Mapping[str, Sequence[str]], behaviour: Behaviour, rng: random.Random
    ) -> None:
        self._texts = texts
        self._intents = sorted(texts)
        self._behaviour = behaviour
        self._rng = rng
        self._waiting: list[User] = []
        self._prefix = uuid.uuid4().hex[:8]
        self.users = 0

    def take(self, now: float) -> User:
        """The user who asks next: one whose reading time is over, else a new user."""
        if self._waiting and self._waiting[0].ready_at <= now:
            return heapq.heappop(self._waiting)
        self.users += 1
        intent = self._rng.choice(self._intents)
        return User(now, f"aa-{self._prefix}-{self.users}", intent, self._wording(intent))

    def answered(self, user: User, intent: str, now: float) -> str | None:
        """Record the answer `user` got; the user may come back later. Returns the thumbs
        value the user gives now ("up"/"down"), or None."""
        right = intent == user.intent
        b, draw = self._behaviour, self._rng.random()
        need: str | None = None
        if not right and draw < b.reformulate_if_wrong:
            need = user.intent
        elif not right and draw < b.reformulate_if_wrong + b.agent_if_wrong:
            need = HAND_OFF
        elif right and user.intent != HAND_OFF and draw < b.again_if_right:
            need = self._rng.choice(self._intents)
        if need is not None:
            ready = now + self._rng.uniform(*b.think_seconds)
            heapq.heappush(self._waiting, User(ready, user.user_id, need, self._wording(need)))
        if self._rng.random() < b.thumbs:
            return "up" if right else "down"
        return None

    def _wording(self, intent: str) -> str:
        return self._rng.choice(self._texts[intent])


@dataclass
class LoadCounts:
    """What the client sent in one run."""

    requests: int = 0
    failed: int = 0
    """Requests (queries or thumbs) not answered 200/202."""
    feedback: int = 0
    users: int = 0


async def _client(
    http: httpx.AsyncClient, pool: UserPool, stop: asyncio.Event, counts: LoadCounts
) -> None:
    """One closed-loop connection: the next ready user's query as soon as the last answers."""
    while not stop.is_set():
        user = pool.take(time.monotonic())
        response = await http.post("/predict", json={"text": user.text, "user_id": user.user_id})
        counts.requests += 1
        if response.status_code != 200:
            counts.failed += 1
            continue
        body = response.json()
        thumbs = pool.answered(user, body["intent"], time.monotonic())
        if thumbs is not None:
            feedback = {"request_id": body["request_id"], "kind": "thumbs", "value": thumbs}
            sent = await http.post("/feedback", json=feedback)
            counts.feedback += 1
            counts.failed += sent.status_code != 202


async def closed_loop(
    urls: Sequence[str], connections: int, pool: UserPool, stop: asyncio.Event
) -> LoadCounts:
    """`connections` closed-loop connections spread over the routers until `stop` is set."""
    counts = LoadCounts()
    per_router = -(-connections // len(urls))
    limits = httpx.Limits(max_connections=per_router, max_keepalive_connections=per_router)
    clients = [httpx.AsyncClient(base_url=u, limits=limits, timeout=60) for u in urls]
    try:
        await asyncio.gather(
            *(_client(clients[k % len(urls)], pool, stop, counts) for k in range(connections))
        )
    finally:
        for http in clients:
            await http.aclose()
    return counts


# --- setup: state database, twin versions, router processes -----------------------------------
def router_env(workdir: Path, database_url: str) -> dict[str, str]:
    """The settings of the router processes (and the bench's own), as env vars."""
    return {
        "SML_ENV_FILE": str(workdir / "no.env"),
        "ENVIRONMENT": ENV,
        "LOCAL_DIR": str(workdir / "local"),
        "DATABASE_URL": database_url,
        "SOURCE_DATABASE_URL": f"sqlite:///{workdir}/local/source.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
        "MLFLOW_ARTIFACT_LOCATION": str(workdir / "mlartifacts"),
        "MLFLOW_EXPERIMENT": "aa-bench",
        "MODEL_CACHE_DIR": str(workdir / "model-cache"),
        "TRAFFIC_SPILL_DIR": str(workdir / "local" / "spill"),
        "IMAGE_VERSION": "aa-bench",
        "MODELS": MODEL,
        "ROUTER_POLL_SECONDS": "0.2",
        "TRAFFIC_FLUSH_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
    }


def controller_settings(env: Mapping[str, str], config: AAConfig) -> Settings:
    """The controller's Settings: the routers' plus short stages (bake, samples, the users'
    follow-up and abandonment windows) and no deploy windows; alpha, margins and limits as
    configured."""
    from config import Settings, load_settings

    shared = {k: v for k, v in env.items() if k in Settings.model_fields}
    return load_settings(
        **shared,
        CANARY_STAGES=list(config.stages),
        CANARY_BAKE_SECONDS=config.bake_seconds,
        CANARY_MIN_SAMPLES=config.min_samples,
        CANARY_FOLLOWUP_SECONDS=config.followup_seconds,
        CANARY_ABANDONMENT_SECONDS=config.abandonment_seconds,
        CANARY_REQUIRE_APPROVAL=False,
        DEPLOY_WINDOWS="",
    )


def train_twins(registry: ModelRegistry, rows: int, seed: int) -> tuple[str, str]:
    """Train and register the intent classifier twice, identically; the two versions."""
    from core.synthetic import generate_queries
    from models import get_family
    from models.pipeline import train_family
    from models.registration import register_trained

    family = get_family(MODEL)
    versions = []
    for _ in range(2):
        frame = generate_queries(rows, seed, end=DATA_END)
        trained = train_family(frame, family, family.parse_config(None))
        versions.append(register_trained(registry, trained, family).version)
    return versions[0], versions[1]


def user_texts(rows: int, seed: int) -> dict[str, list[str]]:
    """Wordings per intent, from a snapshot the twins were not trained on."""
    from core.synthetic import generate_queries

    frame = generate_queries(rows, seed + 1000, end=DATA_END)
    return {str(k): list(g["text"]) for k, g in frame.groupby("intent")}


def twin_agreement(
    registry: ModelRegistry, twins: tuple[str, str], texts: Mapping[str, Sequence[str]]
) -> float:
    """Share of `texts` on which the two versions answer the same intent (1.0: twins)."""
    sample = [t for wordings in texts.values() for t in wordings]
    first, second = (registry.load(MODEL, v).predict(sample) for v in twins)
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(sample)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Block until `url`/ready answers 200.

    Raises:
        RuntimeError: the process exited or was not ready within 120 s (its log attached).
    """
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"sml serve at {url} not ready:\n{log.read_text()[-3000:]}")


@contextmanager
def routers(env: Mapping[str, str], count: int, workdir: Path) -> Iterator[list[str]]:
    """`count` real `sml serve` processes on free loopback ports; their URLs once ready.

    Stopped with SIGTERM (graceful: each flushes its traffic buffer) on exit.

    Raises:
        RuntimeError: a router did not become ready.
    """
    started: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for k in range(count):
            port, log = _free_port(), workdir / f"router-{k}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*SML, "serve", "--port", str(port), "--workers", "1"],  # --routers: processes
                    env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=out,
                )  # fmt: skip
            started.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
            _wait_ready(proc, urls[-1], log)
        yield urls
    finally:
        for proc in started:
            proc.send_signal(signal.SIGTERM)
        for proc in started:
            proc.wait(60)


@dataclass(frozen=True)
class Bench:
    """Everything a run needs: the state database, the controller's policy and registry,
    the twin versions, the routers, and the users' wordings."""

    engine: Engine
    settings: Settings
    policy: CanaryPolicy
    registry: ModelRegistry
    twins: tuple[str, str]
    urls: list[str]
    texts: dict[str, list[str]]
    config: AAConfig
    twin_agreement: float


@contextmanager
def aa_bench(workdir: Path, database_url: str, config: AAConfig) -> Iterator[Bench]:
    """Migrate the state database, train the twins, release the first, start the routers.

    Raises:
        RuntimeError: a router did not become ready.
    """
    from core.canary import CanaryPolicy
    from core.db import make_engine, upgrade
    from core.ledger import record_release
    from core.registry import ModelRegistry
    from models import FAMILIES, handoff_labels

    env = router_env(workdir, database_url)
    settings = controller_settings(env, config)
    engine = make_engine(database_url)
    upgrade(engine)
    registry = ModelRegistry.from_settings(settings, FAMILIES)
    twins = train_twins(registry, config.training_rows, config.seed)
    record_release(
        engine, env=ENV, code_version="aa-bench", image_version="aa-bench",
        model_versions={MODEL: twins[0]}, artifact_digests={}, reason="A/A bench", actor=ACTOR,
    )  # fmt: skip
    texts = user_texts(config.training_rows, config.seed)
    agreement = twin_agreement(registry, twins, texts)
    try:
        with routers(env, config.routers, workdir) as urls:
            policy = CanaryPolicy.from_settings(settings, handoff_labels=handoff_labels())
            yield Bench(engine, settings, policy, registry, twins, urls, texts, config, agreement)
    finally:
        engine.dispose()


# --- one run: a canary of the twin, under load, until the controller decides -------------------
def open_canary(bench: Bench) -> int:
    """Start a canary of the twin that is not the champion now; its rollout id."""
    from core.ledger import current_release, start_rollout

    release = current_release(bench.engine, ENV)
    champion = release.model_versions[MODEL] if release else bench.twins[0]
    candidate = bench.twins[1] if champion == bench.twins[0] else bench.twins[0]
    record = start_rollout(
        bench.engine, env=ENV, model_name=MODEL, candidate_version=candidate,
        stages=list(bench.config.stages), actor=ACTOR, reason="A/A: the same training twice",
    )  # fmt: skip
    return record.id


async def wait_serving(urls: Sequence[str], rollout_id: int, timeout: float = 60.0) -> None:
    """Wait until every router serves `rollout_id` with its candidate loaded.

    Raises:
        TimeoutError: not within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        pending = list(urls)
        while pending:
            ready = (await http.get(f"{pending[0]}/ready")).json()["models"][MODEL]
            if ready["rollout_id"] == rollout_id and ready["candidate_loaded"]:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending[0]} does not serve rollout #{rollout_id}: {ready}")
            await asyncio.sleep(0.1)


def tick(bench: Bench) -> list[TickOutcome]:
    """One tick of the real controller over the env's active rollouts (the flow's call)."""
    from core.controller import reconcile
    from models import stateful_models

    return reconcile(
        bench.engine, bench.policy, code_version="aa-bench", image_version="aa-bench",
        env=ENV, registry=bench.registry, stateful=stateful_models(),
        windows=bench.settings.deploy_windows,
    )  # fmt: skip


async def tick_until_decided(bench: Bench, rollout_id: int) -> str:
    """Tick every `tick_seconds` until the rollout is promoted or rolled back; its outcome,
    or `undecided` after `run_timeout_seconds`."""
    deadline = time.monotonic() + bench.config.run_timeout_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(bench.config.tick_seconds)
        outcomes = await asyncio.to_thread(tick, bench)
        for outcome in outcomes:
            if outcome.rollout_id == rollout_id and outcome.outcome in ("promoted", "rolled_back"):
                return str(outcome.outcome)
    return "undecided"


async def run_once(bench: Bench, index: int, connections: int) -> RunResult:
    """One A/A rollout under closed-loop load at `connections`, decided by the controller
    (aborted when undecided within the run timeout)."""
    from core.ledger import abort

    rollout_id = open_canary(bench)
    started = time.monotonic()
    await wait_serving(bench.urls, rollout_id)
    pool = UserPool(bench.texts, bench.config.behaviour, random.Random(bench.config.seed + index))
    stop = asyncio.Event()
    load = asyncio.create_task(closed_loop(bench.urls, connections, pool, stop))
    try:
        outcome = await tick_until_decided(bench, rollout_id)
    finally:
        stop.set()
        counts = await load
        counts.users = pool.users
    if outcome == "undecided":
        abort(bench.engine, rollout_id, actor=ACTOR, reason="A/A bench: run timeout")
    await asyncio.sleep(1.0)  # the routers flush their last rows and drop the ended rollout
    return run_result(bench, index, connections, rollout_id, outcome, counts, started)


def run_result(
    bench: Bench,
    index: int,
    connections: int,
    rollout_id: int,
    outcome: str,
    counts: LoadCounts,
    started: float,
) -> RunResult:
    """The run's facts from the ledger: who decided, and each judged stage's figures."""
    from core.ledger import rollout_events

    events = rollout_events(bench.engine, rollout_id)
    judged = [e for e in events if e.kind in ("advance", "promote", "rollback") and e.figures]
    stages = tuple(stage_seen(e.kind, e.figures, bench.config.stages) for e in judged)
    return RunResult(
        index=index, connections=connections, rollout_id=rollout_id, outcome=outcome,
        decided_by=events[-1].actor if outcome != "undecided" else None, stages=stages,
        requests=counts.requests, failed_requests=counts.failed, users=counts.users,
        seconds=time.monotonic() - started,
    )  # fmt: skip


def stage_seen(kind: str, evidence: Mapping[str, Any], stages: Sequence[float]) -> StageSeen:
    """A judged stage from its event's evidence ({"figures": ..., "verdict": ...})."""
    figures, verdict = evidence["figures"], evidence["verdict"]
    champion, candidate = figures["champion"], figures["candidate"]
    tests = verdict.get("tests") or {}
    return StageSeen(
        stage_index=verdict["stage_index"], percent=stages[verdict["stage_index"]], action=kind,
        champion_n=champion["n"], champion_p95_ms=champion["p95_ms"],
        candidate_n=candidate["n"], candidate_p95_ms=candidate["p95_ms"],
        breaches=tuple(sorted(name for name, test in tests.items() if test.get("reject"))),
    )  # fmt: skip


# --- the whole bench ---------------------------------------------------------------------------
async def run_all(bench: Bench, report: bool = True) -> list[RunResult]:
    """`runs` A/A rollouts, alternating the connection counts; printed as they end."""
    results = []
    levels = bench.config.connections
    for index in range(bench.config.runs):
        result = await run_once(bench, index, levels[index % len(levels)])
        results.append(result)
        if report:
            print(run_line(result), flush=True)
    return results


def run_aa(workdir: Path, database_url: str, config: AAConfig, report: bool = True) -> Summary:
    """Set up, run every A/A rollout, and summarise (printed when `report`).

    Raises:
        RuntimeError: a router did not become ready.
    """
    with aa_bench(workdir, database_url, config) as bench:
        results = asyncio.run(run_all(bench, report))
        summary = summarise(results, bench.policy.alpha, bench.twin_agreement)
    if report:
        print_summary(summary)
    return summary


def summarise(results: Sequence[RunResult], alpha: float, twin_agreement: float) -> Summary:
    """Count false rollbacks (every rollback of an identical candidate is one) and the
    gates behind them; the median p95 ratio per connection count."""
    decided = [r for r in results if r.outcome != "undecided"]
    rollbacks = [r for r in decided if r.outcome == "rolled_back"]
    ratios: dict[int, list[float]] = {}
    for r in results:
        if r.p95_ratio is not None:
            ratios.setdefault(r.connections, []).append(r.p95_ratio)
    fired = (f"{g} at {st.percent:g}%" for r in rollbacks for st in r.stages for g in st.breaches)
    gates = Counter(fired)
    return Summary(
        results=tuple(results),
        twin_agreement=twin_agreement,
        runs=len(results),
        decided=len(decided),
        false_rollbacks=len(rollbacks),
        alpha=alpha,
        gates=gates,
        median_ratio={c: statistics.median(v) for c, v in sorted(ratios.items())},
    )


def run_line(r: RunResult) -> str:
    """One run as one line: outcome, who decided, load, and each stage's p95 ratio."""
    stages = "; ".join(stage.describe() for stage in r.stages)
    return (
        f"  run {r.index:2d} ({r.connections:2d} conn) rollout #{r.rollout_id}: {r.outcome} "
        f"by {r.decided_by}, {r.requests} requests ({r.failed_requests} failed) of "
        f"{r.users} users in {r.seconds:.1f} s; p95 candidate/champion {stages}"
    )


def print_summary(s: Summary) -> None:
    """The count and rate of false rollbacks vs alpha, and the p95 ratio lines."""
    print(f"twins answer the same intent on {s.twin_agreement:.1%} of the users' texts")
    for connections, ratio in s.median_ratio.items():
        runs = [r.p95_ratio for r in s.results if r.connections == connections]
        listed = ", ".join("n/a" if x is None else f"{x:.2f}" for x in runs)
        print(f"per-run p95 ratios candidate/champion at {connections} connection(s): {listed}")
        print(
            f"p95 ratio candidate/champion at {connections} connection(s) (median of runs): "
            f"{ratio:.2f}x (identical twins: 1.00x expected)"
        )
    gates = ", ".join(f"{g} {n}" for g, n in s.gates.most_common()) or "none"
    print(f"gates behind the rollbacks: {gates}")
    print(
        f"false rollbacks: {s.false_rollbacks} of {s.decided} decided A/A rollouts "
        f"({s.runs - s.decided} undecided) = {s.rate:.3f} "
        f"(one-sided 95% upper bound {s.upper_bound:.3f}); allowed alpha {s.alpha:g}: "
        f"ratio {s.rate / s.alpha:.2f}x (target <= 1.00x)"
    )


# --- command line ------------------------------------------------------------------------------
@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database at TEST_POSTGRES_URL for this bench, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"sml_aa_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def parse_args(argv: Sequence[str] | None = None) -> tuple[AAConfig, bool]:
    """The bench's config from the command line, and whether to run on Postgres."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=AAConfig.runs)
    parser.add_argument("--routers", type=int, default=AAConfig.routers)
    parser.add_argument("--connections", default="1,32", help="alternated between runs")
    parser.add_argument("--bake-seconds", type=float, default=AAConfig.bake_seconds)
    parser.add_argument("--min-samples", type=int, default=AAConfig.min_samples)
    parser.add_argument("--tick", type=float, default=AAConfig.tick_seconds)
    parser.add_argument("--postgres", action="store_true", help="state db on TEST_POSTGRES_URL")
    args = parser.parse_args(argv)
    config = AAConfig(
        runs=args.runs, routers=args.routers,
        connections=tuple(int(c) for c in args.connections.split(",")),
        bake_seconds=args.bake_seconds, min_samples=args.min_samples, tick_seconds=args.tick,
    )  # fmt: skip
    return config, args.postgres or os.environ.get("BENCH_POSTGRES") == "1"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the bench and print the false-rollback count and rate."""
    config, on_postgres = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sml-bench-aa-") as tmp:
        workdir = Path(tmp)
        if on_postgres:
            with postgres_database() as url:
                run_aa(workdir, url, config)
        else:
            run_aa(workdir, f"sqlite:///{workdir}/state.db", config)
    print(f"bench time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
