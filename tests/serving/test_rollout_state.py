"""The rollout-state poller: plans follow the state, failures keep the last good plan."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from conftest import MODEL, DictModelSource, KeywordModel

from core.ledger.routing import RoutingState
from serving.model_cache import ModelCache, ModelLoadError
from serving.rollout_state import RolloutStatePoller


class StateBox:
    """A state reader whose answer (or failure) the test sets."""

    def __init__(self, states: Mapping[str, RoutingState]) -> None:
        self.states = dict(states)
        self.error: Exception | None = None

    def __call__(self) -> Mapping[str, RoutingState]:
        if self.error is not None:
            raise self.error
        return self.states


def _canary(champion: str, candidate: str, percent: float = 10.0) -> RoutingState:
    return RoutingState(MODEL, champion, "canary", candidate, 3, "salt", percent, "canary")


def _poller(
    source: DictModelSource, box: StateBox, errors: list[BaseException] | None = None
) -> RolloutStatePoller:
    cache = ModelCache(source, retry_seconds=0.0)
    on_error = errors.append if errors is not None else None
    return RolloutStatePoller(box, cache, [MODEL], on_poll_error=on_error)


def test_poll_builds_plan_with_loaded_models() -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    source.add(KeywordModel("2"))
    poller = _poller(source, StateBox({MODEL: _canary("1", "2")}))
    assert poller.poll_once()
    plan = poller.plans[MODEL]
    assert (plan.champion.version, plan.candidate.version) == ("1", "2")  # type: ignore[union-attr]
    assert plan.candidate_error is None
    poller.poll_once()
    assert source.loads == [(MODEL, "1"), (MODEL, "2")]  # loaded once, not per poll


def test_poll_candidate_load_failure_is_kept_as_reason_and_retried() -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    poller = _poller(source, StateBox({MODEL: _canary("1", "2")}))
    poller.poll_once()
    plan = poller.plans[MODEL]
    assert plan.candidate is None
    assert "v2 cannot be loaded" in (plan.candidate_error or "")
    source.add(KeywordModel("2"))  # e.g. the artifact store answers again
    poller.poll_once()
    assert poller.plans[MODEL].candidate is not None


def test_poll_champion_load_failure_keeps_previous_plan() -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    box = StateBox({MODEL: RoutingState(MODEL, "1")})
    poller = _poller(source, box)
    poller.poll_once()
    box.states = {MODEL: RoutingState(MODEL, "9")}  # a rollback to a version that won't load
    poller.poll_once()
    assert poller.plans[MODEL].champion.version == "1"


def test_poll_read_failure_keeps_serving_last_state() -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    box = StateBox({MODEL: RoutingState(MODEL, "1")})
    errors: list[BaseException] = []
    poller = _poller(source, box, errors)
    poller.poll_once()
    box.error = ConnectionError("database unreachable")
    assert not poller.poll_once()
    assert poller.plans[MODEL].champion.version == "1"
    assert len(errors) == 1


def test_poll_ignores_models_not_shipped_here() -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    poller = _poller(
        source, StateBox({MODEL: RoutingState(MODEL, "1"), "other": RoutingState("other", "5")})
    )
    poller.poll_once()
    assert set(poller.plans) == {MODEL}


def test_model_cache_remembers_failure_until_retry() -> None:
    source = DictModelSource()
    cache = ModelCache(source, retry_seconds=3600)
    with pytest.raises(ModelLoadError, match="v7 cannot be loaded"):
        cache.get(MODEL, "7")
    source.add(KeywordModel("7"))
    with pytest.raises(ModelLoadError):
        cache.get(MODEL, "7")  # not retried within retry_seconds
    assert source.loads == [(MODEL, "7")]
