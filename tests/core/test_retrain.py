"""`core.retrain.plan_retrain`: every branch of the per-model decision, without Prefect or
MLflow (the versions are plain `ModelVersionInfo` records)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import ConflictError
from core.registry import ModelVersionInfo
from core.retrain import (
    RetrainOutcome,
    check_image,
    never_given_a_role,
    plan_retrain,
    rolled_back_in,
)

MODEL = "intent-classifier"
IMAGE = "img-2"


def _version(
    version: str, *, aliases: tuple[str, ...] = (), tags: dict[str, str] | None = None
) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=MODEL,
        version=version,
        tags=dict(tags or {}),
        aliases=list(aliases),
        run_id=f"run-{version}",
        artifact_sha256=f"sha-{version}",
        image_version=IMAGE,
        created_at=datetime(2026, 1, int(version), tzinfo=UTC),
    )


def test_plan_retrain_first_model_on_an_empty_registry_trains_a_first_champion() -> None:
    plan = plan_retrain(MODEL, IMAGE, [], None, env="dev")

    assert (plan.step, plan.role, plan.version, plan.champion_version) == (
        "train",
        "champion",
        None,
        None,
    )
    assert not plan.up_to_date
    assert plan.resume_version is None
    assert plan.alias == "dev-champion"


def test_plan_retrain_new_image_with_a_release_trains_a_candidate() -> None:
    plan = plan_retrain(MODEL, IMAGE, [], "1", env="stg")

    assert (plan.step, plan.role, plan.champion_version) == ("train", "candidate", "1")
    assert plan.resume_version is None
    assert plan.alias == "stg-candidate"
    assert "training" in plan.describe()


def test_plan_retrain_image_with_its_candidate_is_up_to_date() -> None:
    plan = plan_retrain(MODEL, IMAGE, [_version("2", aliases=("dev-candidate",))], "1", env="dev")

    assert plan.up_to_date
    assert (plan.version, plan.resume_version) == ("2", None)
    outcome = RetrainOutcome.nothing_to_do(plan)
    assert (outcome.action, outcome.version, outcome.reason) == (
        "up_to_date",
        "2",
        "already trained",
    )


def test_plan_retrain_champion_trained_on_this_image_is_up_to_date() -> None:
    champion = _version("1", aliases=("dev-champion",))

    plan = plan_retrain(MODEL, IMAGE, [champion], "1", env="dev")

    assert plan.up_to_date
    assert plan.version == "1"


def test_plan_retrain_resumes_a_version_registered_but_never_given_a_role() -> None:
    plan = plan_retrain(MODEL, IMAGE, [_version("2")], "1", env="dev")

    assert (plan.step, plan.role, plan.resume_version) == ("resume", "candidate", "2")
    assert "with no role here yet" in plan.describe()


def test_plan_retrain_resumes_a_first_champion_that_never_got_its_release() -> None:
    plan = plan_retrain(MODEL, IMAGE, [_version("1")], None, env="dev")

    assert (plan.step, plan.role, plan.resume_version) == ("resume", "champion", "1")
    assert "first release" in plan.describe()


def test_plan_retrain_an_alias_without_a_release_is_finished_not_trusted() -> None:
    # the old order set `<env>-champion` before the release, then crashed: the ledger
    # (no release) is the truth, so the version gets its first release now
    plan = plan_retrain(MODEL, IMAGE, [_version("1", aliases=("dev-champion",))], None, env="dev")

    assert (plan.step, plan.role, plan.resume_version) == ("resume", "champion", "1")


def test_plan_retrain_first_release_of_a_version_another_env_trained() -> None:
    # stg's retrain registered v1 (stg-champion); prd has no release: no training, v1 is
    # prd's first release
    trained_by_stg = _version("1", aliases=("stg-champion",))

    plan = plan_retrain(MODEL, IMAGE, [trained_by_stg], None, env="prd")

    assert (plan.step, plan.role, plan.version) == ("resume", "champion", "1")
    assert plan.alias == "prd-champion"


def test_plan_retrain_first_release_prefers_what_serves_somewhere() -> None:
    versions = [_version("1", aliases=("stg-champion",)), _version("2", aliases=("stg-candidate",))]

    plan = plan_retrain(MODEL, IMAGE, versions, None, env="prd")

    assert (plan.step, plan.role, plan.version) == ("resume", "champion", "1")
    # without a champion anywhere, the newest
    plan = plan_retrain(MODEL, IMAGE, [_version("1"), _version("2")], None, env="prd")
    assert plan.version == "2"


def test_plan_retrain_first_release_skips_versions_rolled_back_here() -> None:
    versions = [
        _version("1"),
        _version("2", tags={"rolled_back_reason": "x", "rolled_back_env": "prd"}),
    ]

    assert plan_retrain(MODEL, IMAGE, versions, None, env="prd").version == "1"
    only_rolled_back = plan_retrain(MODEL, IMAGE, versions, None, env="prd", rolled_back={"1", "2"})
    assert (only_rolled_back.step, only_rolled_back.role) == ("train", "champion")


def test_plan_retrain_another_envs_version_becomes_this_envs_candidate() -> None:
    # prd serves v1 (an older image); stg's retrain registered v2 for this image
    versions = [_version("2", aliases=("stg-candidate",))]

    plan = plan_retrain(MODEL, IMAGE, versions, "1", env="prd")

    assert (plan.step, plan.role, plan.version, plan.champion_version) == (
        "resume",
        "candidate",
        "2",
        "1",
    )
    assert plan.alias == "prd-candidate"


def test_plan_retrain_a_version_rolled_back_in_this_env_is_not_reopened() -> None:
    by_tag = _version("2", tags={"rolled_back_reason": "errors", "rolled_back_env": "prd"})
    assert plan_retrain(MODEL, IMAGE, [by_tag], "1", env="prd").up_to_date
    # by the ledger's rollouts
    assert plan_retrain(MODEL, IMAGE, [_version("2")], "1", env="prd", rolled_back={"2"}).up_to_date
    # rolled back in stg only: still prd's candidate
    in_stg = _version("2", tags={"rolled_back_reason": "errors", "rolled_back_env": "stg"})
    assert plan_retrain(MODEL, IMAGE, [in_stg], "1", env="prd").resume_version == "2"


def test_plan_retrain_a_rolled_back_candidate_is_not_resumed() -> None:
    rolled_back = _version("2", tags={"rolled_back_reason": "errors at 10%"})

    plan = plan_retrain(MODEL, IMAGE, [rolled_back], "1", env="dev")

    assert plan.up_to_date
    assert plan.version == "2"


def test_plan_retrain_a_version_older_than_the_release_is_up_to_date() -> None:
    plan = plan_retrain(MODEL, IMAGE, [_version("2")], "3", env="dev")

    assert (plan.step, plan.version, plan.champion_version) == ("up_to_date", "2", "3")


def test_plan_retrain_looks_at_the_newest_version_of_the_image() -> None:
    plan = plan_retrain(
        MODEL, IMAGE, [_version("2", aliases=("dev-previous",)), _version("3")], "1", env="dev"
    )

    assert (plan.step, plan.version) == ("resume", "3")


def test_plan_retrain_aliases_of_other_envs_do_not_count_here() -> None:
    # stg's candidate v2 is no role in dev: dev opens it as its own candidate
    plan = plan_retrain(MODEL, IMAGE, [_version("2", aliases=("stg-candidate",))], "1", env="dev")

    assert (plan.step, plan.role, plan.version) == ("resume", "candidate", "2")


def test_never_given_a_role_only_for_unaliased_unrolled_back_newer_versions() -> None:
    champion = _version("3", aliases=("dev-champion",))

    assert never_given_a_role(_version("4"), champion)
    assert never_given_a_role(_version("1"), None)
    assert not never_given_a_role(_version("2"), champion)  # older: it served once
    assert not never_given_a_role(_version("4", aliases=("dev-candidate",)), champion)
    assert not never_given_a_role(_version("4", tags={"rolled_back_reason": "bad"}), champion)
    assert never_given_a_role(_version("4", aliases=("stg-candidate",)), champion, env="dev")


def test_rolled_back_in_reads_the_env_tag() -> None:
    assert rolled_back_in(
        _version("2", tags={"rolled_back_reason": "x", "rolled_back_env": "prd"}), "prd"
    )
    assert not rolled_back_in(
        _version("2", tags={"rolled_back_reason": "x", "rolled_back_env": "stg"}), "prd"
    )
    assert rolled_back_in(_version("2", tags={"rolled_back_reason": "x"}), "prd")  # no env tag
    assert not rolled_back_in(_version("2"), "prd")


def test_nothing_to_do_refuses_a_plan_with_work() -> None:
    with pytest.raises(ValueError, match="not up to date"):
        RetrainOutcome.nothing_to_do(plan_retrain(MODEL, IMAGE, [], None, env="dev"))


def test_check_image_accepts_the_running_image_and_refuses_another() -> None:
    assert check_image("img-2", None) == "img-2"
    assert check_image("img-2", "img-2") == "img-2"
    with pytest.raises(ConflictError, match="run the flow in the new image"):
        check_image("img-2", "img-9")
