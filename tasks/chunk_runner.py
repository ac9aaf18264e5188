"""Where mapped chunks run: on a Dask cluster when `DASK_SCHEDULER_ADDRESS` is set
(prefect-dask's `DaskTaskRunner(address=...)`), else on the flow run's own task runner,
in its process.

    for counts in map_chunks(settings, replay_chunk, {"subjects": unmapped(subjects),
                                                        "chunk": chunks}):
        ...

Only the chunk work changes process: the flow, its other tasks, its reports and its
ledger writes stay where the flow runs. A task mapped here must take plain data (names,
versions, chunks) and open what it needs where it runs (`core.worker_resources`): a
Dask worker unpickles its arguments, and a loaded model or an engine must not travel.
Each task run reports to the Prefect API from the worker, under the flow run that mapped
it (prefect-dask ships the run's context, the API address included).

In process, the mapped values reach each run quoted (`prefect.utilities.annotations.quote`):
Prefect does not walk a chunk looking for futures to wait on. It would otherwise visit
every row of every chunk two or three times per run (collecting the run's inputs,
resolving them); for a 2,000-row chunk of the shadow replay that was ~40 ms a visit, on
the order of the models' own predict on it. A chunk is plain data, so there is nothing to
find. Not on Dask: an annotation is a tuple subclass, and Dask, packing a task's
arguments, rebuilds it as a plain tuple, which the task would then receive.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from prefect import Task, get_run_logger
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote, unmapped

from config import Settings

R = TypeVar("R")


@contextmanager
def chunk_runner(settings: Settings) -> Iterator[TaskRunner[Any]]:
    """A started task runner for mapped chunks: a `DaskTaskRunner` connected to
    DASK_SCHEDULER_ADDRESS (closed on exit; the cluster stays), else the current flow
    run's (or, outside a flow run, a thread pool of this process)."""
    address = settings.DASK_SCHEDULER_ADDRESS
    if address:
        from prefect_dask import DaskTaskRunner

        get_run_logger().info("chunks run on the Dask cluster at %s", address)
        with DaskTaskRunner(address=address) as runner:
            yield runner
        return
    context = FlowRunContext.get()
    if context is not None and context.task_runner is not None:
        yield context.task_runner
        return
    with ThreadPoolTaskRunner[Any]() as threads:
        yield threads


def map_chunks(settings: Settings, task: Task[..., R], parameters: dict[str, Any]) -> Iterator[R]:
    """Map `task` over the iterable `parameters` (`unmapped(...)` for the fixed ones) on
    the `chunk_runner` and yield each run's result in the order of the chunks, as it
    completes; a failed run raises its exception here. In process, the chunks are passed
    quoted (see the module's docstring): never walked by Prefect, unwrapped before the
    task runs."""
    with chunk_runner(settings) as runner:
        if isinstance(runner, ThreadPoolTaskRunner):
            parameters = {
                name: value if isinstance(value, unmapped) else quote(value)
                for name, value in parameters.items()
            }
        # Prefect's overloads ask for a Task typed sync-or-async; ours is sync
        futures = runner.map(cast(Any, task), parameters)
        for future in futures:
            yield cast(R, future.result())
