"""`promote-release` flow under the session's Prefect harness: typed parameters, stg's
release opened as a prd rollout (same version and digest), a refusal as a failed run,
`force` recorded. A real MLflow store and the test's state database."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from config import get_settings
from core import ledger
from flows.promote_release import promote_release

MODEL = "intent-classifier"


def test_promote_release_parameters_are_typed() -> None:
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(promote_release).model_dump()
    props = schema["properties"]
    assert props["from_env"]["enum"] == ["dev", "stg", "prd"]
    assert props["to_env"]["enum"] == ["dev", "stg", "prd"]
    assert props["force"]["default"] is False
    assert set(schema["required"]) == {"from_env", "to_env", "actor", "reason"}


@pytest.mark.slow
def test_promote_release_opens_prd_rollout_of_stgs_version(state_db: Engine) -> None:
    from core.registry import ModelRegistry
    from tests.factories import train_and_register

    registry = ModelRegistry.from_settings(get_settings())
    v1 = train_and_register(registry)
    v2 = train_and_register(registry)
    v3 = train_and_register(registry)
    for env in ("stg", "prd"):
        ledger.record_release(
            state_db, env=env, code_version="1.0", image_version="local",
            model_versions={MODEL: v1.version}, artifact_digests={MODEL: v1.artifact_sha256},
            reason="first release", actor="test",
        )  # fmt: skip
    canary = ledger.start_rollout(
        state_db, env="stg", model_name=MODEL, candidate_version=v2.version,
        stages=[1.0, 100.0], actor="test", reason="canary",
    )  # fmt: skip
    ledger.promote(
        state_db, canary.id, actor="c", reason="ok", registry=registry,
        code_version="1.0", image_version="local",
    )  # fmt: skip

    (opened,) = promote_release(from_env="stg", to_env="prd", actor="ana", reason="rc ok")

    assert (opened.env, opened.candidate_version, opened.champion_version) == (
        "prd", v2.version, v1.version,
    )  # fmt: skip
    assert opened.forced is False
    assert registry.aliases(MODEL) == {"stg-champion": v2.version, "stg-previous": v1.version}

    # stg moves on to v3 by hand (no rollout): prd refuses it, then takes it forced
    ledger.abort(state_db, opened.id, actor="ana", reason="wait for v3")
    ledger.record_release(
        state_db, env="stg", code_version="1.0", image_version="local",
        model_versions={MODEL: v3.version}, artifact_digests={MODEL: v3.artifact_sha256},
        reason="hotfix", actor="test",
    )  # fmt: skip
    refused = promote_release(
        from_env="stg", to_env="prd", actor="ana", reason="hotfix", return_state=True
    )
    assert refused.is_failed()
    with pytest.raises(Exception, match=f"v{v3.version} never completed a rollout in stg"):
        refused.result()
    (forced,) = promote_release(
        from_env="stg", to_env="prd", actor="ana", reason="hotfix", force=True
    )
    assert (forced.candidate_version, forced.forced) == (v3.version, True)
    assert ledger.get_rollout(state_db, forced.id).forced is True
