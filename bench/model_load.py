"""Benchmark: the registry's verified loading and the LoadedModel hot path.

Trains and registers one intent-classifier version in a temp MLflow sqlite store, then
measures, in the same run:

1. predict_one through `LoadedModel` vs calling the fitted pipeline's `predict([text])`
   directly: the wrapper's overhead on the router's hot path (ratio, target <= 1.10);
2. verified load (sha256 of the pickle + unpickle, file already cached) vs a bare
   `pickle.loads` of the same bytes: what digest verification costs (ratio);
3. one batch `predict` of 500 texts vs 500 `predict_one` calls (speed-up ratio).

    uv run python bench/model_load.py [--repeats 2000]
"""

import argparse
import hashlib
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXTS = [
    "what is my checking balance",
    "zap 20 to sam real quick",
    "freeze my nova i think i dropped it",
    "i forgot my password",
    "there is a charge i do not recognize",
    "let me talk to a human",
]


def per_call_us(fns: dict, repeats: int) -> dict[str, float]:
    """Median over 7 alternating rounds of mean microseconds per call, for each function."""
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(7):
        for name, fn in fns.items():
            started = time.perf_counter()
            for i in range(repeats):
                fn(TEXTS[i % len(TEXTS)])
            rounds[name].append((time.perf_counter() - started) / repeats * 1e6)
    return {name: statistics.median(values) for name, values in rounds.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    from tests.factories import make_registry, train_and_register

    with tempfile.TemporaryDirectory() as tmp:
        registry = make_registry(Path(tmp))
        info = train_and_register(registry)
        loaded = registry.load(info.name, info.version)
        pipeline = loaded.model

        timings = per_call_us(
            {
                "wrapped": loaded.predict_one,
                "bare": lambda text: pipeline.predict([text])[0],
            },
            args.repeats,
        )
        wrapped, bare = timings["wrapped"], timings["bare"]
        print(
            f"predict_one: LoadedModel {wrapped:.1f} us, bare pipeline {bare:.1f} us, "
            f"ratio {wrapped / bare:.3f} (target <= 1.10)"
        )

        data = registry.artifact_path(info.name, info.version).read_bytes()
        checked, raw, full = [], [], []
        for _ in range(30):
            started = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            pickle.loads(data)  # our own freshly registered artifact
            checked.append(time.perf_counter() - started)
            started = time.perf_counter()
            pickle.loads(data)
            raw.append(time.perf_counter() - started)
            registry.forget(info.name, info.version)
            started = time.perf_counter()
            registry.load(info.name, info.version)
            full.append(time.perf_counter() - started)
        c, r, f = (statistics.median(x) * 1e3 for x in (checked, raw, full))
        print(
            f"unpickle ({len(data) / 1e6:.2f} MB): with sha256 check {c:.2f} ms, bare {r:.2f} ms, "
            f"ratio {c / r:.2f}; registry.load from the file cache {f:.1f} ms "
            "(incl. the MLflow version lookup)"
        )

        batch = [TEXTS[i % len(TEXTS)] for i in range(500)]
        started = time.perf_counter()
        loaded.predict(batch)
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for text in batch:
            loaded.predict_one(text)
        single = time.perf_counter() - started
        print(
            f"500 texts: one batch {batched * 1e3:.1f} ms, one by one {single * 1e3:.1f} ms, "
            f"batch speed-up {single / batched:.1f}x"
        )


if __name__ == "__main__":
    main()
