"""The same servers driven by wrk (an external C load generator), when it is installed.

bench/router.py's own client is Python on the same 2 cores as the servers; wrk costs far
less per request, so its figures show what a server does when the client is not the limit.
Each round posts the same bodies as the Python client (a Lua script cycles through them),
one wrk thread, keep-alive connections, `--latency` for the percentiles.

    apt-get install wrk   # Debian's package; the benchmark skips this part without it
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadgen import process_cpu_seconds

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkRound:
    """One wrk run against one server."""

    kind: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float


def available() -> bool:
    """True when a `wrk` binary is on PATH."""
    return shutil.which("wrk") is not None


def lua_script(path: str, bodies: list[str]) -> str:
    """A wrk script that POSTs `bodies` to `path` in turn (JSON strings)."""
    table = ",\n".join(json.dumps(b) for b in bodies)
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{table}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        f'  return wrk.format(nil, "{path}", nil, bodies[(i % #bodies) + 1])\n'
        "end\n"
    )


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> tuple[float, float, float, int]:
    """(req/s, p50 ms, p99 ms, errors) from `wrk --latency` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", output))
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\w+ (\d+)", socket_errors.group(1)))
    return rps, p50, p99, errors


def run_round(
    kind: str, pid: int, port: int, path: str, bodies: list[str], seconds: float, connections: int
) -> WrkRound:
    """One wrk run of `seconds` at `connections`, with the server's CPU per request."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua_script(path, bodies))
    try:
        cpu_before = process_cpu_seconds(pid)
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
             "-s", script.name, f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
        cpu = process_cpu_seconds(pid) - cpu_before
    finally:
        Path(script.name).unlink()
    rps, p50, p99, errors = parse(result.stdout)
    per_request = cpu * 1000.0 / max(1.0, rps * seconds)
    return WrkRound(kind, connections, rps, p50, p99, errors, per_request)


def run_rounds(
    servers: dict[str, tuple[int, int]],
    requests: dict[str, tuple[str, list[str]]],
    levels: list[int],
    rounds: int,
    seconds: float,
) -> list[WrkRound]:
    """`rounds` interleaved wrk rounds per level over `servers` ({kind: (pid, port)}),
    each posting `requests[kind]` ((path, bodies)); none when wrk is not installed."""
    if rounds < 1:
        return []
    if not available():
        print("wrk is not installed (apt-get install wrk): no external-client rounds")
        return []
    kinds = list(servers)
    done = []
    for level in levels:
        for k in range(rounds):
            for kind in kinds[k % len(kinds) :] + kinds[: k % len(kinds)]:
                pid, port = servers[kind]
                path, bodies = requests[kind]
                r = run_round(kind, pid, port, path, bodies, seconds, level)
                done.append(r)
                print(
                    f"  wrk c={level:<3d} {kind:6s} {r.rps:7.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
                    f"p99 {r.p99_ms:8.2f} ms  cpu {r.cpu_ms_per_request:5.2f} ms/req  "
                    f"errors {r.errors}",
                    flush=True,
                )
    return done


def report(rounds: list[WrkRound]) -> None:
    """Medians per server and level, and the full router's ratios, as wrk measured them."""
    if not rounds:
        return
    print("--- wrk (external client): medians of rounds ---")
    for level in sorted({r.connections for r in rounds}):
        mine = {
            kind: [r for r in rounds if r.connections == level and r.kind == kind]
            for kind in dict.fromkeys(r.kind for r in rounds)
        }
        med = {
            kind: tuple(statistics.median(getattr(r, f) for r in rs) for f in _FIELDS)
            for kind, rs in mine.items()
            if rs
        }
        line = "  ".join(
            f"{kind} {m[0]:.0f} req/s p50 {m[1]:.2f} p99 {m[2]:.2f} ms cpu {m[3]:.2f} ms/req"
            for kind, m in med.items()
        )
        print(f"c={level}: {line}")
        if "full" in med:
            full = med["full"]
            ratios = [
                f"full/{other} throughput {full[0] / m[0]:.2f}x p99 {full[2] / m[2]:.2f}x"
                for other, m in med.items()
                if other != "full"
            ]
            print(f"c={level}: {'; '.join(ratios)}")


_FIELDS = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
