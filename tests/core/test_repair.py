"""`core.repair`: the alias fixes that make an env's aliases mirror its ledger (pure), and
`repair_env` against a real ledger with a fake registry."""

from __future__ import annotations

from sqlalchemy import Engine

from core.repair import AliasFix, plan_repair, repair_env

MODEL = "intent-classifier"


class FakeRegistry:
    """The registry calls `repair_env` makes, over a dict of aliases."""

    def __init__(self, aliases: dict[str, dict[str, str]]) -> None:
        self.held = aliases

    def list_models(self) -> list[str]:
        return sorted(self.held)

    def aliases(self, name: str) -> dict[str, str]:
        return dict(self.held.get(name, {}))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.held.setdefault(name, {})[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.held.get(name, {}).pop(alias, None)


def test_plan_repair_nothing_to_do_when_aliases_mirror_the_ledger() -> None:
    aliases = {MODEL: {"dev-champion": "2", "dev-candidate": "3", "stg-champion": "1"}}

    assert plan_repair("dev", {MODEL: "2"}, aliases) == []


def test_plan_repair_sets_a_champion_alias_missing_after_a_release() -> None:
    [fix] = plan_repair("prd", {MODEL: "1"}, {MODEL: {"stg-champion": "1"}})

    assert fix == AliasFix(MODEL, "prd-champion", "1", None, "the prd release serves v1")
    assert fix.describe() == (
        "intent-classifier: prd-champion unset -> v1 (the prd release serves v1)"
    )


def test_plan_repair_moves_a_champion_alias_behind_the_ledger() -> None:
    [fix] = plan_repair("dev", {MODEL: "3"}, {MODEL: {"dev-champion": "2"}})

    assert (fix.alias, fix.was, fix.version) == ("dev-champion", "2", "3")


def test_plan_repair_removes_a_champion_alias_the_ledger_never_released() -> None:
    [fix] = plan_repair("dev", {}, {MODEL: {"dev-champion": "1"}})

    assert (fix.alias, fix.version, fix.was) == ("dev-champion", None, "1")
    assert "the next retrain gives it a first one" in fix.describe()


def test_plan_repair_removes_a_candidate_alias_on_the_champion() -> None:
    fixes = plan_repair("dev", {MODEL: "3"}, {MODEL: {"dev-champion": "2", "dev-candidate": "3"}})

    assert [(f.alias, f.version) for f in fixes] == [("dev-champion", "3"), ("dev-candidate", None)]


def test_plan_repair_never_touches_other_envs() -> None:
    aliases = {MODEL: {"stg-champion": "9", "stg-candidate": "1", "champion": "4"}}

    assert plan_repair("dev", {MODEL: "1"}, aliases) == [
        AliasFix(MODEL, "dev-champion", "1", None, "the dev release serves v1")
    ]


def test_repair_env_applies_the_plan_and_dry_run_changes_nothing(engine: Engine) -> None:
    from core.ledger import record_release

    record_release(
        engine, env="dev", code_version="c1", image_version="img-1",
        model_versions={MODEL: "2"}, artifact_digests={MODEL: "sha"}, reason="first", actor="t",
    )  # fmt: skip
    registry = FakeRegistry({MODEL: {"dev-champion": "1"}, "other": {"dev-champion": "5"}})

    planned = repair_env(engine, registry, "dev", dry_run=True)  # type: ignore[arg-type]
    assert [(f.model, f.alias, f.version) for f in planned] == [
        (MODEL, "dev-champion", "2"),
        ("other", "dev-champion", None),
    ]
    assert registry.held == {MODEL: {"dev-champion": "1"}, "other": {"dev-champion": "5"}}

    done = repair_env(engine, registry, "dev", models=[MODEL])  # type: ignore[arg-type]
    assert [f.model for f in done] == [MODEL]
    assert registry.held == {MODEL: {"dev-champion": "2"}, "other": {"dev-champion": "5"}}
    assert repair_env(engine, registry, "dev", models=[MODEL]) == []  # type: ignore[arg-type]
