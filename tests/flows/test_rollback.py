"""`rollback` flow: typed request, one state change, refusal of a broken target with its
reason, `force` recorded. Real Prefect harness, real MLflow store, real core.compat."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from config import get_settings, load_settings
from core.ledger import current_release, record_release, releases_history
from core.registry import ModelRegistry
from flows.rollback import RollbackRequest, rollback
from tests.core.test_alerts import Receiver
from tests.custom_class_models import (
    CUSTOM_MODEL,
    image_code_fixture,  # noqa: F401 (the image_code fixture)
    register_with_custom_class,
    remove_class,
)
from tests.factories import train_and_register


def test_rollback_request_is_typed() -> None:
    from prefect.utilities.callables import parameter_schema

    with pytest.raises(ValidationError, match="env"):
        RollbackRequest.model_validate({"env": "qa", "actor": "a", "reason": "r"})
    with pytest.raises(ValidationError, match="reason"):
        RollbackRequest.model_validate({"env": "prd", "actor": "a", "reason": ""})
    schema = parameter_schema(rollback).model_dump()["definitions"]["RollbackRequest"]
    assert schema["properties"]["env"]["enum"] == ["dev", "stg", "prd"]
    assert schema["properties"]["force"]["default"] is False
    assert set(schema["required"]) == {"env", "actor", "reason"}


@pytest.mark.slow
@pytest.mark.integration
def test_rollback_flow_refuses_unloadable_target_then_forced(
    state_db: Engine, image_code: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, module = image_code
    registry = ModelRegistry.from_settings(load_settings(IMAGE_VERSION="img-1"))
    v1 = register_with_custom_class(registry, folder, module)
    v2 = train_and_register(registry, name=CUSTOM_MODEL, image_version="img-1")
    for info in (v1, v2):
        record_release(
            state_db,
            env="dev",
            code_version="1.0",
            image_version="img-1",
            model_versions={CUSTOM_MODEL: info.version},
            artifact_digests={CUSTOM_MODEL: info.artifact_sha256},
            reason=f"v{info.version}",
            actor="ci",
        )
    # MLflow's fluent API unsets MLFLOW_TRACKING_URI on exit; restore the test's store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("IMAGE_VERSION", "img-2")
    hook = Receiver()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", hook.url)
    get_settings.cache_clear()
    remove_class(folder, module)

    request = RollbackRequest(env="dev", actor="ana", reason="v2 misroutes refunds")
    state = rollback(request, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"rollback refused: custom-intent v1 is broken") as info:
        state.result()
    assert "QueryCleaner" in str(info.value)
    assert len(releases_history(state_db, "dev")) == 2

    release = rollback(request.model_copy(update={"force": True}))
    assert release.model_versions == {CUSTOM_MODEL: v1.version}
    assert release.forced is True
    assert "(forced past:" in (release.reason or "")
    assert current_release(state_db, "dev") == release
    assert registry.aliases(CUSTOM_MODEL)["dev-champion"] == v1.version
    assert (
        "v2 misroutes refunds"
        in registry.get_version(CUSTOM_MODEL, v2.version).tags["rolled_back_reason"]
    )
    # the refused rollback paged nobody; the forced one pages exactly once
    assert hook.arrived.wait(10)
    time.sleep(0.5)
    hook.close()
    [body] = hook.bodies
    assert body["event"] == "stateful-ml.release.rollback"
    assert body["resource"]["stateful-ml.env"] == "dev"
    assert body["payload"]["model_versions"] == {CUSTOM_MODEL: v1.version}
    assert body["payload"]["forced"] is True
