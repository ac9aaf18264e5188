"""The flow tests' Prefect server is Prefect's app behind `RetrySoon` (tests/flows/conftest.py)."""

from __future__ import annotations

from prefect.server.api.server import SubprocessASGIServer

from tests.flows.conftest import HINTED_APP, PREFECT_APP


def test_the_harness_serves_prefects_app_behind_retry_soon() -> None:
    server = SubprocessASGIServer._instances[None]
    assert server.server_process is not None
    args = list(server.server_process.args)  # type: ignore[arg-type]
    assert HINTED_APP in args  # Prefect still spells its factory PREFECT_APP: swapped
    assert PREFECT_APP not in args
