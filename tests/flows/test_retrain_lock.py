"""Two runs on one model serialize on the model's lock (SQLite and the real Postgres):
the second waits, re-plans, and neither adopts a version the other is still finishing
nor trains a duplicate."""

from __future__ import annotations

import threading
import time

import pytest

from config import get_settings
from core.registry import ModelRegistry
from tests.factories import DATA_END

pytestmark = pytest.mark.slow
NAME = "intent-classifier"


@pytest.fixture
def retrain_env(db_url: str, monkeypatch: pytest.MonkeyPatch):
    from core.db import make_engine, upgrade
    from core.synthetic import create_source_table

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IMAGE_VERSION", "img-1")
    get_settings.cache_clear()
    settings = get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    create_source_table(settings.source_database_url, rows=600, seed=7, end=DATA_END)
    yield engine, ModelRegistry.from_settings(settings)
    engine.dispose()


def _in_thread(results: list, errors: list) -> threading.Thread:
    from flows.retrain_on_image_change import retrain_on_image_change

    def run() -> None:
        try:
            results.extend(retrain_on_image_change())
        except Exception as exc:  # reported by the test
            errors.append(exc)

    return threading.Thread(target=run)


def test_two_retrains_at_once_make_one_version_and_one_release(retrain_env) -> None:
    from core.ledger import releases_history

    engine, registry = retrain_env
    results: list = []
    errors: list = []
    threads = [_in_thread(results, errors), _in_thread(results, errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    assert errors == []
    assert sorted((o.action, o.version) for o in results) == [
        ("first_champion", "1"),
        ("up_to_date", "1"),
    ]
    assert [v.version for v in registry.list_versions(NAME)] == ["1"]
    assert len(releases_history(engine, "dev")) == 1
    assert registry.aliases(NAME) == {"dev-champion": "1"}


def test_retrain_waits_for_a_live_train_and_does_not_adopt_its_version(
    retrain_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.model_lock import model_lock
    from core.retrain import record_first_release
    from tests.factories import train_and_register

    engine, registry = retrain_env
    v1 = train_and_register(registry, image_version="img-0")
    record_first_release(engine, get_settings(), v1, "test", env="dev")
    registry.set_alias(NAME, "dev-champion", v1.version)
    monkeypatch.setenv("IMAGE_VERSION", "img-2")
    get_settings.cache_clear()
    results: list = []
    errors: list = []

    # a live `train` run on img-2: holds the lock, has registered v2, not yet its alias
    with model_lock(engine, NAME, timeout=5):
        v2 = train_and_register(registry, image_version="img-2")
        retrain = _in_thread(results, errors)
        retrain.start()
        time.sleep(3)
        assert retrain.is_alive()  # waiting for the lock, planned nothing yet
        assert registry.aliases(NAME) == {"dev-champion": "1"}
        registry.set_alias(NAME, "dev-candidate", v2.version)  # the train run finishes
    retrain.join(300)

    assert errors == []
    assert [(o.action, o.version) for o in results] == [("up_to_date", "2")]
    assert [v.version for v in registry.list_versions(NAME)] == ["1", "2"]
    assert registry.aliases(NAME) == {"dev-champion": "1", "dev-candidate": "2"}
