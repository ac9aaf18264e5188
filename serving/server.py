"""Run a router app with uvicorn: in the foreground (`sml serve`) or in a background
thread on a free loopback port (tests, benchmarks, other components' demos)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 60.0
) -> Iterator[str]:
    """Serve `app` in a daemon thread; yield its base URL (``http://host:port``).

    port 0 picks a free port. On exit the server shuts down gracefully (the app's
    lifespan stops, so the traffic buffer is flushed).

    Raises:
        RuntimeError: the server did not start within `startup_timeout` seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the router did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(120)
        sock.close()
