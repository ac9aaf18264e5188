"""Release state: derived data built once per model version that reads it, switched by
the release pointer.

A model version that reads state (the FAQ retriever: `models.ModelFamily.state ==
"answer_index"`) has its corpus embedded once into its own place, keyed by
`model_state_key(model, version)`:

- Postgres: a schema `release_state_<key>` in the state database;
- SQLite: a database file `<state_dir>/release_state_<key>.db`.

A release names its model versions, so the release in force *is* the pointer: a rollback
appends a release with the old versions, whose states are already built, and readers
follow it at once. A build writes a staging area in chunks (mappable across workers) and
publishes with one rename plus one `release_states` row, so a crash never leaves anything
a reader could see. Garbage collection keeps the states of the last K releases of each
env and of active rollouts, and drops the rest and every abandoned staging area.

Modules: `keys` (names, keys, reads), `chunks` (corpus -> chunks -> encoded rows),
`staging` (per-backend write, publish, drop), `build` (the build), `gc` (retention).
`build` and `chunks` (numpy, pandas) load on first use of one of their names, so reading
keys (every `sml` command that shows a release) costs no pandas import.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.release_state.build import (
        Progress,
        build_answer_index,
        build_report_markdown,
        write_chunk,
        write_vectors,
    )
    from core.release_state.chunks import (
        Chunk,
        Embedder,
        as_embedder,
        check_corpus,
        embed_chunk,
        plan_chunks,
    )
from core.release_state.gc import GcReport, collect_garbage, retained_keys
from core.release_state.keys import (
    ReleaseState,
    file_for,
    find_state,
    list_states,
    model_state_key,
    require_ready,
    schema_for,
    staging_file_for,
    staging_schema_for,
    state_dir_of,
    state_for_release,
    state_key,
    validate_identifier,
    validate_key,
)
from core.release_state.staging import StagingArea, build_lock, prepare_staging, publish

__all__ = [
    "Chunk",
    "Embedder",
    "GcReport",
    "Progress",
    "ReleaseState",
    "StagingArea",
    "as_embedder",
    "build_answer_index",
    "build_lock",
    "build_report_markdown",
    "check_corpus",
    "collect_garbage",
    "embed_chunk",
    "file_for",
    "find_state",
    "list_states",
    "model_state_key",
    "plan_chunks",
    "prepare_staging",
    "publish",
    "require_ready",
    "retained_keys",
    "schema_for",
    "staging_file_for",
    "staging_schema_for",
    "state_dir_of",
    "state_for_release",
    "state_key",
    "validate_identifier",
    "validate_key",
    "write_chunk",
    "write_vectors",
]

# The builders' names, loaded on first use (PEP 562): pandas only when a state is built.
_LAZY = {
    **dict.fromkeys(
        ("Progress", "build_answer_index", "build_report_markdown", "write_chunk",
         "write_vectors"),
        "core.release_state.build",
    ),
    **dict.fromkeys(
        ("Chunk", "Embedder", "as_embedder", "check_corpus", "embed_chunk", "plan_chunks"),
        "core.release_state.chunks",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """A builder's name from its module, imported now (AttributeError for any other)."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
