"""core.compat: fingerprints and verdicts, with loading in a real subprocess.

The broken/drifted cases are built the way they happen in production: a pipeline holds
a transformer from *our own* module (here a module in a temp dir on PYTHONPATH, standing
in for the image's code); the next "image" removes or changes that code; the old pickle
is judged there.
"""

from __future__ import annotations

import importlib
import shutil
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.compat import (
    EnvironmentFingerprint,
    check_version,
    current_fingerprint,
    digest_mismatch,
    probe_artifact,
    record_verdict,
)
from core.errors import ConflictError
from core.ledger import current_release, rollback_env
from core.ledger.verdicts import compat_verdict_fn
from core.lineage import ModelVersionInfo
from core.registration import PICKLE_FILE
from core.registry import ModelRegistry
from models import INTENT_CLASSIFIER
from models.intent_classifier import GOLDEN_INPUTS
from tests.custom_class_models import (
    CLEANER_SOURCE,
    image_code_fixture,  # noqa: F401 (the image_code fixture)
    register_with_custom_class,
)
from tests.factories import make_registry, make_release, train_and_register

NORMALIZER_V1 = CLEANER_SOURCE  # a lower-casing QueryCleaner, as image code
# The next image "improves" the cleaner: it now drops every word of 4 letters or fewer.
NORMALIZER_CHANGED = NORMALIZER_V1.replace(
    "return [str(t).lower() for t in texts]",
    "return [' '.join(w for w in str(t).lower().split() if len(w) > 4) for t in texts]",
)
# The next image renames the class: old pickles reference a class that no longer exists.
NORMALIZER_RENAMED = NORMALIZER_V1.replace("class QueryCleaner", "class QueryNormalizer")
SLOW_UNPICKLE = """
import time


class Sleepy:
    def __init__(self):
        self.loaded = False

    def __setstate__(self, state):
        time.sleep(60)

    def predict(self, texts):
        return ["x" for _ in texts]
"""


def test_check_version_same_environment_is_identical(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    report = check_version(registry, info.name, info.version)
    assert report.verdict == "identical"
    assert report.differences == ()
    assert report.safe_to_serve


def test_check_version_new_image_same_code_is_compatible(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    report = check_version(registry, info.name, info.version, image_version="img-2")
    assert report.verdict == "compatible"
    assert report.golden_checked == len(GOLDEN_INPUTS)
    assert "image img-1 -> img-2" in report.reason


def test_check_version_class_no_longer_exists_is_broken(
    tmp_path: Path, image_code: tuple[Path, str]
) -> None:
    folder, module = image_code
    registry = make_registry(tmp_path, image_version="img-1")
    info = register_with_custom_class(registry, folder, module)
    (folder / f"{module}.py").write_text(textwrap.dedent(NORMALIZER_RENAMED))
    report = check_version(registry, info.name, info.version, image_version="img-2")
    assert report.verdict == "broken"
    assert "unpickle failed" in report.reason
    assert "QueryCleaner" in report.reason
    assert not report.safe_to_serve


def test_check_version_module_removed_is_broken(
    tmp_path: Path, image_code: tuple[Path, str]
) -> None:
    folder, module = image_code
    registry = make_registry(tmp_path, image_version="img-1")
    info = register_with_custom_class(registry, folder, module)
    (folder / f"{module}.py").unlink()
    report = check_version(registry, info.name, info.version, image_version="img-2")
    assert report.verdict == "broken"
    assert f"No module named '{module}'" in report.reason


def test_check_version_changed_code_is_drifted(
    tmp_path: Path, image_code: tuple[Path, str]
) -> None:
    folder, module = image_code
    registry = make_registry(tmp_path, image_version="img-1")
    info = register_with_custom_class(registry, folder, module)
    (folder / f"{module}.py").write_text(textwrap.dedent(NORMALIZER_CHANGED))
    report = check_version(registry, info.name, info.version, image_version="img-2")
    assert report.verdict == "drifted"
    assert report.golden_mismatches > 0
    assert f"{report.golden_mismatches}/{len(GOLDEN_INPUTS)} golden predictions differ" in (
        report.reason
    )


def test_check_version_tampered_artifact_is_broken(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    pickle_path = registry.artifact_path(info.name, info.version)
    pickle_path.write_bytes(pickle_path.read_bytes()[:-10])
    report = check_version(registry, info.name, info.version, image_version="img-2")
    assert report.verdict == "broken"
    assert "digest failed" in report.reason


def _tamper_stored_artifact(registry: ModelRegistry, info: ModelVersionInfo) -> None:
    """Alter the store's copy of a version's pickle (and drop any local copy of it)."""
    stored = Path(info.source) / PICKLE_FILE
    stored.write_bytes(stored.read_bytes() + b"\0")
    shutil.rmtree(registry.artifacts.cache_dir / info.name / info.version, ignore_errors=True)


def test_check_version_tampered_artifact_of_the_running_image_is_broken(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    _tamper_stored_artifact(registry, info)
    report = check_version(registry, info.name, info.version)
    assert report.differences == ()  # the tags alone would say identical
    assert report.verdict == "broken"
    assert not report.safe_to_serve
    assert report.reason.startswith("digest failed: artifact sha256 mismatch")
    assert f"expected {info.artifact_sha256[:12]}..." in report.reason
    assert "found " in report.reason


def test_digest_mismatch_names_a_missing_or_different_digest(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    assert digest_mismatch(registry.artifact_path(info.name, info.version), "") == (
        "digest failed: no artifact sha256 was recorded at registration"
    )
    assert (
        digest_mismatch(registry.artifact_path(info.name, info.version), info.artifact_sha256)
        is None
    )


@pytest.mark.parametrize("force", [False, True])
def test_rollback_env_to_a_tampered_version_of_the_running_image(
    tmp_path: Path, engine: Engine, force: bool
) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    v1 = train_and_register(registry)
    v2 = train_and_register(registry)
    for info in (v1, v2):
        make_release(
            engine,
            models={info.name: info.version},
            digests={info.name: info.artifact_sha256},
            image_version="img-1",
        )
    _tamper_stored_artifact(registry, v1)
    verdict_fn = compat_verdict_fn(registry, "img-1", record=False)

    if not force:
        with pytest.raises(ConflictError, match="digest failed: artifact sha256 mismatch"):
            rollback_env(engine, "prd", actor="oncall", reason="v2 bad", verdict_fn=verdict_fn)
        unchanged = current_release(engine, "prd")
        assert unchanged is not None
        assert unchanged.model_versions == {v2.name: v2.version}
        return
    release = rollback_env(
        engine, "prd", actor="oncall", reason="v2 bad", force=True, verdict_fn=verdict_fn
    )
    assert release.forced is True
    assert release.model_versions == {v1.name: v1.version}
    stored = current_release(engine, "prd")
    assert stored is not None
    assert (stored.id, stored.forced) == (release.id, True)


def test_probe_artifact_hanging_unpickle_times_out(
    tmp_path: Path, image_code: tuple[Path, str]
) -> None:
    import hashlib
    import pickle

    folder, module = image_code
    (folder / f"{module}.py").write_text(textwrap.dedent(SLOW_UNPICKLE))
    importlib.invalidate_caches()
    sleepy = importlib.import_module(module).Sleepy()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(sleepy))
    outcome = probe_artifact(path, hashlib.sha256(path.read_bytes()).hexdigest(), ["a"], 3.0)
    assert outcome.error is not None
    assert "timed out after 3 s" in outcome.error


def test_probe_artifact_crashing_loader_is_reported(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "model.pkl"
    # A pickle that calls os._exit(7) while loading: the loader process dies.
    path.write_bytes(b"cos\n_exit\n(I7\ntR.")
    outcome = probe_artifact(path, hashlib.sha256(path.read_bytes()).hexdigest(), ["a"], 30.0)
    assert outcome.error is not None
    assert "exited with code 7" in outcome.error


def test_record_verdict_tags_version(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    info = train_and_register(registry)
    report = check_version(registry, info.name, info.version, image_version="img-2")
    record_verdict(registry, report)
    stored = registry.get_version(info.name, info.version)
    assert stored.compat_verdict("img-2") == "compatible"
    assert stored.tags["compat.img-2.reason"].startswith("loads and reproduces")


def test_current_fingerprint_without_a_family_has_no_family_source_hash() -> None:
    assert current_fingerprint("img-2").family_source_hash == ""
    assert current_fingerprint("img-2", INTENT_CLASSIFIER).family_source_hash == (
        INTENT_CLASSIFIER.source_hash()
    )


def test_fingerprint_differences_name_each_change() -> None:
    running = current_fingerprint("img-2", INTENT_CLASSIFIER)
    recorded = EnvironmentFingerprint(
        image_version="img-1",
        python_version="3.10.0",
        packages={**running.packages, "scikit-learn": "1.0.0"},
        family_source_hash="0" * 64,
    )
    diffs = recorded.differences(running)
    assert diffs[0] == "image img-1 -> img-2"
    assert "python 3.10.0 -> " + running.python_version in diffs
    assert f"scikit-learn 1.0.0 -> {running.packages['scikit-learn']}" in diffs
    assert any(d.startswith("model family source 00000000 -> ") for d in diffs)
    assert running.differences(running) == []
