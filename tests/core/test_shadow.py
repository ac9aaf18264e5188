"""Shadow evaluation statistics: sampling in SQL, chunked replay, paired accuracy, the gate."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import cloudpickle
import pytest
from dask.base import tokenize
from distributed.utils_comm import unpack_remotedata
from prefect.utilities.collections import visit_collection
from sqlalchemy import Engine, insert

from core import ledger
from core.db import Feedback, Traffic, utcnow
from core.errors import ConflictError, NotFoundError
from core.shadow import (
    ChunkCounts,
    LatencyProfile,
    OnlinePair,
    Rate,
    ReplayRequest,
    RequestChunk,
    ShadowThresholds,
    chunk_requests,
    compare_accuracy,
    evaluate,
    measure_latency,
    merge_chunks,
    predict_tolerant,
    replay_chunk,
    report_markdown,
    resolve_subjects,
    sample_requests,
)
from tests.factories import make_release

THRESHOLDS = ShadowThresholds(
    min_agreement=0.8, max_error_rate=0.01, max_p95_ms=200, max_accuracy_drop=0.02
)


class KeywordModel:
    """A tiny real classifier: the intent is the first word; `fail_on` words raise."""

    def __init__(self, fail_on: Sequence[str] = (), rename: dict[str, str] | None = None):
        self.fail_on = set(fail_on)
        self.rename = rename or {}

    def predict(self, texts: Sequence[str]) -> list[str]:
        if any(t.split()[0] in self.fail_on for t in texts):
            raise RuntimeError("cannot handle this input")
        return [self.rename.get(t.split()[0], t.split()[0]) for t in texts]


def _requests(n: int) -> list[ReplayRequest]:
    words = ["balance", "transfer", "card", "loan"]
    return [
        ReplayRequest(f"r{i}", f"{words[i % 4]} please {i}", label=words[i % 4] if i % 5 else None)
        for i in range(n)
    ]


def test_predict_tolerant_pins_failures_to_their_inputs() -> None:
    model = KeywordModel(fail_on=["card"])
    out = predict_tolerant(model, ["balance x", "card y", "loan z", "card w"])
    assert out == ["balance", None, "loan", None]


def test_a_chunk_is_a_sequence_that_neither_prefect_nor_dask_walks() -> None:
    requests = _requests(25)
    chunks = chunk_requests(requests, 10)
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [r for c in chunks for r in c] == requests  # in order, nothing lost
    assert chunks[1][0] == requests[10]
    assert list(chunks[2][1:3]) == requests[21:23]
    assert pickle.loads(pickle.dumps(chunks[0])) == chunks[0]  # shipped to a Dask worker
    assert chunks[0] != chunks[1]
    assert repr(chunks[2]) == "RequestChunk(5 requests)"

    visited: list[object] = []
    visit_collection(chunks[0], lambda expr: visited.append(expr), return_data=False)
    assert visited == [chunks[0]]  # one value to Prefect, not 10 requests and their fields
    packed, remote = unpack_remotedata(chunks[0])
    assert packed is chunks[0]
    assert not remote


class _Opaque:
    """An object Dask knows nothing about."""


def test_dask_names_a_chunk_without_pickling_it_and_ships_it_whole() -> None:
    online = OnlinePair("card", "cards", champion_ms=1.5, candidate_ms=2.0)
    requests = [*_requests(4), ReplayRequest("r-online", "card x", "card", online)]
    chunk, other = chunk_requests(requests, 5)[0], RequestChunk(requests)

    pickled: list[str] = []

    def recording(dumps: Any) -> Any:
        def dumps_and_record(obj: object, *args: Any, **kwargs: Any) -> bytes:
            pickled.append(type(obj).__name__)
            return dumps(obj, *args, **kwargs)

        return dumps_and_record

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pickle, "dumps", recording(pickle.dumps))
        patch.setattr(cloudpickle, "dumps", recording(cloudpickle.dumps))
        tokenize(_Opaque())
        assert "_Opaque" in pickled  # how Dask names an object it knows nothing about
        assert tokenize(chunk) == tokenize(chunk)
        assert tokenize(chunk) != tokenize(other)  # two chunks are two units of work
    assert "RequestChunk" not in pickled
    shipped = pickle.loads(pickle.dumps(chunk))
    assert list(shipped) == requests
    assert shipped[4].online == online
    assert tokenize(shipped) == tokenize(chunk)  # the same work, named the same


def test_replay_chunks_merge_to_the_same_counts_as_one_chunk() -> None:
    requests = _requests(103)
    champion = KeywordModel()
    candidate = KeywordModel(fail_on=["loan"], rename={"card": "cards"})

    whole = replay_chunk(champion, candidate, requests)
    merged = merge_chunks(
        replay_chunk(champion, candidate, c) for c in chunk_requests(requests, 10)
    )

    for counts in (whole, merged):
        assert counts.n == 103
        assert counts.candidate_errors == 25  # every 4th request starts with "loan"
        assert counts.champion_errors == 0
        assert counts.both_answered == 78
        assert counts.agree == 52  # balance + transfer agree, card != cards
        assert counts.per_intent["card"] == [26, 0]
    assert merged.correct_table == whole.correct_table


def test_compare_accuracy_mcnemar_and_bootstrap_interval() -> None:
    # candidate right on 30 requests the champion got wrong, wrong on 5 it got right
    result = compare_accuracy([[900, 5], [30, 65]])
    assert result is not None
    assert result.champion.value == pytest.approx(0.905)
    assert result.candidate.value == pytest.approx(0.930)
    assert result.drop == pytest.approx(-0.025)
    assert result.drop_low < result.drop < result.drop_high < 0
    assert result.mcnemar_p_value < 0.001
    assert compare_accuracy([[0, 0], [0, 0]]) is None


def test_rate_of_uses_wilson_interval() -> None:
    rate = Rate.of(0, 50)
    assert rate.value == 0.0
    assert rate.low == pytest.approx(0.0, abs=1e-12)
    assert 0.05 < rate.high < 0.08  # Wilson, not the degenerate Wald [0, 0]
    assert Rate.of(0, 0).value is None


def test_evaluate_lists_every_failed_threshold() -> None:
    counts = replay_chunk(
        KeywordModel(), KeywordModel(fail_on=["loan"], rename={"card": "cards"}), _requests(200)
    )
    latency = LatencyProfile(champion_ms=(1.0,) * 20, candidate_ms=(500.0,) * 20)

    report = evaluate(
        counts, latency, THRESHOLDS, model_name="m", champion_version="1", candidate_version="2"
    )

    assert not report.passed
    failed = {c.name for c in report.gate.failed}
    assert failed == {"agreement", "candidate_error_rate", "candidate_p95_ms", "accuracy_drop"}
    text = report_markdown(report)
    assert "**Verdict: FAIL**" in text
    assert "McNemar" in text
    assert report.as_dict()["gate"]["passed"] is False


def test_evaluate_identical_models_pass() -> None:
    counts = replay_chunk(KeywordModel(), KeywordModel(), _requests(200))
    latency = measure_latency(KeywordModel(), KeywordModel(), _requests(30), limit=30)
    report = evaluate(
        counts, latency, THRESHOLDS, model_name="m", champion_version="1", candidate_version="2"
    )
    assert report.passed, report.gate.summary()
    assert report.agreement.value == 1.0
    assert len(latency.champion_ms) == 30


def test_evaluate_empty_sample_fails() -> None:
    report = evaluate(
        ChunkCounts(),
        LatencyProfile((), ()),
        THRESHOLDS,
        model_name="m",
        champion_version="1",
        candidate_version="2",
    )
    assert not report.passed
    assert "requests" in report.gate.summary()


def test_sample_requests_recent_window_one_row_per_request_with_labels(engine: Engine) -> None:
    now = utcnow()
    base = {
        "env": "dev",
        "user_id": "u",
        "rollout_id": 1,
        "model_name": "intent-classifier",
        "model_version": "1",
        "output": "x",
        "latency_ms": 1.0,
        "error": None,
    }
    rows = [
        base | {"request_id": f"r{i}", "ts": now - timedelta(minutes=i), "role": "champion",
                "input_text": f"text {i}"}
        for i in range(20)
    ]  # fmt: skip
    rows += [
        base | {"request_id": "r0", "ts": now, "role": "shadow", "input_text": "text 0"},
        base | {"request_id": "old", "ts": now - timedelta(days=3), "role": "champion",
                "input_text": "old"},
        base | {"request_id": "prd", "ts": now, "role": "champion", "input_text": "p",
                "env": "prd"},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
        conn.execute(
            insert(Feedback),
            [
                {"request_id": "r3", "ts": now - timedelta(hours=2), "kind": "label", "value": "a"},
                {"request_id": "r3", "ts": now, "kind": "label", "value": "b"},
                {"request_id": "r4", "ts": now, "kind": "thumbs", "value": "down"},
            ],
        )

    sample = sample_requests(
        engine,
        env="dev",
        model_name="intent-classifier",
        window_hours=24,
        sample_size=100,
        now=now + timedelta(seconds=1),
    )

    assert sorted(r.request_id for r in sample) == sorted(f"r{i}" for i in range(20))
    labels = {r.request_id: r.label for r in sample}
    assert labels["r3"] == "b"
    assert labels["r4"] is None
    small = sample_requests(
        engine, env="dev", model_name="intent-classifier", window_hours=24, sample_size=5,
        now=now + timedelta(seconds=1),
    )  # fmt: skip
    assert len(small) == 5


class CandidateAlias:
    """The registry's alias lookup, in memory: the `alias` alias points at `version`."""

    def __init__(self, version: str | None, alias: str = "dev-candidate") -> None:
        self.version = version
        self.alias = alias

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise AssertionError("resolving subjects never moves aliases")

    def delete_alias(self, name: str, alias: str) -> None:
        raise AssertionError("resolving subjects never moves aliases")

    def get_version(self, name: str, version: str) -> object:
        return type("Info", (), {"artifact_sha256": None, "version": version})()

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        return None

    def version_by_alias(self, name: str, alias: str) -> object | None:
        if alias != self.alias or self.version is None:
            return None
        return type("Info", (), {"version": self.version})()


def test_resolve_subjects_candidate_from_the_alias_without_a_rollout(engine: Engine) -> None:
    make_release(
        engine,
        env="dev",
        models={"intent-classifier": "1"},
        digests={"intent-classifier": None},
        code_version="1",
        image_version="img",
        reason="v1",
    )

    subjects = resolve_subjects(
        engine, CandidateAlias("2"), env="dev", model_name="intent-classifier",
        candidate_version=None,
    )  # fmt: skip

    assert (subjects.champion_version, subjects.candidate_version, subjects.rollout) == (
        "1",
        "2",
        None,
    )
    with pytest.raises(NotFoundError, match="set the `dev-candidate` alias"):
        resolve_subjects(
            engine, CandidateAlias(None), env="dev", model_name="intent-classifier",
            candidate_version=None,
        )  # fmt: skip
    with pytest.raises(NotFoundError, match="in dev"):  # another env's candidate is not ours
        resolve_subjects(
            engine, CandidateAlias("2", alias="stg-candidate"), env="dev",
            model_name="intent-classifier", candidate_version=None,
        )  # fmt: skip
    with pytest.raises(ConflictError, match="already the champion"):
        resolve_subjects(
            engine, CandidateAlias("1"), env="dev", model_name="intent-classifier",
            candidate_version=None,
        )  # fmt: skip


def test_resolve_subjects_candidate_from_the_active_rollout_first(engine: Engine) -> None:
    make_release(
        engine,
        env="dev",
        models={"intent-classifier": "1"},
        digests={"intent-classifier": None},
        code_version="1",
        image_version="img",
        reason="v1",
    )
    rollout = ledger.start_rollout(
        engine, env="dev", model_name="intent-classifier", candidate_version="3",
        stages=[1, 100], mode="shadow", actor="test", reason="shadow first",
    )  # fmt: skip

    subjects = resolve_subjects(
        engine, CandidateAlias("2"), env="dev", model_name="intent-classifier",
        candidate_version=None,
    )  # fmt: skip

    assert (subjects.candidate_version, subjects.rollout) == ("3", rollout)
    with pytest.raises(ConflictError, match="end it first"):
        resolve_subjects(
            engine, CandidateAlias("2"), env="dev", model_name="intent-classifier",
            candidate_version="2",
        )  # fmt: skip
