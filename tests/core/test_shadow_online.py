"""Online shadow rows as evidence: joined in SQL, counted as they are, the rest replayed.

Two real versions (a real MLflow registry, trained on different synthetic snapshots so
they disagree on some inputs) answer logged requests; the champion's rows and, for some
requests, the candidate's online shadow rows are written as the router writes them. The
replay path's own counter (`ChunkCounts.replayed`, summed over the replayed chunks) says
how many requests were replayed.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from core.db import Feedback, Traffic, utcnow
from core.registry import LoadedModel, ModelRegistry
from core.shadow import (
    ChunkCounts,
    LatencyProfile,
    ReplayRequest,
    ShadowReport,
    ShadowThresholds,
    chunk_requests,
    evaluate,
    merge_chunks,
    replay_chunk,
    report_markdown,
    sample_requests,
    split_sample,
)
from tests.factories import make_registry, train_and_register, training_frame

MODEL = "intent-classifier"
N = 120
THRESHOLDS = ShadowThresholds(
    min_agreement=0.0, max_error_rate=1.0, max_p95_ms=10_000, max_accuracy_drop=1.0
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, LoadedModel]:
    """Champion v1 and candidate v2 of the intent classifier, loaded from the registry."""
    registry: ModelRegistry = make_registry(Path(tmp_path_factory.mktemp("mlflow")))
    champion = train_and_register(registry).version
    candidate = train_and_register(registry, rows=300, seed=11).version
    assert (champion, candidate) == ("1", "2")
    return registry.load(MODEL, "1"), registry.load(MODEL, "2")


def _log(
    engine: Engine,
    models: tuple[LoadedModel, LoadedModel],
    covered: Collection[int],
    errors: Collection[int] = (),
    candidate_arm: bool = True,
) -> list[str]:
    """N champion-arm requests answered by v1; requests in `covered` also get v2's online
    shadow row (an error row for those in `errors`); every other request is labelled.
    Noise the join must ignore: a shadow row of another version and (`candidate_arm`) a
    candidate-arm request, which has no champion row. Returns the texts."""
    champion, candidate = models
    frame = training_frame(seed=99).head(N)
    texts, intents = list(frame["text"]), list(frame["intent"])
    champ_out, cand_out = champion.predict(texts), candidate.predict(texts)
    now = utcnow()
    base = {"env": "dev", "rollout_id": None, "model_name": MODEL, "error": None}
    rows, feedback = [], []
    for i, text in enumerate(texts):
        ts = now - timedelta(minutes=30) + timedelta(seconds=i)
        common = base | {"request_id": f"q{i}", "ts": ts, "user_id": f"u{i}", "input_text": text}
        rows.append(common | {"model_version": "1", "role": "champion", "output": champ_out[i],
                              "latency_ms": 2.0})  # fmt: skip
        if i in covered:
            failed = i in errors
            rows.append(common | {"model_version": "2", "role": "shadow", "latency_ms": 9.0,
                                  "output": None if failed else cand_out[i],
                                  "error": "InjectedFaultError" if failed else None})  # fmt: skip
        else:  # a shadow row of another candidate is no evidence about v2
            rows.append(common | {"model_version": "7", "role": "shadow", "latency_ms": 9.0,
                                  "output": "nonsense"})  # fmt: skip
        if i % 2 == 0:
            feedback.append({"request_id": f"q{i}", "ts": ts, "kind": "label", "value": intents[i]})
    if candidate_arm:
        rows.append(base | {"request_id": "c0", "ts": now - timedelta(minutes=1), "user_id": "u",
                            "input_text": texts[0], "model_version": "2", "role": "candidate",
                            "output": cand_out[0], "latency_ms": 2.0})  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
        conn.execute(insert(Feedback), feedback)
    return texts


def _sample(engine: Engine) -> list[ReplayRequest]:
    return sample_requests(
        engine, env="dev", model_name=MODEL, window_hours=1, sample_size=10_000,
        now=utcnow() + timedelta(seconds=1), champion_version="1", candidate_version="2",
    )  # fmt: skip


def _replay(models: tuple[LoadedModel, LoadedModel], requests: list[ReplayRequest]) -> ChunkCounts:
    champion, candidate = models
    return merge_chunks(replay_chunk(champion, candidate, c) for c in chunk_requests(requests, 16))


def _report(counts: ChunkCounts, online: LatencyProfile | None = None) -> ShadowReport:
    return evaluate(
        counts, LatencyProfile((1.0,), (1.0,)), THRESHOLDS, model_name=MODEL,
        champion_version="1", candidate_version="2", online_latency=online,
    )  # fmt: skip


def test_every_sampled_request_online_replays_none(
    engine: Engine, models: tuple[LoadedModel, LoadedModel]
) -> None:
    _log(engine, models, covered=range(N), candidate_arm=False)
    sample = _sample(engine)
    split = split_sample(sample)

    replayed = _replay(models, split.to_replay)

    assert len(sample) == N
    assert split.to_replay == []
    assert replayed.replayed == 0  # the replay path's own counter
    assert split.online.n == split.online.online == N
    report = _report(merge_chunks([split.online, replayed]), split.online_latency)
    assert (report.online_requests, report.replayed_requests, report.requests) == (N, 0, N)
    assert report.agreement.n == N
    assert report.online_latency is not None
    assert report.online_latency["candidate"]["p50"] == pytest.approx(9.0)
    assert report.online_latency["champion"]["p50"] == pytest.approx(2.0)
    assert report.as_dict()["online_requests"] == N
    text = report_markdown(report)
    assert f"{N} from online shadow rows, 0 replayed" in text
    assert "indicative only" in text


def test_half_covered_replays_exactly_the_other_half(
    engine: Engine, models: tuple[LoadedModel, LoadedModel]
) -> None:
    covered = set(range(0, N, 2))
    _log(engine, models, covered=covered)
    split = split_sample(_sample(engine))

    replayed = _replay(models, split.to_replay)

    expected = {f"q{i}" for i in range(N) if i not in covered} | {"c0"}
    assert {r.request_id for r in split.to_replay} == expected
    assert replayed.replayed == len(expected) == N // 2 + 1
    assert split.online.online == N // 2


def test_mixed_evidence_agrees_with_a_full_replay(
    engine: Engine, models: tuple[LoadedModel, LoadedModel]
) -> None:
    _log(engine, models, covered=set(range(0, N, 3)))
    sample = _sample(engine)
    split = split_sample(sample)

    mixed = merge_chunks([split.online, _replay(models, split.to_replay)])
    full = _replay(models, [ReplayRequest(r.request_id, r.text, r.label) for r in sample])

    assert 0 < split.online.n < len(sample)
    assert (mixed.n, mixed.both_answered, mixed.agree) == (full.n, full.both_answered, full.agree)
    assert mixed.agree < mixed.both_answered  # the two versions do disagree somewhere
    assert mixed.per_intent == full.per_intent
    assert mixed.correct_table == full.correct_table
    assert (mixed.online, mixed.replayed, full.replayed) == (split.online.n, len(split.to_replay),
                                                             len(sample))  # fmt: skip
    mixed_report, full_report = _report(mixed), _report(full)
    print(
        f"mixed: {mixed.online} online + {mixed.replayed} replayed; agreement "
        f"{mixed_report.agreement.describe()} vs full replay {full_report.agreement.describe()}"
    )
    assert mixed_report.agreement == full_report.agreement
    assert mixed_report.accuracy == full_report.accuracy


def test_an_errored_shadow_row_is_a_candidate_error(
    engine: Engine, models: tuple[LoadedModel, LoadedModel]
) -> None:
    _log(engine, models, covered=range(N), errors={3, 10, 57})
    split = split_sample(_sample(engine))

    assert split.online.candidate_errors == 3
    assert split.online.champion_errors == 0
    assert split.online.both_answered == N - 3
    report = _report(merge_chunks([split.online, _replay(models, split.to_replay)]))
    assert report.candidate_error.count == 3
    assert report.candidate_error.n == N + 1


def test_without_versions_the_sample_carries_no_online_pairs(
    engine: Engine, models: tuple[LoadedModel, LoadedModel]
) -> None:
    _log(engine, models, covered=range(N))
    sample = sample_requests(
        engine, env="dev", model_name=MODEL, window_hours=1, sample_size=10_000,
        now=utcnow() + timedelta(seconds=1),
    )  # fmt: skip
    assert len(sample) == N + 1
    assert all(r.online is None for r in sample)
