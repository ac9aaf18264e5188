"""The replay's unit of work: a chunk of the sample (`RequestChunk`), cut by
`chunk_requests`, shipped as one mapped task's argument (in process or to a Dask worker)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from typing import Any, overload

from core.shadow.replay import ReplayRequest


class RequestChunk(Sequence[ReplayRequest]):
    """One chunk of the sample: an immutable sequence of requests, deliberately not a
    list (nor a tuple or a dataclass).

    A chunk is a mapped task's argument. Prefect walks a list argument item by item,
    field by field, looking for futures (two or three times per run), and Dask does the
    same when it packs a task for a worker: ~40 ms per walk for 2,000 requests, on the
    order of both models' predict on them. To both, this is one opaque value. It travels
    as columns (see `__reduce__`) and names itself for Dask (`__dask_tokenize__`).
    """

    __slots__ = ("_columns", "_requests", "_token")

    def __init__(self, requests: Iterable[ReplayRequest]) -> None:
        self._requests: tuple[ReplayRequest, ...] | None = tuple(requests)
        self._columns: tuple[tuple[Any, ...], ...] | None = None
        self._token = uuid.uuid4().hex

    @classmethod
    def from_columns(cls, columns: tuple[tuple[Any, ...], ...], token: str) -> RequestChunk:
        """A chunk back from its columns (one tuple per ReplayRequest field); its requests
        are built when first read, so a process that only passes it on (Dask's
        scheduler unpickles every task it is sent) builds none."""
        chunk = cls.__new__(cls)
        chunk._requests, chunk._columns, chunk._token = None, columns, token
        return chunk

    @property
    def requests(self) -> tuple[ReplayRequest, ...]:
        """The requests, in order."""
        if self._requests is None:
            assert self._columns is not None
            self._requests = tuple(ReplayRequest(*row) for row in zip(*self._columns, strict=True))
        return self._requests

    def __dask_tokenize__(self) -> tuple[str, str]:
        """Dask's name for this argument when it keys a task. Without it, Dask names an
        object by pickling it (twice, and unpickling it) in the flow's process. A chunk
        is one unit of work, never the same work as another chunk, so a name drawn at
        creation names it; a shipped copy keeps it."""
        return ("RequestChunk", self._token)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as columns (ids, texts, labels, online pairs): plain tuples pickle and
        unpickle in C, where a tuple of dataclasses costs a Python call per request."""
        columns = self._columns
        if columns is None:
            rows = self.requests
            columns = tuple(tuple(getattr(r, name) for r in rows) for name in _REQUEST_FIELDS)
        return (RequestChunk.from_columns, (columns, self._token))

    def __len__(self) -> int:
        if self._requests is None:
            assert self._columns is not None
            return len(self._columns[0])
        return len(self._requests)

    @overload
    def __getitem__(self, index: int) -> ReplayRequest: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ReplayRequest]: ...
    def __getitem__(self, index: int | slice) -> ReplayRequest | Sequence[ReplayRequest]:
        return self.requests[index]

    def __iter__(self) -> Iterator[ReplayRequest]:
        return iter(self.requests)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RequestChunk):
            return self.requests == other.requests
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __repr__(self) -> str:
        return f"RequestChunk({len(self)} requests)"


_REQUEST_FIELDS = tuple(f.name for f in fields(ReplayRequest))  # in order: positional


def chunk_requests(requests: Sequence[ReplayRequest], size: int) -> list[RequestChunk]:
    """Cut the sample into chunks of at most `size` (the unit of work of a mapped task).

    Raises:
        ValueError: if size < 1.
    """
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [RequestChunk(requests[i : i + size]) for i in range(0, len(requests), size)]
