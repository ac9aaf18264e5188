"""Benchmark: shadow replay on a 2-worker Dask cluster vs in process vs the predict floor.

Registers the two real intent-classifier versions of the lifecycle (v1 baseline config,
v2 recent config, trained on synthetic data) in a temporary MLflow store, starts a
temporary Prefect server and a `distributed.LocalCluster` (2 worker processes, one
thread each, 127.0.0.1), then on the same logged requests measures, in one run:

- in process: `flows.shadow_evaluation.replay` inside a flow run, DASK_SCHEDULER_ADDRESS
  unset: the chunks (SHADOW_BATCH_SIZE, 10,000 by default) as mapped Prefect tasks on the flow's own
  task runner, what a flow-run pod does without a cluster;
- on Dask: the same call with DASK_SCHEDULER_ADDRESS set to the cluster: the same mapped
  tasks through prefect-dask's DaskTaskRunner, each worker loading both versions from the
  registry (digest-verified) once and keeping them;
- floor: the two models' own batched `predict` on the same chunks in this process,
  nothing else (no Prefect, no counting): the single-process floor.

A warm-up replay runs first on both (the workers import the code and load the models
then; its time is printed as the cold start). Then `--rounds` rounds, each timing floor,
in process and Dask back to back (order rotated per round, so drifting load hits all).
Prints the medians, the Dask speed-up over in process, and both as a ratio of
throughput to the floor (target >= 0.8x); checks both replays count the same figures.

    flock /work/wt/bench.lock uv run python bench/shadow.py [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_TASKS_DISABLE_CACHING", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MODEL = "intent-classifier"
TARGET = 0.8
MODES = ("floor", "in process", "dask")


def isolate(tmp: Path) -> None:
    """Every embedded default (state, MLflow store, model cache) under `tmp`; set before
    the cluster starts, so its workers inherit them as a pod inherits its ConfigMap."""
    local = tmp / "local"
    os.environ.update(
        {
            "SML_ENV_FILE": str(tmp / "no.env"),
            "LOCAL_DIR": str(local),
            "DATABASE_URL": f"sqlite:///{local}/state.db",
            "MLFLOW_TRACKING_URI": f"sqlite:///{local}/mlflow.db",
            "MLFLOW_ARTIFACT_LOCATION": str(local / "mlartifacts"),
            "MODEL_CACHE_DIR": str(local / "models"),
            "PREFECT_HOME": str(tmp / "prefect"),
            "MODELS": MODEL,
        }
    )
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)


def register_versions() -> tuple[str, str]:
    """Train and register the lifecycle's two versions; return (champion, candidate)."""
    from config import get_settings
    from core.registry import ModelRegistry
    from core.synthetic import generate_queries
    from models import FAMILIES, get_family
    from models.intent_classifier import BASELINE_CONFIG, RECENT_CONFIG
    from models.pipeline import train_family

    registry = ModelRegistry.from_settings(get_settings(), families=FAMILIES)
    family = get_family(MODEL)
    data = generate_queries(6_000, seed=1)
    versions = []
    for config in (BASELINE_CONFIG, RECENT_CONFIG):
        model = train_family(data, family, config).model
        info = registry.register(
            MODEL, model, tags={}, params={}, metrics={}, golden_inputs=["where is my parcel"]
        )
        versions.append(info.version)
    return versions[0], versions[1]


@cache
def logged_requests(rows: int) -> list[Any]:
    """`rows` logged requests drawn from 50,000 generated texts, 10% labelled."""
    import numpy as np

    from core.shadow import ReplayRequest
    from core.synthetic import generate_queries

    pool = generate_queries(50_000, seed=2)
    texts, labels = pool["text"].tolist(), pool["intent"].tolist()
    picks = np.random.default_rng(3).integers(0, len(texts), size=rows)
    return [
        ReplayRequest(f"r{i}", texts[p], labels[p] if i % 10 == 0 else None)
        for i, p in enumerate(picks)
    ]


def replay_flow() -> Any:
    """The flow the replays run in: generates the requests (not timed), times
    `flows.shadow_evaluation.replay` on them, returns (merged counts, seconds)."""
    from prefect import flow

    from config import get_settings
    from core.shadow import ShadowSubjects, merge_chunks
    from flows.shadow_evaluation import replay

    @flow(name="bench-shadow-replay")
    def bench_replay(
        rows: int, batch: int, champion: str, candidate: str, address: str | None
    ) -> tuple[Any, float]:
        settings = get_settings().model_copy(update={"DASK_SCHEDULER_ADDRESS": address})
        subjects = ShadowSubjects("dev", MODEL, champion, candidate, None)
        requests = logged_requests(rows)
        started = time.perf_counter()
        counts = replay(settings, subjects, requests, batch)
        return merge_chunks(counts), time.perf_counter() - started

    return bench_replay


def figures(counts: Any) -> Any:
    """A replay's counts without its timings (what two replays must agree on)."""
    from dataclasses import replace

    return replace(counts, champion_seconds=0.0, candidate_seconds=0.0)


def floor_seconds(rows: int, batch: int, champion: Any, candidate: Any) -> float:
    """Both models' bare batched predict over the same chunks, in this process."""
    from core.shadow import chunk_requests

    chunks = [[r.text for r in c] for c in chunk_requests(logged_requests(rows), batch)]
    started = time.perf_counter()
    for texts in chunks:
        champion.predict(texts)
        candidate.predict(texts)
    return time.perf_counter() - started


def measure(args: argparse.Namespace, address: str) -> dict[str, list[float]]:
    """Warm-up, then `args.rounds` rounds of floor / in process / Dask (rotated)."""
    from config import get_settings
    from core.worker_resources import worker_registry

    champion, candidate = register_versions()
    registry = worker_registry(get_settings())
    models = registry.load(MODEL, champion), registry.load(MODEL, candidate)
    bench_replay = replay_flow()
    run = {"rows": args.rows, "batch": args.batch, "champion": champion, "candidate": candidate}
    logged_requests(args.rows)

    started = time.perf_counter()
    warm_local, _ = bench_replay(**run, address=None)
    warm_dask, _ = bench_replay(**run, address=address)
    print(f"warm-up (cold start of both, Dask workers importing and loading): "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    same = figures(warm_dask) == figures(warm_local)
    assert same, "Dask and in-process replays counted different figures"

    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_number in range(args.rounds):
        shift = round_number % len(MODES)
        for mode in MODES[shift:] + MODES[:shift]:
            if mode == "floor":
                seconds[mode].append(floor_seconds(args.rows, args.batch, *models))
                continue
            counts, elapsed = bench_replay(**run, address=None if mode == "in process" else address)
            assert figures(counts) == figures(warm_local), f"{mode}: different figures"
            seconds[mode].append(elapsed)
        print(f"round {round_number + 1}: " + ", ".join(
            f"{mode} {seconds[mode][-1]:.1f} s" for mode in MODES))  # fmt: skip
    return seconds


def report(args: argparse.Namespace, seconds: dict[str, list[float]]) -> None:
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    for mode in MODES:
        print(
            f"{mode:>10}: {median[mode]:7.1f} s  {args.rows / median[mode]:9,.0f} rows/s (median)"
        )
    print(f"Dask speed-up over in process: {median['in process'] / median['dask']:.2f}x")
    for mode in ("in process", "dask"):
        ratio = median["floor"] / median[mode]
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"{mode} throughput = {ratio:.2f}x the floor (target >= {TARGET}x: {verdict})")
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--batch", type=int, default=10_000, help="rows per chunk (SHADOW_BATCH_SIZE)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.rows < 1 or args.batch < 1 or args.rounds < 1 or args.workers < 1:
        parser.error("--rows, --batch, --rounds and --workers must be >= 1")

    with tempfile.TemporaryDirectory(prefix="sml-bench-shadow-") as tmp_name:
        isolate(Path(tmp_name))
        from distributed import LocalCluster
        from prefect.testing.utilities import prefect_test_harness

        with (
            prefect_test_harness(server_startup_timeout=600),
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None,
            ) as cluster,
        ):  # fmt: skip
            print(f"{args.rows:,} requests in chunks of {args.batch:,}; "
                  f"{args.workers} Dask workers at {cluster.scheduler_address}")  # fmt: skip
            report(args, measure(args, cluster.scheduler_address))


if __name__ == "__main__":
    main()
