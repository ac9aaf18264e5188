"""Environment rollback in its parts: the pure plan, the one transaction, the forced flag.

The plan tests need no database; the rest run on SQLite and on the real Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from core.errors import ConflictError
from core.ledger import (
    ReleaseRecord,
    apply_env_rollback,
    current_release,
    plan_env_rollback,
    releases_history,
    rollback_env,
)
from tests.factories import make_release

T0 = datetime(2026, 11, 17, 9, tzinfo=UTC)


@dataclass(frozen=True)
class Judged:
    """A compat judgement with the shape of core.compat.CompatReport (verdict, reason)."""

    verdict: str
    reason: str


def _record(release_id: int, parent_id: int | None = None, **models: str) -> ReleaseRecord:
    return ReleaseRecord(
        id=release_id,
        env="prd",
        created_at=T0,
        code_version="1.0",
        image_version="img-1",
        model_versions=models,
        artifact_digests={name: f"sha-{name}-{v}" for name, v in models.items()},
        tag=f"tag-{release_id}",
        reason="seed",
        actor="test",
        parent_id=parent_id,
    )


def test_plan_lists_changed_removed_and_judged_versions_without_writing() -> None:
    current = _record(2, 1, clf="3", other="5", extra="1")
    target = _record(1, None, clf="2", other="5")

    plan = plan_env_rollback(
        current,
        target,
        {"clf": Judged("compatible", "loads")},
        force=False,
        actor="oncall",
        reason="v3 misbehaves",
    )

    assert plan.changed == {"clf": "2"}
    assert plan.removed == ("extra",)
    assert plan.affected == frozenset({"clf", "extra"})
    assert plan.replaced == {"clf": "3"}
    assert [(v.name, v.version, v.verdict) for v in plan.verdicts] == [("clf", "2", "compatible")]
    assert (plan.refusals, plan.forced) == ((), False)
    assert (plan.code_version, plan.image_version) == ("1.0", "img-1")
    assert plan.release_reason == "rollback to tag-1 (#1): v3 misbehaves"
    assert plan.event_reason == "env rollback to tag-1: v3 misbehaves"
    assert plan.registry_reason == "rollback of prd to tag-1: v3 misbehaves"


def test_plan_refuses_a_broken_version_unless_forced_and_then_is_forced() -> None:
    current, target = _record(2, 1, clf="3"), _record(1, None, clf="2")
    broken = {"clf": Judged("broken", "unpickle failed")}

    with pytest.raises(
        ConflictError,
        match=r"rollback refused: clf v2 is broken under image img-9: unpickle failed "
        r"\(--force to override\)",
    ):
        plan_env_rollback(
            current, target, broken, force=False, actor="a", reason="r", image_version="img-9"
        )
    plan = plan_env_rollback(
        current, target, broken, force=True, actor="a", reason="r", image_version="img-9"
    )

    assert plan.forced is True
    assert plan.refusals == ("clf v2 is broken under image img-9: unpickle failed",)
    assert plan.image_version == "img-9"
    assert plan.release_reason.endswith(
        "r (forced past: clf v2 is broken under image img-9: unpickle failed)"
    )


def test_plan_with_force_but_nothing_broken_is_not_forced() -> None:
    plan = plan_env_rollback(
        _record(2, 1, clf="3"),
        _record(1, None, clf="2"),
        {"clf": Judged("drifted", "predictions moved")},
        force=True,
        actor="a",
        reason="r",
    )
    assert plan.forced is False
    assert "forced" not in plan.release_reason


def test_plan_refuses_when_nothing_would_change() -> None:
    with pytest.raises(ConflictError, match="prd already runs the versions of tag-1"):
        plan_env_rollback(
            _record(2, 1, clf="2"),
            _record(1, None, clf="2"),
            {},
            force=False,
            actor="a",
            reason="r",
        )


def test_forced_rollback_records_forced_release_and_a_normal_one_does_not(engine: Engine) -> None:
    for version in ("1", "2", "3"):
        make_release(engine, models=dict(clf=version))
    assert current_release(engine, "prd").forced is False  # type: ignore[union-attr]

    def broken(name: str, version: str) -> Judged:
        return Judged("broken" if version == "2" else "compatible", "cannot load")

    forced = rollback_env(engine, "prd", actor="a", reason="r", verdict_fn=broken, force=True)
    assert forced.forced is True
    assert current_release(engine, "prd").forced is True  # type: ignore[union-attr]

    first = releases_history(engine, "prd")[-1]
    normal = rollback_env(
        engine, "prd", to_tag=first.tag, actor="a", reason="r", verdict_fn=broken, force=True
    )
    assert normal.forced is False
    assert [r.forced for r in releases_history(engine, "prd")] == [False, True, False, False, False]


def test_apply_refuses_a_plan_made_before_the_env_moved(engine: Engine) -> None:
    make_release(engine, models=dict(clf="1"))
    current = make_release(engine, models=dict(clf="2"))
    target = releases_history(engine, "prd")[-1]
    plan = plan_env_rollback(current, target, {}, force=False, actor="a", reason="r")
    make_release(engine, models=dict(clf="3"))  # someone released meanwhile

    with pytest.raises(ConflictError, match=r"prd changed while preparing the rollback"):
        apply_env_rollback(engine, plan)
    assert current_release(engine, "prd").model_versions == {"clf": "3"}  # type: ignore[union-attr]
