"""Benchmark: the full router vs a bare FastAPI endpoint calling the same model.

Both servers run in their own process (uvicorn, one worker, loopback); one load generator
(raw asyncio HTTP/1.1 keep-alive connections, so the client costs little) drives them in
alternating rounds in the same run. The full router serves a canary at 50% with online
shadow of the champion arm and traffic logging to SQLite; the bare endpoint validates the
same request model, calls `predict_one` of the same registered champion version and
answers. Printed: requests/s, p50 and p99 latency of each, and the throughput ratio
full / bare (target >= 0.85).

    uv run python bench/router.py [--seconds 6] [--rounds 3] [--connections 16]
"""

# no `from __future__ import annotations`: FastAPI must resolve the bare endpoint's
# locally imported body type at definition time.
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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


def serve_full(port: int, shadow_batch: int) -> None:
    """The real router app on the settings from the environment."""
    import uvicorn

    from config import load_settings
    from serving.app import create_app

    uvicorn.run(
        create_app(load_settings(), shadow_max_batch=shadow_batch),
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    kind: str, workdir: Path, version: str, shadow_batch: int = 64
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server process and wait until /ready answers 200."""
    port = _free_port()
    env = {**os.environ, **_settings_env(workdir)}
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--port",
            str(port),
            "--version",
            version,
            "--shadow-batch",
            str(shadow_batch),
        ],
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            status = asyncio.run(_get_status(port, "/ready"))
            if status == 200:
                return proc, port
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{kind} server not ready in time")


async def _get_status(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return int(line.split()[1])


# --- load generator -----------------------------------------------------------------------
def _requests(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = json.dumps({"text": TEXTS[i % len(TEXTS)], "user_id": f"user-{i % 1000}"}).encode()
        head = (
            "POST /predict HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _connection(
    port: int, payloads: list[bytes], offset: int, stop: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    i = offset
    try:
        while time.perf_counter() < stop:
            payload = payloads[i % len(payloads)]
            i += 1
            started = time.perf_counter()
            writer.write(payload)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status_line:
                errors += 1
    finally:
        writer.close()
    return errors


@dataclass
class Round:
    """One timed run against one server."""

    kind: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float
    latencies: list[float]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(port: int, seconds: float, connections: int) -> tuple[list[float], int, float]:
    payloads = _requests(4000)
    latencies: list[float] = []
    started = time.perf_counter()
    stop = started + seconds
    errors = await asyncio.gather(
        *(_connection(port, payloads, k * 97, stop, latencies) for k in range(connections))
    )
    return latencies, sum(errors), time.perf_counter() - started


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def run_round(kind: str, pid: int, port: int, seconds: float, connections: int) -> Round:
    """Drive one server for `seconds`; return its throughput, latency percentiles and the
    server's CPU time per request (less sensitive to other load on the machine)."""
    cpu_before = process_cpu_seconds(pid)
    latencies, errors, elapsed = asyncio.run(_load(port, seconds, connections))
    cpu = process_cpu_seconds(pid) - cpu_before
    latencies.sort()
    n = len(latencies)
    return Round(
        kind,
        n / elapsed,
        _percentile(latencies, 0.5) * 1000,
        _percentile(latencies, 0.99) * 1000,
        errors,
        cpu * 1000 / max(n, 1),
        latencies,
    )


def main() -> None:
    """Set up, run alternating rounds, print the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=["full", "bare"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--version", default="1")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--shadow-batch", type=int, default=64, help="router shadow batch size (1 = unbatched)"
    )
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.serve == "full":
        serve_full(args.port, args.shadow_batch)
        return
    if args.serve == "bare":
        serve_bare(args.port, args.version)
        return

    with tempfile.TemporaryDirectory(prefix="sml-bench-router-") as tmp:
        workdir = Path(tmp)
        print("registering two versions and opening a 50% canary ...", flush=True)
        v1, _v2 = prepare(workdir)
        servers = {
            kind: start_server(kind, workdir, v1, args.shadow_batch) for kind in ("bare", "full")
        }
        try:
            for kind, (proc, port) in servers.items():  # warm up both
                run_round(kind, proc.pid, port, 1.0, args.connections)
            rounds: list[Round] = []
            for k in range(args.rounds):
                # alternate the order so drifting machine load hits both alike
                order = ("bare", "full") if k % 2 == 0 else ("full", "bare")
                for kind in order:
                    proc, port = servers[kind]
                    r = run_round(kind, proc.pid, port, args.seconds, args.connections)
                    rounds.append(r)
                    print(
                        f"  {r.kind:4s} {r.rps:7.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                        f"p99 {r.p99_ms:7.2f} ms  cpu {r.cpu_ms_per_request:5.2f} ms/req  "
                        f"errors {r.errors}",
                        flush=True,
                    )
        finally:
            for proc, _port in servers.values():
                proc.terminate()
                proc.wait(60)
        import sqlite3

        with sqlite3.connect(workdir / "state.db") as conn:
            logged = dict(conn.execute("SELECT role, count(*) FROM traffic GROUP BY role"))
    report(rounds, logged)


def report(rounds: list[Round], logged: dict[str, int]) -> None:
    """Print per-server figures and the full/bare ratios."""
    summary = {}
    for kind in ("bare", "full"):
        mine = [r for r in rounds if r.kind == kind]
        pooled = sorted(x for r in mine for x in r.latencies)
        summary[kind] = (
            statistics.median(r.rps for r in mine),
            _percentile(pooled, 0.5) * 1000,
            _percentile(pooled, 0.99) * 1000,
            statistics.median(r.cpu_ms_per_request for r in mine),
        )
    bare, full = summary["bare"], summary["full"]
    for name, s in (("bare endpoint", bare), ("full router", full)):
        print(
            f"{name:13s}: {s[0]:7.0f} req/s (median round)  p50 {s[1]:.2f} ms  "
            f"p99 {s[2]:.2f} ms  cpu {s[3]:.2f} ms/req"
        )
    print(f"traffic rows logged by the full router: {logged}")
    bare_rounds = [r for r in rounds if r.kind == "bare"]
    full_rounds = [r for r in rounds if r.kind == "full"]
    pairs = [f.rps / b.rps for b, f in zip(bare_rounds, full_rounds, strict=True)]
    print("per-round throughput ratios: " + ", ".join(f"{p:.2f}" for p in pairs))
    print(
        f"throughput ratio full/bare (median of paired rounds): {statistics.median(pairs):.2f}x"
        " (target >= 0.85x)"
    )
    print(f"cpu-cost ratio bare/full (capacity at saturation): {bare[3] / full[3]:.2f}x")


if __name__ == "__main__":
    main()
