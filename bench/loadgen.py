"""A small closed-loop HTTP/1.1 load generator for the benchmarks: raw asyncio keep-alive
connections (the client costs little next to the servers), each sending its next request
when the last one answered. Also the server's CPU time per request, read from /proc."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def post_requests(path: str, bodies: Sequence[bytes]) -> list[bytes]:
    """Raw keep-alive POST requests of JSON `bodies` to `path`."""
    return [
        (
            f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def get_status(port: int, path: str) -> int:
    """The status code of GET `path` on 127.0.0.1:`port` (one connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
    await writer.drain()
    line = await reader.readline()
    writer.close()
    return int(line.split()[1])


async def _connection(
    port: int, payloads: list[bytes], offset: int, stop: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    i = offset
    try:
        while time.perf_counter() < stop:
            payload = payloads[i % len(payloads)]
            i += 1
            started = time.perf_counter()
            writer.write(payload)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if b" 200 " not in status_line:
                errors += 1
    finally:
        writer.close()
    return errors


@dataclass
class Round:
    """One timed run against one server at one concurrency."""

    kind: str
    connections: int
    rps: float
    errors: int
    cpu_ms_per_request: float
    latencies: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(sorted(self.latencies), 0.5) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(sorted(self.latencies), 0.99) * 1000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (a server may run its workers as child processes:
    `mlflow models serve`, `sml serve --workers N`)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree.extend(frontier)
    return tree


def process_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process tree, all threads (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(
        (int(fields[11]) + int(fields[12])) / ticks
        for pid in process_tree(root)
        if (fields := _stat(pid)) is not None
    )


async def _load(
    port: int, payloads: list[bytes], seconds: float, connections: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    started = time.perf_counter()
    stop = started + seconds
    errors = await asyncio.gather(
        *(_connection(port, payloads, k * 97, stop, latencies) for k in range(connections))
    )
    return latencies, sum(errors), time.perf_counter() - started


def run_round(
    kind: str,
    pid: int,
    port: int,
    payloads: list[bytes],
    seconds: float,
    connections: int,
) -> Round:
    """Drive one server for `seconds` with `connections` closed-loop connections: its
    throughput, latencies and CPU time per request (less sensitive to other load)."""
    cpu_before = process_cpu_seconds(pid)
    latencies, errors, elapsed = asyncio.run(_load(port, payloads, seconds, connections))
    cpu = process_cpu_seconds(pid) - cpu_before
    n = len(latencies)
    return Round(kind, connections, n / elapsed, errors, cpu * 1000 / max(n, 1), latencies)
