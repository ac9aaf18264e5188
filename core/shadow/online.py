"""Online shadow as evidence: the candidate's shadow rows the router already logged.

The router runs the candidate off the hot path on champion-arm requests and logs its
answer as a `shadow` row with the champion row's request_id. `sample_requests` joins
that pair in SQL onto every sampled request the champion version served; here the
sample splits into the requests already answered online (counted as they are, no
model call) and the rest (to replay). Both kinds of count merge into one `ChunkCounts`,
so the statistics run over the union.

Latency: a shadow row's latency is measured off the hot path (the candidate runs after
the answer, in the router's background), so it is reported as indicative only; the
gate keeps judging latency on the single-request timings (`measure_latency`), which
time both models the same way on the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.shadow.replay import ChunkCounts, LatencyProfile, ReplayRequest


@dataclass(frozen=True, slots=True)
class SampleSplit:
    """The sample, split by source: the online evidence counted, the rest to replay."""

    online: ChunkCounts
    online_latency: LatencyProfile
    to_replay: list[ReplayRequest]


def split_sample(requests: Sequence[ReplayRequest]) -> SampleSplit:
    """Count the requests with an online pair; keep the others for replay.

    Agreement, per-intent agreement, errors (a shadow row with an error is a candidate
    error, a champion row with one a champion error) and the correctness table on
    labelled requests are counted exactly as `replay_chunk` counts replayed answers.
    """
    counts = ChunkCounts()
    champion_ms: list[float] = []
    candidate_ms: list[float] = []
    to_replay: list[ReplayRequest] = []
    for request in requests:
        pair = request.online
        if pair is None:
            to_replay.append(request)
            continue
        counts.count_pair(request.label, pair.champion_output, pair.candidate_output)
        champion_ms.append(pair.champion_ms)
        candidate_ms.append(pair.candidate_ms)
    counts.online = counts.n
    return SampleSplit(counts, LatencyProfile(tuple(champion_ms), tuple(candidate_ms)), to_replay)
