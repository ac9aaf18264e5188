"""A router pinned to versions: what `sml serve --pin MODEL=VERSION` serves.

The pre-canary load test (core/loadtest/) starts the champion and the candidate each in a
real router process of its own. Such a router must serve exactly the version it was given,
whatever the ledger says, and must not write traffic: its requests are replays of rows
already logged, and rows of it would count for the environment's rollouts, feed the next
shadow evaluation and load test their own replays, and (with no rollout id) look like
champion traffic. So a pinned router reads a fixed, champion-only routing state instead
of the ledger (no rollout: no canary arm, no shadow) and its `TrafficLog` drops every row
(`serving.app.create_app(record_traffic=False)`). Its /metrics still count requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from core.ledger.routing import RoutingState


class PinError(ValueError):
    """A `--pin` value is not `MODEL=VERSION`."""


def parse_pins(values: Iterable[str]) -> dict[str, str]:
    """`["intent-classifier=3"]` -> `{"intent-classifier": "3"}` (in the order given).

    Raises:
        PinError: a value is not `MODEL=VERSION` with both parts set, or names a model twice.
    """
    pins: dict[str, str] = {}
    for value in values:
        name, sep, version = (part.strip() for part in value.partition("="))
        if not (sep and name and version):
            raise PinError(f"--pin {value!r}: expected MODEL=VERSION, e.g. intent-classifier=3")
        if name in pins:
            raise PinError(f"--pin names {name} twice")
        pins[name] = version
    return pins


def pinned_states(pins: Mapping[str, str]) -> Mapping[str, RoutingState]:
    """The champion-only routing state of each pinned model (what the poller applies)."""
    return MappingProxyType(
        {name: RoutingState(model_name=name, champion_version=v) for name, v in pins.items()}
    )


__all__ = ["PinError", "parse_pins", "pinned_states"]
