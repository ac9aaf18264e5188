"""Request ids for requests that bring none (the router's hot path)."""

from __future__ import annotations

import itertools
import os


class RequestIds:
    """Request ids as unique as uuid4 hex (32 hex digits) without a system call each: a
    random 64-bit prefix per process (drawn again in a forked child) and a counter."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


next_request_id = RequestIds()
