"""`sml rollback` and `sml rollout start|promote|rollback` against a real MLflow store and
the real core.compat verdict: a rollback to a version made unloadable is refused with a
readable reason; `--force` proceeds and is recorded as forced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from config import get_settings, load_settings
from core.ledger import current_release, get_rollout, releases_history
from core.registry import ModelRegistry
from tests.custom_class_models import (
    CUSTOM_MODEL,
    image_code_fixture,  # noqa: F401 (the image_code fixture)
    register_with_custom_class,
    remove_class,
)
from tests.factories import make_release, train_and_register

SmlRunner = Callable[..., Any]


@pytest.fixture
def two_releases(
    ledger_db: Engine, image_code: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[ModelRegistry, str, str]:
    """dev ran v1 (pickles image_code's QueryCleaner), then v2; the image is now img-2."""
    folder, module = image_code
    registry = ModelRegistry.from_settings(load_settings(IMAGE_VERSION="img-1"))
    v1 = register_with_custom_class(registry, folder, module)
    v2 = train_and_register(registry, name=CUSTOM_MODEL, image_version="img-1")
    registry.set_alias(CUSTOM_MODEL, "dev-champion", v2.version)
    make_release(
        ledger_db,
        env="dev",
        models={CUSTOM_MODEL: v1.version},
        digests={CUSTOM_MODEL: v1.artifact_sha256},
    )
    make_release(
        ledger_db,
        env="dev",
        models={CUSTOM_MODEL: v2.version},
        digests={CUSTOM_MODEL: v2.artifact_sha256},
    )
    # MLflow's fluent API (used by registry.register) unsets MLFLOW_TRACKING_URI from
    # os.environ on exit; put the test's value back so the CLI reads the same store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("IMAGE_VERSION", "img-2")
    get_settings.cache_clear()
    return registry, v1.version, v2.version


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rollback_to_unloadable_version_is_refused_then_forced(
    ledger_db: Engine,
    sml: SmlRunner,
    two_releases: tuple[ModelRegistry, str, str],
    image_code: tuple[Path, str],
) -> None:
    registry, v1, v2 = two_releases
    remove_class(*image_code)

    refused = sml("rollback", "--env", "dev", "--reason", "v2 misroutes refunds")
    assert refused.code == 2
    lines = [line for line in refused.err.splitlines() if line.strip()]
    assert len(lines) == 1, refused.err
    assert lines[0].startswith(
        f"error: rollback refused: {CUSTOM_MODEL} v{v1} is broken under image img-2: "
        "unpickle failed:"
    )
    assert "QueryCleaner" in lines[0]
    assert lines[0].endswith("(--force to override)")
    assert current_release(ledger_db, "dev").model_versions == {CUSTOM_MODEL: v2}
    assert registry.get_version(CUSTOM_MODEL, v1).tags["compat.img-2"] == "broken"

    forced = sml("rollback", "--env", "dev", "--reason", "v2 is worse", "--force")
    assert forced.code == 0, forced.err
    assert "recorded as forced" in forced.out
    release = current_release(ledger_db, "dev")
    assert release.model_versions == {CUSTOM_MODEL: v1}
    assert "(forced past: custom-intent v1 is broken under image img-2" in release.reason
    assert release.forced is True
    assert release.actor == "tester"
    assert registry.aliases(CUSTOM_MODEL)["dev-champion"] == v1
    rolled = registry.get_version(CUSTOM_MODEL, v2).tags
    assert "v2 is worse" in rolled["rolled_back_reason"]
    assert rolled["rolled_back_env"] == "dev"


@pytest.mark.slow
@pytest.mark.integration
def test_rollback_to_loadable_version_and_rollout_commands(
    ledger_db: Engine, sml: SmlRunner, two_releases: tuple[ModelRegistry, str, str]
) -> None:
    registry, v1, v2 = two_releases
    first_tag = releases_history(ledger_db, "dev")[-1].tag

    done = sml("rollback", "--env", "dev", "--to", first_tag, "-r", "back to v1")
    assert done.code == 0, done.err
    assert f"dev rolled back: now {first_tag}" in done.out
    assert "recorded as forced" not in done.out
    assert current_release(ledger_db, "dev").forced is False
    assert registry.aliases(CUSTOM_MODEL)["dev-champion"] == v1
    assert registry.get_version(CUSTOM_MODEL, v1).tags["compat.img-2"] == "compatible"

    unknown = sml("rollout", "start", "-e", "dev", "-m", CUSTOM_MODEL, "-v", "77", "-r", "x")
    assert unknown.code == 2
    assert f"model '{CUSTOM_MODEL}' has no version 77" in unknown.err

    started = sml("rollout", "start", "-e", "dev", "-m", CUSTOM_MODEL, "-v", v2, "-r", "again")
    assert started.code == 0, started.err
    rid = int(started.out.split("#", 1)[1].split()[0])
    assert get_rollout(ledger_db, rid).percent == 1.0

    promoted = sml("rollout", "promote", str(rid), "-r", "looks good")
    assert promoted.code == 0, promoted.err
    assert current_release(ledger_db, "dev").model_versions == {CUSTOM_MODEL: v2}
    assert registry.aliases(CUSTOM_MODEL) == {"dev-champion": v2, "dev-previous": v1}

    again = sml("rollout", "promote", str(rid), "-r", "twice")
    assert again.code == 2
    assert f"cannot promote rollout #{rid}" in again.err
    assert "already promoted" in again.err
