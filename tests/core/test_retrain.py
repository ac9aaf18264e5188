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
    plan = plan_retrain(MODEL, IMAGE, [], None)

    assert (plan.step, plan.role, plan.version, plan.champion_version) == (
        "train",
        "champion",
        None,
        None,
    )
    assert not plan.up_to_date
    assert plan.resume_version is None


def test_plan_retrain_new_image_with_a_champion_trains_a_candidate() -> None:
    plan = plan_retrain(MODEL, IMAGE, [], _version("1", aliases=("champion",)))

    assert (plan.step, plan.role, plan.champion_version) == ("train", "candidate", "1")
    assert plan.resume_version is None
    assert "training" in plan.describe()


def test_plan_retrain_image_with_its_candidate_is_up_to_date() -> None:
    champion = _version("1", aliases=("champion",))
    plan = plan_retrain(MODEL, IMAGE, [_version("2", aliases=("candidate",))], champion)

    assert plan.up_to_date
    assert (plan.version, plan.resume_version) == ("2", None)
    outcome = RetrainOutcome.nothing_to_do(plan)
    assert (outcome.action, outcome.version, outcome.reason) == (
        "up_to_date",
        "2",
        "already trained",
    )


def test_plan_retrain_champion_trained_on_this_image_is_up_to_date() -> None:
    champion = _version("1", aliases=("champion",))

    plan = plan_retrain(MODEL, IMAGE, [champion], champion)

    assert plan.up_to_date
    assert plan.version == "1"


def test_plan_retrain_resumes_a_version_registered_but_never_given_a_role() -> None:
    champion = _version("1", aliases=("champion",))

    plan = plan_retrain(MODEL, IMAGE, [_version("2")], champion)

    assert (plan.step, plan.role, plan.resume_version) == ("resume", "candidate", "2")
    assert "never given a role" in plan.describe()


def test_plan_retrain_resumes_a_first_champion_that_never_got_its_alias() -> None:
    plan = plan_retrain(MODEL, IMAGE, [_version("1")], None)

    assert (plan.step, plan.role, plan.resume_version) == ("resume", "champion", "1")


def test_plan_retrain_a_rolled_back_candidate_is_not_resumed() -> None:
    champion = _version("1", aliases=("champion",))
    rolled_back = _version("2", tags={"rolled_back_reason": "errors at 10%"})

    plan = plan_retrain(MODEL, IMAGE, [rolled_back], champion)

    assert plan.up_to_date
    assert plan.version == "2"


def test_plan_retrain_looks_at_the_newest_version_of_the_image() -> None:
    champion = _version("1", aliases=("champion",))

    plan = plan_retrain(
        MODEL, IMAGE, [_version("2", aliases=("previous",)), _version("3")], champion
    )

    assert (plan.step, plan.version) == ("resume", "3")


def test_never_given_a_role_only_for_unaliased_unrolled_back_newer_versions() -> None:
    champion = _version("3", aliases=("champion",))

    assert never_given_a_role(_version("4"), champion)
    assert never_given_a_role(_version("1"), None)
    assert not never_given_a_role(_version("2"), champion)  # older: it served once
    assert not never_given_a_role(_version("4", aliases=("candidate",)), champion)
    assert not never_given_a_role(_version("4", tags={"rolled_back_reason": "bad"}), champion)


def test_nothing_to_do_refuses_a_plan_with_work() -> None:
    with pytest.raises(ValueError, match="not up to date"):
        RetrainOutcome.nothing_to_do(plan_retrain(MODEL, IMAGE, [], None))


def test_check_image_accepts_the_running_image_and_refuses_another() -> None:
    assert check_image("img-2", None) == "img-2"
    assert check_image("img-2", "img-2") == "img-2"
    with pytest.raises(ConflictError, match="run the flow in the new image"):
        check_image("img-2", "img-9")
