"""`retrain-on-image-change` under the real Prefect harness, MLflow sqlite store and ledger."""

from __future__ import annotations

import pytest

from config import get_settings
from core.errors import ConflictError
from core.registry import ModelRegistry
from tests.factories import DATA_END

pytestmark = pytest.mark.slow
NAME = "intent-classifier"


@pytest.fixture
def lifecycle_env(db_url: str, monkeypatch: pytest.MonkeyPatch):
    """A migrated state database (SQLite, then the real Postgres) and a filled source
    table for the isolated settings."""
    from core.db import make_engine, upgrade
    from core.synthetic import create_source_table

    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    settings = get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    create_source_table(settings.source_database_url, rows=1_500, seed=7, end=DATA_END)

    def use_image(image: str, env: str = "dev") -> ModelRegistry:
        monkeypatch.setenv("IMAGE_VERSION", image)
        monkeypatch.setenv("ENVIRONMENT", env)
        get_settings.cache_clear()
        return ModelRegistry.from_settings(get_settings())

    yield engine, use_image
    engine.dispose()


def test_retrain_new_image_creates_one_candidate_then_nothing(lifecycle_env) -> None:
    from core.ledger import current_release
    from flows.retrain_on_image_change import retrain_on_image_change

    engine, use_image = lifecycle_env

    # First image: no champion yet -> v1 becomes champion with a first release.
    registry = use_image("img-1")
    [first] = retrain_on_image_change()
    assert (first.action, first.version) == ("first_champion", "1")
    assert registry.aliases(NAME) == {"dev-champion": "1"}
    release = current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {NAME: "1"}
    assert release.image_version == "img-1"
    assert release.artifact_digests[NAME] == registry.get_version(NAME, "1").artifact_sha256

    # New image: the champion is judged, one new version opens as candidate.
    registry = use_image("img-2")
    [second] = retrain_on_image_change(image_version="img-2")
    assert (second.action, second.version) == ("candidate", "2")
    assert second.champion_verdict == "compatible"
    assert registry.aliases(NAME) == {"dev-champion": "1", "dev-candidate": "2"}
    assert [v.version for v in registry.list_versions(NAME, image_version="img-2")] == ["2"]
    champion = registry.get_version(NAME, "1")
    assert champion.compat_verdict("img-2") == "compatible"
    assert "golden predictions" in champion.tags["compat.img-2.reason"]

    # Same image again: nothing new.
    [third] = retrain_on_image_change()
    assert (third.action, third.version) == ("up_to_date", "2")
    assert [v.version for v in registry.list_versions(NAME)] == ["1", "2"]
    assert current_release(engine, "dev").id == release.id


def test_retrain_refuses_an_image_other_than_the_running_one(lifecycle_env) -> None:
    from flows.retrain_on_image_change import retrain_on_image_change

    _, use_image = lifecycle_env
    registry = use_image("img-1")
    with pytest.raises(ConflictError, match="run the flow in the new image"):
        retrain_on_image_change(image_version="img-9")
    assert registry.list_models() == []


def test_retrain_resumes_a_run_that_stopped_between_register_and_alias(lifecycle_env) -> None:
    from core.ledger import current_release
    from flows.retrain_on_image_change import retrain_on_image_change
    from flows.train import train

    engine, use_image = lifecycle_env
    use_image("img-1")
    retrain_on_image_change()
    registry = use_image("img-2")
    # Given a run on img-2 that registered v2 and died before setting `candidate`
    train(model_name=NAME)
    assert registry.aliases(NAME) == {"dev-champion": "1"}

    # When the scheduled flow runs again on the same image
    [outcome] = retrain_on_image_change()

    # Then it finishes that run's work instead of training again or skipping the image
    assert (outcome.action, outcome.version) == ("candidate", "2")
    assert registry.aliases(NAME) == {"dev-champion": "1", "dev-candidate": "2"}
    assert [v.version for v in registry.list_versions(NAME)] == ["1", "2"]
    assert current_release(engine, "dev").model_versions == {NAME: "1"}
    [again] = retrain_on_image_change()
    assert again.action == "up_to_date"


def test_retrain_resumes_a_first_champion_that_never_got_its_release(lifecycle_env) -> None:
    from core.ledger import current_release
    from flows.retrain_on_image_change import retrain_on_image_change
    from flows.train import train

    engine, use_image = lifecycle_env
    registry = use_image("img-1")
    train(model_name=NAME)  # registered, then the run died: no champion, no release

    [outcome] = retrain_on_image_change()

    assert (outcome.action, outcome.version) == ("first_champion", "1")
    assert registry.aliases(NAME) == {"dev-champion": "1"}
    assert current_release(engine, "dev").model_versions == {NAME: "1"}
    assert [v.version for v in registry.list_versions(NAME)] == ["1"]


def test_each_env_gets_its_first_release_and_candidate_of_the_shared_versions(
    lifecycle_env,
) -> None:
    from core.ledger import current_release, releases_history
    from flows.retrain_on_image_change import retrain_on_image_change

    engine, use_image = lifecycle_env

    # stg retrains first: v1 is its first release
    use_image("img-1", env="stg")
    [stg_first] = retrain_on_image_change()
    assert (stg_first.action, stg_first.version) == ("first_champion", "1")

    # prd on the same image: no training, v1 becomes prd's first release too
    registry = use_image("img-1", env="prd")
    [prd_first] = retrain_on_image_change(image_version="img-1")
    assert (prd_first.action, prd_first.version) == ("first_champion", "1")
    assert [v.version for v in registry.list_versions(NAME)] == ["1"]
    assert registry.aliases(NAME) == {"stg-champion": "1", "prd-champion": "1"}
    stg, prd = current_release(engine, "stg"), current_release(engine, "prd")
    assert (stg.model_versions, prd.model_versions) == ({NAME: "1"}, {NAME: "1"})
    assert stg.tag.endswith("-rc")
    assert not prd.tag.endswith("-rc")
    assert stg.artifact_digests == prd.artifact_digests
    assert current_release(engine, "dev") is None

    # a new image: stg trains v2 as its candidate, prd opens the same v2 as its own
    use_image("img-2", env="stg")
    [stg_second] = retrain_on_image_change()
    registry = use_image("img-2", env="prd")
    [prd_second] = retrain_on_image_change()
    assert (stg_second.action, stg_second.version) == ("candidate", "2")
    assert (prd_second.action, prd_second.version, prd_second.champion_version) == (
        "candidate",
        "2",
        "1",
    )
    assert [v.version for v in registry.list_versions(NAME)] == ["1", "2"]
    assert registry.aliases(NAME) == {
        "stg-champion": "1",
        "stg-candidate": "2",
        "prd-champion": "1",
        "prd-candidate": "2",
    }
    # candidates have no ledger row: one release per env
    assert len(releases_history(engine, "stg", 10)) == len(releases_history(engine, "prd", 10)) == 1


def test_retrain_on_an_unmigrated_database_stops_before_mlflow(
    lifecycle_env, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import SmlError
    from flows.retrain_on_image_change import retrain_on_image_change

    _, use_image = lifecycle_env
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/never-migrated.db")
    registry = use_image("img-1")

    with pytest.raises(SmlError, match="run `sml db upgrade`"):
        retrain_on_image_change()

    assert registry.list_models() == []
