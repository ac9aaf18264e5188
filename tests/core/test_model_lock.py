"""`core.model_lock`: two runs on one model serialize, on SQLite and on the real Postgres."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from core.model_lock import ModelLockTimeout, model_lock, model_lock_key

MODEL = "intent-classifier"


@pytest.fixture
def lock_engine(db_url: str) -> Iterator[Engine]:
    from core.db import make_engine

    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_model_lock_key_is_stable_and_per_model() -> None:
    assert model_lock_key(MODEL) == model_lock_key(MODEL)
    assert model_lock_key(MODEL) != model_lock_key("other-model")
    assert -(2**63) <= model_lock_key(MODEL) < 2**63


def test_second_holder_waits_for_the_first(lock_engine: Engine) -> None:
    events: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with model_lock(lock_engine, MODEL, timeout=10):
            events.append("first in")
            first_in.set()
            time.sleep(0.8)
            events.append("first out")

    def second() -> None:
        first_in.wait(5)
        with model_lock(lock_engine, MODEL, timeout=10):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert events == ["first in", "first out", "second in"]


def test_waiting_too_long_is_a_clear_error_and_other_models_do_not_wait(
    lock_engine: Engine,
) -> None:
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with model_lock(lock_engine, MODEL, timeout=5):
            held.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        held.wait(5)
        with (
            pytest.raises(ModelLockTimeout, match="held its lock for more than"),
            model_lock(lock_engine, MODEL, timeout=0.5),
        ):
            pass
        with model_lock(lock_engine, "other-model", timeout=0.5):
            pass
    finally:
        done.set()
        thread.join(10)
    with model_lock(lock_engine, MODEL, timeout=1):  # released when the holder ended
        pass


def test_the_lock_is_reentrant_within_one_thread(lock_engine: Engine) -> None:
    # the train flow runs as a subflow of a retrain that already holds the model's lock
    with model_lock(lock_engine, MODEL, timeout=1):
        with model_lock(lock_engine, MODEL, timeout=1):
            pass
        with model_lock(lock_engine, MODEL, timeout=1):
            pass
    with model_lock(lock_engine, MODEL, timeout=1):
        pass


def test_another_process_holds_it_until_it_is_killed(lock_engine: Engine, db_url: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from core.db import make_engine\n"
            "from core.model_lock import model_lock\n"
            f"with model_lock(make_engine({db_url!r}), {MODEL!r}, timeout=30):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ModelLockTimeout), model_lock(lock_engine, MODEL, timeout=0.5):
            pass
        # a run killed mid-way (no cleanup) leaves no lock behind
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with model_lock(lock_engine, MODEL, timeout=10):
            pass
    finally:
        holder.kill()
        holder.wait(10)
