"""One release travels stg -> prd (core.promotion) on SQLite and Postgres: the same
versions and digests, refused without a completed stg rollout unless forced (a recorded
fact), refused always on a digest mismatch. An in-memory registry stands in for MLflow."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, select, text

from core import ledger
from core.db import Rollout, make_engine, session_scope, upgrade, utcnow
from core.errors import ConflictError, NotFoundError
from core.promotion import plan_promotion, promote_release, read_promotion
from tests.core.memory_registry import MemoryRegistry
from tests.factories import make_release

CLF, RANKER = "clf", "ranker"
STAGES = [1.0, 50.0, 100.0]
VERSIONS = {"code_version": "0.1.0", "image_version": "img-1"}


@pytest.fixture
def registry() -> MemoryRegistry:
    book = MemoryRegistry.of(CLF, "1", "2", "3")
    book.digests |= MemoryRegistry.of(RANKER, "5", "6").digests
    return book


def _first_releases(engine: Engine, registry: MemoryRegistry) -> None:
    """stg and prd start on clf v1 + ranker v5, each with its own first release."""
    for env in ("stg", "prd"):
        make_release(
            engine, env=env, models={CLF: "1", RANKER: "5"},
            digests={CLF: "sha-clf-1", RANKER: "sha-ranker-5"}, code_version="0.1.0",
        )  # fmt: skip
        registry.set_alias(CLF, f"{env}-champion", "1")


def _canary_to_promotion(
    engine: Engine, registry: MemoryRegistry, env: str, name: str, version: str
) -> ledger.ReleaseRecord:
    rollout = ledger.start_rollout(
        engine, env=env, model_name=name, candidate_version=version, stages=STAGES,
        actor="test", reason="canary", registry=registry,
    )  # fmt: skip
    _, release = ledger.promote(
        engine, rollout.id, actor="controller", reason="passed", registry=registry, **VERSIONS
    )
    return release


def _promote(engine: Engine, registry: MemoryRegistry, **kw: object) -> list[ledger.RolloutRecord]:
    return promote_release(
        engine, registry, from_env="stg", to_env="prd", stages=STAGES, actor="ana",
        reason="rc ok", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_promotion_opens_rollouts_of_exactly_stgs_versions_and_digests(
    engine: Engine, registry: MemoryRegistry
) -> None:
    _first_releases(engine, registry)
    _canary_to_promotion(engine, registry, "stg", CLF, "2")
    stg = _canary_to_promotion(engine, registry, "stg", RANKER, "6")
    assert stg.tag == "v0.1.0-clfv2-rankerv6-rc"  # stg keeps `-rc`

    opened = _promote(engine, registry)

    assert [(r.env, r.model_name, r.champion_version, r.candidate_version) for r in opened] == [
        ("prd", CLF, "1", "2"),
        ("prd", RANKER, "5", "6"),
    ]
    assert [(r.status, r.percent, r.forced) for r in opened] == [("canary", 1.0, False)] * 2
    events = ledger.rollout_events(engine, opened[0].id)
    assert events[0].reason == f"promote {stg.tag} from stg: rc ok"
    assert "forced" not in (events[0].figures or {})
    for rollout in opened:
        ledger.promote(engine, rollout.id, actor="c", reason="ok", registry=registry, **VERSIONS)
    prd = ledger.current_release(engine, "prd")
    assert prd is not None
    assert (prd.model_versions, prd.artifact_digests) == (stg.model_versions, stg.artifact_digests)
    assert prd.tag == "v0.1.0-clfv2-rankerv6"  # no -rc in prd
    assert prd.forced is False
    assert registry.env_aliases("prd")[(CLF, "prd-champion")] == "2"
    with pytest.raises(ConflictError, match="prd already runs the versions of"):
        _promote(engine, registry)


def test_promotion_of_a_model_whose_version_is_unchanged_opens_nothing_for_it(
    engine: Engine, registry: MemoryRegistry
) -> None:
    _first_releases(engine, registry)
    _canary_to_promotion(engine, registry, "stg", CLF, "3")
    opened = _promote(engine, registry)
    assert [(r.model_name, r.candidate_version) for r in opened] == [(CLF, "3")]


def test_versions_that_never_completed_a_stg_rollout_are_refused_unless_forced(
    engine: Engine, registry: MemoryRegistry
) -> None:
    _first_releases(engine, registry)
    # stg holds v3 without a rollout: recorded by hand, never canaried there
    make_release(engine, env="stg", models={CLF: "3"}, digests={CLF: "sha-clf-3"})
    # an aborted stg rollout of v3 does not count either
    aborted = ledger.start_rollout(
        engine, env="stg", model_name=CLF, candidate_version="2", stages=STAGES,
        champion_version="3", actor="t", reason="r",
    )  # fmt: skip
    ledger.abort(engine, aborted.id, actor="t", reason="no")

    with pytest.raises(ConflictError, match="clf v3 never completed a rollout in stg"):
        _promote(engine, registry)
    assert ledger.active_rollouts(engine, "prd") == []

    (forced,) = _promote(engine, registry, force=True)
    assert forced.forced is True
    assert ledger.get_rollout(engine, forced.id).forced is True
    start = ledger.rollout_events(engine, forced.id)[0]
    assert (start.figures or {})["forced"] is True
    assert "forced past: clf v3 never completed a rollout in stg" in (start.reason or "")
    _, release = ledger.promote(
        engine, forced.id, actor="c", reason="ok", registry=registry, **VERSIONS
    )
    assert release.forced is True  # the release its promotion records carries the fact
    assert release.model_versions == {CLF: "3", RANKER: "5"}


def test_first_release_versions_count_as_completed(
    engine: Engine, registry: MemoryRegistry
) -> None:
    make_release(engine, env="stg", models={CLF: "2"}, digests={CLF: "sha-clf-2"})
    make_release(engine, env="prd", models={CLF: "1"}, digests={CLF: "sha-clf-1"})
    assert ledger.completed_versions(engine, "stg") == {CLF: frozenset({"2"})}
    (opened,) = _promote(engine, registry)
    assert (opened.candidate_version, opened.forced) == ("2", False)


def test_digest_mismatch_is_refused_even_forced(engine: Engine, registry: MemoryRegistry) -> None:
    _first_releases(engine, registry)
    _canary_to_promotion(engine, registry, "stg", CLF, "2")
    registry.digests[(CLF, "2")] = "sha-tampered"  # the registry's artifact changed since

    for force in (False, True):
        with pytest.raises(ConflictError, match="not the same artifact: clf v2: stg released"):
            _promote(engine, registry, force=force)
    assert ledger.active_rollouts(engine, "prd") == []


def test_unknown_digest_upstream_goes_only_forced(engine: Engine, registry: MemoryRegistry) -> None:
    make_release(engine, env="stg", models={CLF: "2"}, digests={CLF: None})
    make_release(engine, env="prd", models={CLF: "1"}, digests={CLF: "sha-clf-1"})
    with pytest.raises(ConflictError, match="records no artifact digest for clf v2"):
        _promote(engine, registry)
    (opened,) = _promote(engine, registry, force=True)
    assert opened.forced is True


def test_refusals_before_anything_is_written(engine: Engine, registry: MemoryRegistry) -> None:
    with pytest.raises(NotFoundError, match="nothing was ever released in stg"):
        _promote(engine, registry)
    make_release(engine, env="stg", models={CLF: "2"}, digests={CLF: "sha-clf-2"})
    with pytest.raises(NotFoundError, match="nothing was ever released in prd"):
        _promote(engine, registry)
    make_release(engine, env="prd", models={RANKER: "5"}, digests={RANKER: "sha-ranker-5"})
    with pytest.raises(NotFoundError, match="clf is in no release of prd yet"):
        _promote(engine, registry)
    with pytest.raises(ConflictError, match="name two environments"):
        promote_release(
            engine, registry, from_env="prd", to_env="prd", stages=STAGES, actor="a", reason="r"
        )
    make_release(engine, env="prd", models={CLF: "1"}, digests={CLF: "sha-clf-1"})
    busy = ledger.start_rollout(
        engine, env="prd", model_name=CLF, candidate_version="3", stages=STAGES,
        actor="t", reason="r",
    )  # fmt: skip
    with pytest.raises(ConflictError, match=f"rollouts already active in prd: #{busy.id}"):
        _promote(engine, registry)
    assert [r.id for r in ledger.active_rollouts(engine, "prd")] == [busy.id]


def test_plan_is_pure_and_says_what_it_would_open(engine: Engine, registry: MemoryRegistry) -> None:
    _first_releases(engine, registry)
    _canary_to_promotion(engine, registry, "stg", CLF, "2")
    facts = read_promotion(engine, registry, from_env="stg", to_env="prd")
    plan = plan_promotion(
        facts.source, facts.target, facts.proven, facts.registry_digests,
        force=False, actor="a", reason="r",
    )  # fmt: skip
    assert [(s.model_name, s.version, s.champion_version, s.digest) for s in plan.steps] == [
        (CLF, "2", "1", "sha-clf-2")
    ]
    assert plan.forced is False
    assert ledger.active_rollouts(engine, "prd") == []


def test_migration_0005_adds_forced_to_existing_rollouts(db_url: str) -> None:
    eng = make_engine(db_url)
    assert upgrade(eng, "0004") == "0004"
    now = utcnow().replace(tzinfo=None)
    with eng.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rollouts (env, model_name, champion_version, candidate_version, "
                "salt, stage_index, percent, status, stage_started_at, created_at, updated_at, "
                "event_seq) VALUES ('prd', 'm', '1', '2', 's', 0, 1.0, 'canary', :t, :t, :t, 0)"
            ),
            {"t": now},
        )
        conn.execute(  # a database that has served: events point at the rollout
            text(
                "INSERT INTO rollout_events (rollout_id, seq, ts, kind, actor) "
                "VALUES (1, 1, :t, 'start', 'ops')"
            ),
            {"t": now},
        )
    assert upgrade(eng, "0005") == "0005"
    columns = {c["name"]: c for c in inspect(eng).get_columns("rollouts")}
    assert columns["forced"]["nullable"] is False
    with session_scope(eng) as s:
        assert s.scalars(select(Rollout.forced)).all() == [False]
    eng.dispose()
