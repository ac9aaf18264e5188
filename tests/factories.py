"""Factories for tests: a real MLflow registry in a temp dir, and real registered models.

`train_and_register` trains the real `intent-classifier` pipeline on a small synthetic
snapshot (core.synthetic.generate_queries, fixed end date) and registers it, in a few
seconds, so router, ledger and canary tests can use real versions. `faulty_config` and
`slow_config` give the test/demo-only knobs of the model family:

    v_bad = train_and_register(registry, config=faulty_config(0.3), alias="candidate")
    v_slow = train_and_register(registry, config=slow_config(2.0))
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine

from core.ledger import ReleaseRecord, record_release

if TYPE_CHECKING:  # heavy (scikit-learn, MLflow): imported by the factories that need them
    from pydantic import BaseModel

    from core.registry import ModelRegistry, ModelVersionInfo
    from models.intent_classifier import IntentClassifierConfig

#: The synthetic data's end date in tests, so snapshots are identical on every day.
DATA_END = datetime(2026, 11, 1, tzinfo=UTC)
SMALL_ROWS = 1_500
SEED = 7


@lru_cache(maxsize=8)
def _frame(rows: int, seed: int) -> pd.DataFrame:
    from core.synthetic import generate_queries

    return generate_queries(rows, seed, end=DATA_END)


def training_frame(rows: int = SMALL_ROWS, seed: int = SEED) -> pd.DataFrame:
    """A synthetic source snapshot (columns query_id, text, intent, created_at), a copy."""
    return _frame(rows, seed)[["query_id", "text", "intent", "created_at"]].copy()


def make_registry(
    tmp_path: Path, *, image_version: str = "test-image", code_version: str = "0.1.0+test"
) -> ModelRegistry:
    """A registry on a fresh sqlite tracking store and artifact folder under `tmp_path`.

    It knows our model families (`models.FAMILIES`), as the flows' registry does.
    """
    from core.registry import ModelRegistry
    from models import FAMILIES

    return ModelRegistry(
        f"sqlite:///{tmp_path}/mlflow.db",
        tmp_path / "model-cache",
        str(tmp_path / "mlartifacts"),
        experiment="tests",
        image_version=image_version,
        code_version=code_version,
        families=FAMILIES,
    )


def faulty_config(fault_rate: float = 0.2, **overrides: object) -> IntentClassifierConfig:
    """TEST ONLY: a config whose model raises `InjectedFaultError` on ~fault_rate of inputs."""
    from models.intent_classifier import IntentClassifierConfig

    return IntentClassifierConfig.model_validate({"fault_rate": fault_rate, **overrides})


def slow_config(extra_latency_ms: float = 2.0, **overrides: object) -> IntentClassifierConfig:
    """TEST ONLY: a config whose model sleeps `extra_latency_ms` per input."""
    from models.intent_classifier import IntentClassifierConfig

    return IntentClassifierConfig.model_validate(
        {"extra_latency_ms": extra_latency_ms, **overrides}
    )


def train_and_register(
    registry: ModelRegistry,
    *,
    name: str = "intent-classifier",
    config: BaseModel | Mapping[str, object] | None = None,
    rows: int = SMALL_ROWS,
    seed: int = SEED,
    image_version: str | None = None,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ModelVersionInfo:
    """Train a real model family on a small snapshot and register it as `name`: the family
    registered under `name` (e.g. faq-retriever), else the intent classifier.

    `image_version` defaults to the registry's; `alias` (e.g. "champion") is set on the
    new version if given. Returns the version as registered (aliases included).
    """
    from models import FAMILIES, get_family
    from models.pipeline import train_family
    from models.registration import register_trained

    family = get_family(name if name in FAMILIES else "intent-classifier")
    cfg = family.parse_config(dict(config) if isinstance(config, Mapping) else config)
    trained = train_family(training_frame(rows, seed), family, cfg)
    info = register_trained(registry, trained, family, image_version=image_version, name=name)
    if tags:
        for key, value in tags.items():
            registry.set_tag(name, info.version, key, value)
    if alias:
        registry.set_alias(name, alias, info.version)
    return registry.get_version(name, info.version)


def make_release(
    engine: Engine,
    *,
    env: str = "prd",
    models: Mapping[str, str],
    digests: Mapping[str, str | None] | None = None,
    at: datetime | None = None,
    code_version: str = "1.0",
    image_version: str = "img-1",
    reason: str = "seed",
) -> ReleaseRecord:
    """Record a release of `models` ({name: version}) in `env`, by actor `test`.

    Digests default to `sha-<name>-<version>`, so two releases of one version match.
    """
    return record_release(
        engine,
        env=env,
        code_version=code_version,
        image_version=image_version,
        model_versions=dict(models),
        artifact_digests=dict(digests)
        if digests is not None
        else {name: f"sha-{name}-{version}" for name, version in models.items()},
        reason=reason,
        actor="test",
        at=at,
    )
