"""The load generator: a small async httpx client replaying queries against one router.

Two phases, both on `time.perf_counter` in this one process (the same clock for every
model under test):

- target rate (open loop): request i is due at `start + i / rate` and sent then, whether
  or not earlier requests have answered, as users arrive; its latency is measured from
  when it was due, so a router that falls behind is charged for the wait (no coordinated
  omission).
- saturation (closed loop): `connections` clients, each sending its next request as soon
  as the last one answered, for the phase's duration: the sustained throughput.

Each request is `POST /predict` with the replayed text, the model's name and a user id of
its own (`loadtest-<n>`). A non-200 answer or an HTTP error (timeout, refused connection)
is a failed request, counted and never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from core.loadtest.stats import PhaseSample

OPEN_LOOP_CONNECTIONS = 128  # enough sockets that the open loop is not a closed one


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: a router's base URL and the model asked for."""

    url: str
    model_name: str


async def _send(http: httpx.AsyncClient, target: Target, text: str, n: int) -> bool:
    """One request; True when it was answered with 200."""
    body = {"text": text, "model": target.model_name, "user_id": f"loadtest-{n}"}
    try:
        response = await http.post(f"{target.url}/predict", json=body)
    except httpx.HTTPError:
        return False  # a timeout or a refused connection: a failed request, counted
    return response.status_code == 200


async def open_loop(
    target: Target, texts: Sequence[str], *, rate_rps: float, seconds: float, timeout: float
) -> PhaseSample:
    """Send `rate_rps` requests per second for `seconds` (open loop, see module doc)."""
    count = max(1, round(rate_rps * seconds))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(
        max_connections=OPEN_LOOP_CONNECTIONS, max_keepalive_connections=OPEN_LOOP_CONNECTIONS
    )
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        start = time.perf_counter()

        async def one(n: int) -> None:
            nonlocal errors
            due = start + n / rate_rps
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            ok = await _send(http, target, texts[n % len(texts)], n)
            if ok:
                latencies.append((time.perf_counter() - due) * 1000)
            else:
                errors += 1

        await asyncio.gather(*(one(n) for n in range(count)))
        elapsed = time.perf_counter() - start
    return PhaseSample("target_rate", tuple(latencies), errors, elapsed)


async def closed_loop(
    target: Target, texts: Sequence[str], *, connections: int, seconds: float, timeout: float
) -> PhaseSample:
    """`connections` clients back to back for `seconds` (closed loop, see module doc)."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        start = time.perf_counter()
        deadline = start + seconds

        async def client(first: int) -> None:
            nonlocal errors
            n = first
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                if await _send(http, target, texts[n % len(texts)], n):
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    errors += 1
                n += connections

        await asyncio.gather(*(client(k) for k in range(connections)))
        elapsed = time.perf_counter() - start
    return PhaseSample("saturation", tuple(latencies), errors, elapsed)


async def warm_up(target: Target, texts: Sequence[str], *, requests: int, timeout: float) -> None:
    """A few sequential requests before anything is measured (connections, caches).

    Raises:
        RuntimeError: the router failed every warm-up request (it cannot be load-tested).
    """
    async with httpx.AsyncClient(timeout=timeout) as http:
        answered = [await _send(http, target, texts[n % len(texts)], n) for n in range(requests)]
    if not any(answered):
        raise RuntimeError(f"{target.model_name} at {target.url} failed every warm-up request")
