"""Start-up without the state database: the registry alias serves until the ledger answers.

The decision is a pure function; the poller is driven by hand (`poll_once`) with fake
state readers, so no thread, database or MLflow store is involved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from conftest import MODEL, DictModelSource, KeywordModel

from core.aliases import env_alias
from core.ledger.routing import RoutingState
from serving.model_cache import ModelCache
from serving.rollout_state import RolloutStatePoller
from serving.startup_fallback import LEDGER, REGISTRY_ALIAS, alias_states, state_source


@pytest.mark.parametrize(
    ("answered", "ever", "has_alias", "expected"),
    [
        (True, False, True, LEDGER),  # first answer: follow the ledger
        (True, True, True, LEDGER),
        (True, False, False, LEDGER),
        (False, False, True, REGISTRY_ALIAS),  # never answered: the alias serves
        (False, False, False, None),  # no alias source: nothing to serve
        (False, True, True, None),  # answered before: the last known state keeps serving
        (False, True, False, None),
    ],
)
def test_state_source_decision(
    answered: bool, ever: bool, has_alias: bool, expected: str | None
) -> None:
    assert (
        state_source(
            ledger_answered=answered, ledger_ever_answered=ever, has_alias_source=has_alias
        )
        == expected
    )


@dataclass(frozen=True)
class _Version:
    version: str


@dataclass
class FakeAliases:
    """Alias lookups answered from a dict; counts the lookups; can fail."""

    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    lookups: int = 0
    error: Exception | None = None

    def version_by_alias(self, name: str, alias: str) -> _Version | None:
        self.lookups += 1
        if self.error is not None:
            raise self.error
        found = self.aliases.get((name, alias))
        return _Version(found) if found is not None else None


def test_alias_states_reads_each_models_env_champion_alias() -> None:
    aliases = FakeAliases(
        {
            (MODEL, env_alias("prd", "champion")): "4",
            (MODEL, env_alias("stg", "champion")): "5",
            ("other", env_alias("stg", "champion")): "2",
        }
    )
    assert alias_states(aliases, "prd", [MODEL, "other"]) == {
        MODEL: RoutingState(model_name=MODEL, champion_version="4")
    }


class Ledger:
    """A ledger reader that is down until the test says otherwise."""

    def __init__(self) -> None:
        self.states: dict[str, RoutingState] | None = None

    def __call__(self) -> dict[str, RoutingState]:
        if self.states is None:
            raise ConnectionError("state database unreachable")
        return self.states


def _poller(ledger: Ledger, aliases: FakeAliases | None) -> RolloutStatePoller:
    source = DictModelSource()
    for version in ("1", "2", "3"):
        source.add(KeywordModel(version))
    return RolloutStatePoller(
        ledger,
        ModelCache(source, retry_seconds=0.0),
        [MODEL],
        read_alias_state=None if aliases is None else lambda: alias_states(aliases, "dev", [MODEL]),
    )


def test_alias_serves_until_the_ledger_answers_then_never_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = Ledger()
    aliases = FakeAliases({(MODEL, env_alias("dev", "champion")): "2"})
    poller = _poller(ledger, aliases)
    with caplog.at_level(logging.WARNING, logger="serving.rollout_state"):
        for _ in range(3):
            assert not poller.poll_once()
    plan = poller.plans[MODEL]
    assert (plan.champion.version, plan.source, poller.source) == (
        "2",
        REGISTRY_ALIAS,
        "registry-alias",
    )
    assert not poller.ledger_up
    from_alias = [r for r in caplog.records if "champion aliases (read-only)" in r.getMessage()]
    assert len(from_alias) == 1  # logged once, not per poll

    ledger.states = {MODEL: RoutingState(MODEL, "3")}
    assert poller.poll_once()
    plan = poller.plans[MODEL]
    assert (plan.champion.version, plan.source, poller.source) == ("3", LEDGER, "ledger")
    assert poller.ledger_up

    lookups = aliases.lookups
    ledger.states = None  # a later outage: the last ledger state keeps serving
    assert not poller.poll_once()
    assert aliases.lookups == lookups
    assert (poller.plans[MODEL].champion.version, poller.plans[MODEL].source) == ("3", LEDGER)
    assert not poller.ledger_up


def test_ledger_state_equal_to_the_alias_state_still_switches_the_source() -> None:
    ledger = Ledger()
    poller = _poller(ledger, FakeAliases({(MODEL, env_alias("dev", "champion")): "1"}))
    poller.poll_once()
    ledger.states = {MODEL: RoutingState(MODEL, "1")}
    poller.poll_once()
    assert poller.plans[MODEL].source == LEDGER


def test_without_an_alias_source_or_alias_nothing_is_served() -> None:
    poller = _poller(Ledger(), None)
    assert not poller.poll_once()
    assert (dict(poller.plans), poller.source) == ({}, None)

    unset = _poller(Ledger(), FakeAliases())
    assert not unset.poll_once()
    assert MODEL not in unset.plans


def test_registry_down_too_is_retried_on_the_next_poll() -> None:
    aliases = FakeAliases(
        {(MODEL, env_alias("dev", "champion")): "2"}, error=OSError("mlflow down")
    )
    poller = _poller(Ledger(), aliases)
    assert not poller.poll_once()
    assert poller.source is None
    aliases.error = None
    poller.poll_once()
    assert poller.plans[MODEL].source == REGISTRY_ALIAS
