"""`build-release-state`: embed the FAQ corpus with one retriever version into its answer
index, in chunks mapped across workers, and publish it.

    prefect deployment run 'build-release-state/prd' \
        --param model_name=faq-retriever --param version=3

Run by retrain (a subflow) before a new version of a stateful family gets a role: a
version takes no traffic before its state is published. Under the version's build lock:
if the state is published already, nothing to do; else prepare a clean staging area
(dropping what a killed build left), write the chunks (mapped tasks: with
DASK_SCHEDULER_ADDRESS set they run on the workers of that Dask cluster, else in this
process; a progress artifact follows them), then publish with one
rename and the `release_states` row. Leaves a markdown artifact with rows and seconds.
"""

from __future__ import annotations

from prefect import flow

from config import get_settings
from core.db import state_database
from core.release_state import ReleaseState, build_report_markdown
from core.reporting import artifact_key
from tasks.release_state import (
    find_published,
    plan_chunks,
    prepare_staging,
    publish,
    read_corpus,
    state_build_lock,
    write_chunks,
)
from tasks.reporting import publish_markdown


@flow(name="build-release-state")
def build_release_state(
    model_name: str, version: str, chunk_rows: int | None = None
) -> ReleaseState:
    """Build and publish the answer index of `model_name` v`version` (nothing if it is
    published already).

    Args:
        chunk_rows: corpus rows per mapped chunk (default Settings RELEASE_STATE_CHUNK_ROWS).

    Raises:
        DataError: an unusable corpus, an embedder that is not one, or a chunk missing at
            publish; nothing is published.
        ModelLockTimeout: another build of the version held its lock for too long.
    """
    settings = get_settings()
    version = str(version)
    with (
        state_database(settings.database_url, wait_seconds=10) as engine,
        state_build_lock(engine, model_name, version),
    ):
        # Extract: published already? else the corpus, in chunks
        state = find_published(engine, model_name, version)
        built = state is None
        if state is None:
            corpus = read_corpus(settings)
            chunks = plan_chunks(corpus, chunk_rows or settings.RELEASE_STATE_CHUNK_ROWS)

            # Transform: a clean staging area, every chunk embedded and written
            area = prepare_staging(engine, model_name, version, settings)
            rows = write_chunks(settings, area, model_name, version, chunks)

            # Load: one rename and the release_states row
            state = publish(engine, area, model_name, version, rows)

    # Report
    publish_markdown(
        key=artifact_key("release-state", model_name),
        markdown=build_report_markdown(state, built),
        description=f"release state of {model_name} v{version}: {state.rows} rows",
    )
    return state
