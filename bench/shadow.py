"""Benchmark: batched shadow replay of 1,000,000 logged requests.

Trains the two real intent-classifier versions of the lifecycle (v1 baseline config, v2
recent config) on synthetic data, then on the same 1,000,000 inputs measures, in one run:

- replay: `core.shadow.chunk_requests` + `replay_chunk` per chunk (SHADOW_BATCH_SIZE
  2,000) + `merge_chunks` + `evaluate`, i.e. what each mapped task of the flow does;
- floor: the two models' own batched `predict` on the same chunks, nothing else
  (timed chunk by chunk, interleaved with the replay, so both see the same load);
- per-row loop: `predict([text])` one request at a time, timed on a 2,000-row sample and
  extrapolated (running it on 1M rows would take many minutes).

Prints rows/s of each and the replay as a ratio to the floor (target >= 0.8x) and to the
per-row loop.

    uv run python bench/shadow.py
    BENCH_ROWS=200000 uv run python bench/shadow.py   # quicker
"""

from __future__ import annotations

import os
import time

import numpy as np

from core.shadow import (
    LatencyProfile,
    ReplayRequest,
    ShadowThresholds,
    chunk_requests,
    evaluate,
    merge_chunks,
    replay_chunk,
)
from core.synthetic import generate_queries
from models import get_family
from models.intent_classifier import BASELINE_CONFIG, RECENT_CONFIG
from models.pipeline import train_family

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
BATCH = 2_000
LOOP_SAMPLE = 2_000
TARGET = 0.8


def main() -> None:
    """Train, build the logged requests, time replay / floor / loop, print the ratios."""
    family = get_family("intent-classifier")
    data = generate_queries(6_000, seed=1)
    champion = train_family(data, family, BASELINE_CONFIG).model
    candidate = train_family(data, family, RECENT_CONFIG).model
    pool = generate_queries(50_000, seed=2)
    texts = pool["text"].tolist()
    labels = pool["intent"].tolist()
    rng = np.random.default_rng(3)
    picks = rng.integers(0, len(texts), size=ROWS)
    requests = [
        ReplayRequest(f"r{i}", texts[p], labels[p] if i % 10 == 0 else None)
        for i, p in enumerate(picks)
    ]
    chunks = chunk_requests(requests, BATCH)

    # Floor and replay are timed chunk by chunk, alternating which goes first, so both
    # see the same machine load (the machine is shared; load drifts over minutes).
    floor = replay = 0.0
    parts = []
    for i, chunk in enumerate(chunks):
        for which in ("floor", "replay") if i % 2 == 0 else ("replay", "floor"):
            started = time.perf_counter()
            if which == "floor":
                batch = [r.text for r in chunk]
                champion.predict(batch)
                candidate.predict(batch)
                floor += time.perf_counter() - started
            else:
                parts.append(replay_chunk(champion, candidate, chunk))
                replay += time.perf_counter() - started
    started = time.perf_counter()
    counts = merge_chunks(parts)
    report = evaluate(
        counts,
        LatencyProfile((1.0,), (1.0,)),
        ShadowThresholds(0.8, 0.01, 200.0, 0.02),
        model_name="intent-classifier",
        champion_version="1",
        candidate_version="2",
    )
    replay += time.perf_counter() - started

    sample = [r.text for r in requests[:LOOP_SAMPLE]]
    started = time.perf_counter()
    for text in sample:
        champion.predict([text])
        candidate.predict([text])
    loop = (time.perf_counter() - started) * ROWS / LOOP_SAMPLE

    print(f"replayed {counts.n:,} requests in {len(chunks)} chunks of {BATCH}")
    print(f"agreement {report.agreement.describe()}")
    print(f"replay:   {replay:7.1f} s  {ROWS / replay:10,.0f} rows/s")
    print(f"floor:    {floor:7.1f} s  {ROWS / floor:10,.0f} rows/s (the two models' predict)")
    print(f"per-row:  {loop:7.1f} s  {ROWS / loop:10,.0f} rows/s (estimated from {LOOP_SAMPLE:,})")
    ratio = floor / replay
    print(
        f"replay throughput = {ratio:.2f}x the floor (target >= {TARGET}x: "
        f"{'meets' if ratio >= TARGET else 'MISSES'}), {loop / replay:.1f}x the per-row loop"
    )
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
