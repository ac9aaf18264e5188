"""Flow runs called in this process (the demo, the tests), not started by a worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def in_process_flow_runs() -> Iterator[None]:
    """Flow runs called inside this block send no heartbeats.

    Prefect 3.8's sync flow engine joins its heartbeat thread when a run ends, and that
    thread sleeps in 1 s steps: every run returned up to 1 s late (a trivial flow took 1.10 s
    with heartbeats, 0.11 s without; the demo makes about 35 runs). A heartbeat lets the
    server mark a run whose process died as crashed; a run called here lives and dies with
    the caller's process, which reports its outcome itself. Runs that a worker starts
    (every deployment) keep Prefect's heartbeats.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
