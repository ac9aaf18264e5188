"""The crash matrix of a first retrain: whatever point a run was killed at, ONE more run
ends with a release, the env's champion alias on its version, and a version a router can
load (digest verified). The partial writes are made directly, in the order the flow makes
them (register -> release -> alias), plus the old order's leftover (alias, no release)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config import get_settings
from core.registry import ModelRegistry, ModelVersionInfo
from tests.factories import DATA_END

pytestmark = pytest.mark.slow
NAME = "intent-classifier"
IMAGE = "img-1"


def _record_release(engine, info: ModelVersionInfo) -> None:
    from core.retrain import record_first_release

    record_first_release(engine, get_settings(), info, "killed-run", env="dev")


def killed_after_registering(engine, registry: ModelRegistry, info: ModelVersionInfo) -> None:
    """Registered, nothing else."""


def killed_after_the_release(engine, registry: ModelRegistry, info: ModelVersionInfo) -> None:
    _record_release(engine, info)


def killed_after_the_alias(engine, registry: ModelRegistry, info: ModelVersionInfo) -> None:
    _record_release(engine, info)
    registry.set_alias(NAME, "dev-champion", info.version)


def old_order_alias_without_release(
    engine, registry: ModelRegistry, info: ModelVersionInfo
) -> None:
    # the state: the alias was set, the run died before recording the release
    registry.set_alias(NAME, "dev-champion", info.version)


@pytest.mark.parametrize(
    "killed",
    [
        killed_after_registering,
        killed_after_the_release,
        killed_after_the_alias,
        old_order_alias_without_release,
    ],
)
def test_one_more_run_finishes_a_first_retrain_killed_anywhere(
    db_url: str, monkeypatch: pytest.MonkeyPatch, killed: Callable[..., None]
) -> None:
    from core.db import make_engine, upgrade
    from core.ledger import current_release, releases_history, routing_state
    from core.synthetic import create_source_table
    from flows.retrain_on_image_change import retrain_on_image_change
    from tests.factories import train_and_register

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("IMAGE_VERSION", IMAGE)
    get_settings.cache_clear()
    settings = get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    create_source_table(settings.source_database_url, rows=600, seed=7, end=DATA_END)
    registry = ModelRegistry.from_settings(settings)
    info = train_and_register(registry, image_version=IMAGE)
    killed(engine, registry, info)

    [outcome] = retrain_on_image_change()

    assert outcome.version == info.version
    assert [v.version for v in registry.list_versions(NAME)] == [info.version]  # no retrain
    release = current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {NAME: info.version}
    assert release.artifact_digests == {NAME: info.artifact_sha256}
    assert len(releases_history(engine, "dev")) == 1
    assert registry.aliases(NAME) == {"dev-champion": info.version}
    assert routing_state(engine, "dev")[NAME].champion_version == info.version
    # what a router does on start: load the release's version, digest verified
    loaded = registry.load(NAME, release.model_versions[NAME])
    assert (loaded.version, loaded.artifact_sha256) == (info.version, info.artifact_sha256)
    assert len(loaded.predict(["i lost my card", "reset my password"])) == 2
    [again] = retrain_on_image_change()
    assert (again.action, again.version) == ("up_to_date", info.version)
    engine.dispose()
