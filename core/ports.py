"""Loopback ports for the processes this project starts (routers, the demo's Prefect
server). A module of its own, importing only the standard library, so a command can pick
a port before it loads anything heavy."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A free TCP port on loopback (bound and released: a race is possible but harmless
    here, the process started on it then fails to start and says so)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
