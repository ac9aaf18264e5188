"""core.registry against a real MLflow sqlite tracking store in a temp dir."""

from __future__ import annotations

import hashlib
import pickle
import threading
from pathlib import Path

import pytest

from core.errors import NotFoundError
from core.registry import (
    ALIASES,
    PICKLE_FILE,
    DigestMismatchError,
    ModelRegistry,
    ModelVersionInfo,
    golden_digest,
)
from models.intent_classifier import GOLDEN_INPUTS, InjectedFaultError, would_fail
from tests.factories import faulty_config, make_registry, slow_config, train_and_register

NAME = "intent-classifier"
LINEAGE_TAGS = (
    "image_version",
    "code_version",
    "python_version",
    "pkg.scikit-learn",
    "pkg.numpy",
    "pkg.pandas",
    "model_family",
    "family_source_hash",
    "data_snapshot_hash",
    "training_window",
    "artifact_sha256",
    "golden_digest",
    "golden_count",
    "serialization_format",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelRegistry, ModelVersionInfo]:
    """One tracking store with one registered version, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("registry")
    registry = make_registry(root)
    info = train_and_register(registry, alias="prd-champion")
    return root, registry, info


class _Exploit:
    """A pickle payload that writes a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "pwned"))  # type: ignore[return-value]


def _stored_pickle(registry: ModelRegistry, info: ModelVersionInfo) -> Path:
    return Path(info.source) / PICKLE_FILE


def test_register_version_records_every_lineage_tag(store) -> None:
    _, registry, info = store
    missing = [tag for tag in LINEAGE_TAGS if not info.tags.get(tag)]
    assert missing == []
    assert info.image_version == "test-image"
    assert info.aliases == ["prd-champion"]
    stored = _stored_pickle(registry, info)
    assert info.artifact_sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    run = registry.client.get_run(info.run_id)
    assert float(run.data.metrics["holdout_accuracy"]) > 0.5
    assert run.data.params["training_window_days"] == "60"
    assert run.info.status == "FINISHED"


def test_register_version_logs_signature_input_example_and_pinned_requirements(store) -> None:
    _, _registry, info = store
    folder = Path(info.source)
    mlmodel = (folder / "MLmodel").read_text()
    assert "signature:" in mlmodel
    assert "text" in mlmodel
    assert (folder / "input_example.json").exists()
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"scikit-learn=={info.tags['pkg.scikit-learn']}" in requirements
    assert all("==" in line for line in requirements if not line.startswith("mlflow"))


def test_register_version_records_golden_predictions_matching_digest(store) -> None:
    _, registry, info = store
    inputs, predictions = registry.golden_predictions(NAME, info.version)
    assert inputs == list(GOLDEN_INPUTS)
    assert golden_digest(inputs, predictions) == info.golden_digest
    loaded = registry.load(NAME, info.version)
    assert loaded.predict(inputs) == predictions


def test_get_version_unknown_raises_not_found(store) -> None:
    _, registry, _ = store
    with pytest.raises(NotFoundError, match="has no version 99"):
        registry.get_version(NAME, "99")
    with pytest.raises(NotFoundError):
        registry.get_version("no-such-model", "1")
    assert registry.version_by_alias(NAME, "prd-candidate") is None
    assert registry.version_by_alias(NAME, "stg-champion") is None  # another env's alias
    assert registry.version_by_alias("no-such-model", "prd-champion") is None


def test_load_version_predicts_and_is_cached(store) -> None:
    root, registry, info = store
    first = registry.load(NAME, info.version)
    assert first.predict_one("i lost my debit card") == "card_lost"
    assert first.predict(["zap 20 to sam", "what is my balance"]) == [
        "transfer_money",
        "check_balance",
    ]
    assert registry.load(NAME, info.version) is first
    assert (root / "model-cache" / NAME / info.version / "model" / PICKLE_FILE).exists()


def test_load_version_from_threads_unpickles_once(store) -> None:
    root, _, info = store
    registry = make_registry(root)  # same store, empty in-process cache
    results = []

    def load() -> None:
        results.append(registry.load(NAME, info.version))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len({id(model) for model in results}) == 1


def test_set_alias_moves_between_versions(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    v1 = train_and_register(registry, alias="stg-champion")
    v2 = train_and_register(registry, alias="stg-candidate")
    registry.set_alias(NAME, "prd-champion", v1.version)  # prd still runs v1
    registry.set_alias(NAME, "stg-previous", v1.version)
    registry.set_alias(NAME, "stg-champion", v2.version)
    registry.delete_alias(NAME, "stg-candidate")
    assert registry.version_by_alias(NAME, "stg-champion").version == v2.version
    assert registry.version_by_alias(NAME, "stg-previous").version == v1.version
    assert registry.version_by_alias(NAME, "stg-candidate") is None
    assert registry.version_by_alias(NAME, "prd-champion").version == v1.version
    assert registry.aliases(NAME) == {
        "stg-champion": v2.version,
        "stg-previous": v1.version,
        "prd-champion": v1.version,
    }
    listed = {v.version: sorted(v.aliases) for v in registry.list_versions(NAME)}
    assert listed == {v1.version: ["prd-champion", "stg-previous"], v2.version: ["stg-champion"]}
    assert registry.resolve(NAME, "prd-champion").version == v1.version
    assert registry.resolve(NAME, "@stg-champion").version == v2.version
    with pytest.raises(NotFoundError, match="names no environment"):
        registry.resolve(NAME, "champion")
    with pytest.raises(NotFoundError, match="no alias 'dev-champion'"):
        registry.resolve(NAME, "dev-champion")
    with pytest.raises(NotFoundError):
        registry.set_alias(NAME, "prd-champion", "42")


def test_aliases_are_per_environment() -> None:
    assert {"prd-champion", "stg-candidate", "dev-previous"} <= set(ALIASES)
    assert not {"champion", "candidate", "previous"} & set(ALIASES)


def test_list_versions_filters_by_image_version(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    train_and_register(registry, image_version="img-1")
    v2 = train_and_register(registry, image_version="img-2")
    registry.set_tag(NAME, v2.version, "compat.img-3", "compatible")
    assert [v.version for v in registry.list_versions(NAME)] == ["1", "2"]
    assert [v.version for v in registry.list_versions(NAME, image_version="img-2")] == ["2"]
    assert registry.list_versions(NAME, image_version="img-9") == []
    assert registry.get_version(NAME, v2.version).compat_verdict("img-3") == "compatible"
    assert registry.resolve(NAME, "2").version == "2"


def test_load_tampered_artifact_refused_before_unpickling(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    info = train_and_register(registry)
    marker = tmp_path / "unpickled.txt"
    _stored_pickle(registry, info).write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(DigestMismatchError, match=r"refusing to load intent-classifier v1"):
        registry.load(NAME, info.version)
    assert not marker.exists()


def test_load_tampered_cache_heals_from_store_then_refuses_tampered_store(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    info = train_and_register(registry)
    cached = registry.artifact_path(NAME, info.version)
    cached.write_bytes(cached.read_bytes() + b"\0")
    loaded = registry.load(NAME, info.version)
    assert loaded.artifact_sha256 == info.artifact_sha256
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == info.artifact_sha256

    fresh = make_registry(tmp_path)  # a new process: empty in-memory cache
    cached.write_bytes(b"corrupt")
    stored = _stored_pickle(registry, info)
    stored.write_bytes(stored.read_bytes()[:-1])
    with pytest.raises(DigestMismatchError, match="does not match the registered"):
        fresh.load(NAME, info.version)


def test_faulty_version_raises_on_selected_inputs(tmp_path: Path) -> None:
    registry = make_registry(tmp_path)
    info = train_and_register(registry, config=faulty_config(0.5), alias="dev-candidate")
    loaded = registry.load(NAME, info.version)
    texts = [f"what is my balance {i}" for i in range(40)]
    failing = [t for t in texts if would_fail(t, 0.5)]
    passing = [t for t in texts if not would_fail(t, 0.5)]
    assert failing
    assert passing
    assert len(loaded.predict(passing)) == len(passing)
    with pytest.raises(InjectedFaultError):
        loaded.predict_one(failing[0])
    _, golden = registry.golden_predictions(NAME, info.version)
    assert any(p.startswith("!error:InjectedFaultError") for p in golden)


def test_slow_version_sleeps_per_input(tmp_path: Path) -> None:
    import time

    registry = make_registry(tmp_path)
    info = train_and_register(registry, config=slow_config(20.0))
    loaded = registry.load(NAME, info.version)
    started = time.perf_counter()
    loaded.predict(["a b c"] * 5)
    assert time.perf_counter() - started >= 0.1  # 5 inputs x 20 ms, a lower bound only


def test_register_version_leaves_tracking_uri_env_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's fluent URI switch deletes MLFLOW_TRACKING_URI on restore; ours must not."""
    import os

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///somewhere-else.db")
    registry = make_registry(tmp_path)
    train_and_register(registry)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///somewhere-else.db"


def test_load_version_replaces_a_partial_cache_copy(store) -> None:
    root, _, info = store
    registry = make_registry(root)  # same store, empty in-process cache
    cached = registry.artifact_path(info.name, info.version)
    cached.unlink()  # the rest of the downloaded folder (MLmodel, ...) stays behind
    assert any(cached.parent.iterdir())

    model = registry.load(info.name, info.version)

    assert cached.exists()
    assert model.artifact_sha256 == info.artifact_sha256


def test_environment_tags_carry_family_lineage_only_for_families_the_registry_knows(
    tmp_path: Path,
) -> None:
    from models import FAMILIES, INTENT_CLASSIFIER

    with_families = make_registry(tmp_path)  # given models.FAMILIES, as the flows' registry
    without = ModelRegistry(f"sqlite:///{tmp_path}/other.db", tmp_path / "cache")

    tags = with_families.environment_tags(NAME)

    assert with_families.family_source(NAME) is FAMILIES[NAME]
    assert tags["model_family"] == NAME
    assert tags["family_source_hash"] == INTENT_CLASSIFIER.source_hash()
    assert "model_family" not in with_families.environment_tags("custom-intent")
    assert without.family_source(NAME) is None
    assert "family_source_hash" not in without.environment_tags(NAME)
