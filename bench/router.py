"""Benchmark: the full router vs a bare FastAPI endpoint and `mlflow models serve`, all
serving the same registered version, at 1, 16 and 64 connections.

Each server runs in one process of its own (uvicorn, one worker, loopback; `mlflow models
serve -w 1`); one load generator (bench/loadgen.py: raw asyncio HTTP/1.1 keep-alive
connections, closed loop) drives them in interleaved rounds in the same run, the order
rotated every round so drifting machine load hits all alike. **full**: the real router
app with a canary at 50% (both arms through the micro-batcher, serving/batching.py),
online shadow of the champion arm, traffic logging to SQLite, metrics. **bare**: one
FastAPI route, the same pydantic request/response models, `predict_one` of the champion.
**mlflow**: `mlflow models serve` of the champion's registered version (`/invocations`,
one text per request, dataframe_split).

Printed per concurrency: req/s (median round), p50/p99 (pooled), server CPU ms/request,
and the ratios the targets of issue 13 are stated in: full/bare throughput (>= 2.0x at 16,
>= 2.5x at 64), full/mlflow (>= 4x), full p99 / bare p99 (<= 1.2x), full p50 - bare p50 at
1 connection (<= 2 ms).

    uv run python bench/router.py [--seconds 2] [--rounds 6] [--connections 1,16,64]
"""

# no `from __future__ import annotations`: FastAPI must resolve the bare endpoint's
# locally imported body type at definition time.
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wrk
from loadgen import Round, get_status, percentile, post_requests, run_round

ROOT = Path(__file__).resolve().parent.parent
MODEL = "intent-classifier"
TEXTS = [
    "I was charged twice for my subscription this month",
    "how do I reset my password",
    "the app crashes when I open settings",
    "can I get a refund for my last order",
    "where is my package, it has not arrived",
    "please cancel my account",
    "update the billing address on my invoice",
    "the export button does nothing",
]


# --- servers (run in a subprocess) ----------------------------------------------------
def _settings_env(workdir: Path) -> dict[str, str]:
    local = workdir / "local"
    return {
        "SML_ENV_FILE": str(workdir / "no.env"),
        "ENVIRONMENT": "dev",
        "LOCAL_DIR": str(local),
        "DATABASE_URL": f"sqlite:///{workdir}/state.db",
        "SOURCE_DATABASE_URL": f"sqlite:///{local}/source.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
        "MLFLOW_ARTIFACT_LOCATION": str(workdir / "mlartifacts"),
        "MLFLOW_EXPERIMENT": "bench",
        "MODEL_CACHE_DIR": str(workdir / "model-cache"),
        "TRAFFIC_SPILL_DIR": str(local / "spill"),
        "IMAGE_VERSION": "bench",
        "LOG_LEVEL": "WARNING",
        # /predict of the classifier alone: the router is ready once its champion loads
        "MODELS": MODEL,
    }


def serve_full(port: int) -> None:
    """The real router app on the settings from the environment."""
    import uvicorn

    from config import load_settings
    from serving.app import create_app

    uvicorn.run(
        create_app(load_settings()),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


def serve_bare(port: int, version: str) -> None:
    """A bare FastAPI endpoint: same request/response models, same model, nothing else."""
    import uuid

    import uvicorn
    from fastapi import FastAPI

    from config import load_settings
    from core.registry import ModelRegistry
    from serving.schemas import PredictRequest, PredictResponse

    model = ModelRegistry.from_settings(load_settings()).load(MODEL, version)
    app = FastAPI()

    @app.post("/predict", response_model=PredictResponse)
    async def predict(body: PredictRequest) -> PredictResponse:
        intent = model.predict_one(body.text)
        return PredictResponse(
            request_id=body.request_id or uuid.uuid4().hex,
            intent=intent,
            model_version=model.version,
            role="champion",
        )

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- setup ------------------------------------------------------------------------------
def prepare(workdir: Path) -> tuple[str, str]:
    """Register two real versions, release v1, open a canary of v2 at 50%.

    Settings are read once, before training (MLflow's fluent API may touch
    MLFLOW_TRACKING_URI in the process environment while it logs)."""
    os.environ.update(_settings_env(workdir))
    sys.path.insert(0, str(ROOT))
    from config import load_settings
    from core.db import make_engine, upgrade
    from core.ledger import record_release, set_stage, start_rollout
    from core.registry import ModelRegistry
    from tests.factories import train_and_register

    settings = load_settings()
    registry = ModelRegistry.from_settings(settings)  # the store the router will read
    v1 = train_and_register(registry, alias="champion").version
    v2 = train_and_register(registry, seed=11, alias="candidate").version
    engine = make_engine(settings.database_url)
    upgrade(engine)
    record_release(
        engine,
        env="dev",
        code_version="bench",
        image_version="bench",
        model_versions={MODEL: v1},
        artifact_digests={},
        reason="bench",
        actor="bench",
    )
    rollout = start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version=v2,
        stages=[50.0, 100.0],
        actor="bench",
        reason="bench",
    )
    set_stage(
        engine, rollout.id, stage_index=0, stages=[50.0, 100.0], actor="bench", reason="bench"
    )
    engine.dispose()
    return v1, v2


def _command(kind: str, port: int, version: str) -> list[str]:
    if kind == "mlflow":
        return [sys.executable, "-m", "mlflow", "models", "serve", "-m",
                f"models:/{MODEL}/{version}", "--env-manager", "local",
                "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    return [sys.executable, __file__, "--serve", kind, "--port", str(port),
            "--version", version]  # fmt: skip


def start_server(kind: str, workdir: Path, version: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server process and wait until it answers its readiness path."""
    from core.ports import free_port  # ROOT is on sys.path once prepare() ran

    port = free_port()
    env = {**os.environ, **_settings_env(workdir)}
    proc = subprocess.Popen(
        _command(kind, port, version),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ready_path = "/ping" if kind == "mlflow" else "/ready"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if asyncio.run(get_status(port, ready_path)) == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{kind} server not ready in time")


def bodies(kind: str, n: int = 4000) -> tuple[str, list[str]]:
    """The path and the bodies: the same texts and users for every server, in its own
    API's shape."""
    if kind == "mlflow":
        return "/invocations", [
            json.dumps({"dataframe_split": {"columns": ["text"], "data": [[text]]}})
            for text in (TEXTS[i % len(TEXTS)] for i in range(n))
        ]
    return "/predict", [
        json.dumps({"text": TEXTS[i % len(TEXTS)], "user_id": f"user-{i % 1000}"}) for i in range(n)
    ]


def payloads(kind: str) -> list[bytes]:
    """`bodies(kind)` as whole HTTP requests for bench/loadgen.py."""
    path, texts = bodies(kind)
    return post_requests(path, [t.encode() for t in texts])


def main() -> None:
    """Set up, run interleaved rounds at each concurrency, print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["full", "bare"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--version", default="1")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", default="1,16,64", help="comma-separated levels")
    parser.add_argument("--kinds", default="bare,full,mlflow", help="servers to compare")
    parser.add_argument("--wrk-rounds", type=int, default=2, help="0: no wrk rounds")
    parser.add_argument("--wrk-seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.serve == "full":
        serve_full(args.port)
        return
    if args.serve == "bare":
        serve_bare(args.port, args.version)
        return
    levels = [int(c) for c in args.connections.split(",")]
    kinds = args.kinds.split(",")
    with tempfile.TemporaryDirectory(prefix="sml-bench-router-") as tmp:
        workdir = Path(tmp)
        print("registering two versions and opening a 50% canary ...", flush=True)
        v1, _v2 = prepare(workdir)
        servers = {kind: start_server(kind, workdir, v1) for kind in kinds}
        try:
            rounds = _run(servers, levels, args.rounds, args.seconds)
            by_wrk = wrk.run_rounds(
                {kind: (proc.pid, port) for kind, (proc, port) in servers.items()},
                {kind: bodies(kind) for kind in kinds},
                levels,
                args.wrk_rounds,
                args.wrk_seconds,
            )
        finally:
            for proc, _port in servers.values():
                proc.terminate()
                proc.wait(60)
        import sqlite3

        with sqlite3.connect(workdir / "state.db") as conn:
            logged = dict(conn.execute("SELECT role, count(*) FROM traffic GROUP BY role"))
    print(f"traffic rows logged by the full router: {logged}")
    for level in levels:
        report([r for r in rounds if r.connections == level], level)
    wrk.report(by_wrk)


def _run(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    levels: list[int],
    rounds: int,
    seconds: float,
) -> list[Round]:
    """Warm every server up, then `rounds` interleaved rounds per level."""
    kinds = list(servers)
    loads = {kind: payloads(kind) for kind in kinds}
    done: list[Round] = []
    for level in levels:
        for kind, (proc, port) in servers.items():
            run_round(kind, proc.pid, port, loads[kind], 1.0, level)
        for k in range(rounds):
            order = kinds[k % len(kinds) :] + kinds[: k % len(kinds)]
            for kind in order:
                proc, port = servers[kind]
                r = run_round(kind, proc.pid, port, loads[kind], seconds, level)
                done.append(r)
                print(
                    f"  c={level:<3d} {r.kind:6s} {r.rps:7.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
                    f"p99 {r.p99_ms:8.2f} ms  cpu {r.cpu_ms_per_request:5.2f} ms/req  "
                    f"errors {r.errors}",
                    flush=True,
                )
    return done


def report(rounds: list[Round], level: int) -> None:
    """Per-server figures at one concurrency, and the ratios to the full router."""
    print(f"--- {level} connection(s) ---")
    kinds = sorted({r.kind for r in rounds}, key=["bare", "full", "mlflow"].index)
    by_kind = {kind: [r for r in rounds if r.kind == kind] for kind in kinds}
    summary = {}
    for kind, mine in by_kind.items():
        pooled = sorted(x for r in mine for x in r.latencies)
        summary[kind] = (
            statistics.median(r.rps for r in mine),
            percentile(pooled, 0.5) * 1000,
            percentile(pooled, 0.99) * 1000,
            statistics.median(r.cpu_ms_per_request for r in mine),
            sum(r.errors for r in mine),
        )
        s = summary[kind]
        print(
            f"{kind:6s}: {s[0]:7.0f} req/s  p50 {s[1]:7.2f} ms  p99 {s[2]:8.2f} ms  "
            f"cpu {s[3]:.2f} ms/req  errors {s[4]}"
        )
    if "full" not in summary:
        return
    full = summary["full"]
    for other in ("bare", "mlflow"):
        if other not in summary:
            continue
        pairs = [f.rps / b.rps for f, b in zip(by_kind["full"], by_kind[other], strict=True)]
        print(
            f"full/{other}: throughput {statistics.median(pairs):.2f}x (median of paired "
            f"rounds: {', '.join(f'{p:.2f}' for p in pairs)}); cpu per request "
            f"{summary[other][3] / full[3]:.2f}x less"
        )
    if "bare" in summary:
        bare = summary["bare"]
        print(
            f"full p99 / bare p99: {full[2] / bare[2]:.2f}x;  "
            f"full p50 - bare p50: {full[1] - bare[1]:+.2f} ms"
        )


if __name__ == "__main__":
    main()
