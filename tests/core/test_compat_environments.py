"""Verdicts under a real second environment (core.compat_envs, core.compat_preflight).

Every verdict here comes from a real environment difference: another scikit-learn or
numpy release installed by uv (tests/core/compat_environments.py), this checkout's own
uv.lock, or a changed model-family source; and each is checked against what a plain
`pickle.load` in that environment really does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.aliases import env_alias
from core.compat import check_version
from core.compat_envs import (
    COMPILED_MARKER,
    EnvironmentBuildError,
    prepare_environment,
    running_lock_hash,
    spec_from_file,
)
from core.compat_fingerprint import EnvironmentFingerprint
from core.compat_preflight import (
    PreflightSubject,
    preflight_subjects,
    preflight_tag,
    reuse_preflight,
    run_preflight,
)
from core.registry import ModelRegistry, ModelVersionInfo
from core.retrain import judge_champion, plan_model
from tests.core.compat_environments import (
    DIFFERENCES,
    changed_code_root,
    lock_environment,
    real_load,
    requirements_environment,
    running_lock_environment,
)
from tests.factories import make_registry, make_release, train_and_register

pytestmark = pytest.mark.slow

# models/text.py in the next image: words of four letters or fewer are dropped.
SHORT_WORDS_DROPPED = (
    'return _WHITESPACE.sub(" ", out).strip()',
    'return " ".join(w for w in _WHITESPACE.sub(" ", out).strip().split() if len(w) > 4)',
)
# models/text.py in the next image: the class every pickle references is renamed.
NORMALIZER_RENAMED = ("class TextNormalizer(", "class QueryNormalizer(")


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRegistry, ModelVersionInfo]:
    """One real intent-classifier version, registered under the running environment."""
    registry = make_registry(tmp_path_factory.mktemp("compat-envs"), image_version="img-1")
    return registry, train_and_register(registry)


def _agrees_with_real_load(verdict: str, loaded: dict, expected: list[str]) -> bool:
    if "error" in loaded:
        return verdict == "broken"
    same = loaded["predictions"] == expected
    return verdict == ("compatible" if same else "drifted")


@pytest.mark.parametrize("name", sorted(DIFFERENCES))
def test_check_version_under_another_scikit_learn_or_numpy_agrees_with_the_real_load(
    registered: tuple[ModelRegistry, ModelVersionInfo], name: str
) -> None:
    registry, info = registered
    environment = requirements_environment(name)
    report = check_version(registry, info.name, info.version, environment=environment)
    assert report.verdict == name
    assert report.environment == environment.label
    assert report.judged_by is not None
    for package, version in DIFFERENCES[name].items():
        assert report.judged_by.packages[package] == version
        assert f"{package} {info.tags['pkg.' + package]} -> {version}" in report.differences
    inputs, expected = registry.golden_predictions(info.name, info.version)
    loaded = real_load(environment, registry.artifact_path(info.name, info.version), inputs)
    assert _agrees_with_real_load(report.verdict, loaded, expected), loaded


def test_check_version_broken_under_numpy_1_25_names_the_missing_module(
    registered: tuple[ModelRegistry, ModelVersionInfo],
) -> None:
    registry, info = registered
    report = check_version(
        registry, info.name, info.version, environment=requirements_environment("broken")
    )
    assert report.reason.startswith("unpickle failed: ModuleNotFoundError")
    assert "numpy._core" in report.reason
    assert not report.safe_to_serve


def test_check_version_under_the_running_lock_is_identical(
    registered: tuple[ModelRegistry, ModelVersionInfo],
) -> None:
    registry, info = registered
    environment = running_lock_environment()
    report = check_version(registry, info.name, info.version, environment=environment)
    assert report.verdict == "identical", report.reason
    assert report.judged_by == EnvironmentFingerprint(
        "",
        info.tags["python_version"],
        {k.removeprefix("pkg."): v for k, v in info.tags.items() if k.startswith("pkg.")},
        info.tags["family_source_hash"],
    )


def test_check_version_under_a_lock_with_another_scikit_learn_agrees_with_the_real_load(
    registered: tuple[ModelRegistry, ModelVersionInfo],
) -> None:
    registry, info = registered
    environment = lock_environment("scikit-learn", "1.8.0")
    assert environment.spec.kind == "lock"
    report = check_version(registry, info.name, info.version, environment=environment)
    assert report.verdict == "compatible", report.reason
    assert report.differences == (f"scikit-learn {info.tags['pkg.scikit-learn']} -> 1.8.0",)
    inputs, expected = registry.golden_predictions(info.name, info.version)
    loaded = real_load(environment, registry.artifact_path(info.name, info.version), inputs)
    assert _agrees_with_real_load(report.verdict, loaded, expected), loaded


@pytest.mark.parametrize(
    ("change", "verdict", "reason"),
    [
        (SHORT_WORDS_DROPPED, "drifted", "golden predictions differ"),
        # the pickle names models.text.TextNormalizer, which the next image's code lacks
        (NORMALIZER_RENAMED, "broken", "Can't get attribute 'TextNormalizer'"),
    ],
    ids=["source-changed", "class-renamed"],
)
def test_check_version_under_changed_family_source(
    registered: tuple[ModelRegistry, ModelVersionInfo],
    tmp_path: Path,
    change: tuple[str, str],
    verdict: str,
    reason: str,
) -> None:
    registry, info = registered
    code = changed_code_root(tmp_path / "next-image", *change)
    spec = spec_from_file("python", Path(sys.executable), code_root=code)
    environment = prepare_environment(spec, tmp_path / "envs")
    report = check_version(registry, info.name, info.version, environment=environment)
    assert report.verdict == verdict
    assert reason in report.reason
    assert report.judged_by is not None
    assert report.judged_by.family_source_hash != info.tags["family_source_hash"]
    assert any(d.startswith("model family source ") for d in report.differences)
    inputs, expected = registry.golden_predictions(info.name, info.version)
    loaded = real_load(environment, registry.artifact_path(info.name, info.version), inputs)
    assert _agrees_with_real_load(report.verdict, loaded, expected), loaded


def test_spec_from_file_refuses_a_lock_without_its_project(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    with pytest.raises(EnvironmentBuildError, match=r"not a uv\.lock next to its pyproject\.toml"):
        spec_from_file("lock", lock)
    with pytest.raises(EnvironmentBuildError, match="does not exist"):
        spec_from_file("requirements", tmp_path / "absent.txt")


def test_prepare_environment_reports_a_pin_uv_cannot_install(tmp_path: Path) -> None:
    pins = tmp_path / "pins.txt"
    pins.write_text("scikit-learn==0.0.0\n")
    with pytest.raises(EnvironmentBuildError, match=r"installing requirements pins\.txt"):
        prepare_environment(spec_from_file("requirements", pins), tmp_path / "envs")
    assert not (tmp_path / "envs" / spec_from_file("requirements", pins).key / "READY").exists()


def _two_env_ledger(engine: Engine, registry: ModelRegistry) -> tuple[str, str, str]:
    """prd serves v2 (v1 before it: a rollback target); stg's candidate is v3."""
    v1, v2, v3 = (train_and_register(registry) for _ in range(3))
    for info in (v1, v2):
        make_release(
            engine,
            models={info.name: info.version},
            digests={info.name: info.artifact_sha256},
            image_version="img-1",
        )
    registry.set_alias(v3.name, env_alias("stg", "candidate"), v3.version)
    return v1.version, v2.version, v3.version


def test_preflight_under_numpy_1_25_blocks_the_broken_champion_and_lists_every_role(
    tmp_path: Path, engine: Engine
) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    v1, v2, v3 = _two_env_ledger(engine, registry)
    subjects = preflight_subjects(
        engine, registry, envs=("dev", "stg", "prd"), models=["intent-classifier"], keep=5
    )
    assert [(s.version, s.roles) for s in subjects] == [
        (v3, ("stg candidate",)),
        (v2, ("prd champion",)),
        (v1, ("prd rollback target",)),
    ]
    environment = requirements_environment("broken")
    result = run_preflight(registry, environment, subjects=subjects, tolerance=0.0)
    assert [row.report.verdict for row in result.rows] == ["broken"] * 3
    assert not result.passed
    assert result.blocked == [f"champion intent-classifier v{v2} would be broken"]
    stored = registry.get_version("intent-classifier", v2)
    key = preflight_tag(environment.spec.content_hash)
    assert stored.tags[key] == "broken"
    assert EnvironmentFingerprint.from_json(stored.tags[f"{key}.env"]).packages["numpy"] == (
        "1.25.2"
    )


def test_retrain_reuses_the_preflight_of_its_own_lock(tmp_path: Path, engine: Engine) -> None:
    registry = make_registry(tmp_path, image_version="img-1")
    _, champion, _ = _two_env_ledger(engine, registry)
    environment = running_lock_environment()
    assert environment.spec.content_hash == running_lock_hash()
    subjects = preflight_subjects(
        engine, registry, envs=("prd",), models=["intent-classifier"], keep=1
    )
    result = run_preflight(registry, environment, subjects=subjects, tolerance=0.0)
    assert result.passed
    assert [row.report.verdict for row in result.rows] == ["identical"]

    plan = plan_model(engine, registry, "intent-classifier", "img-2", env="prd")
    report = judge_champion(registry, plan)
    assert report is not None
    assert report.version == champion
    assert report.environment.startswith("preflight ")
    assert report.reason.startswith(f"preflight under lock {environment.spec.content_hash[:12]}")
    assert registry.get_version("intent-classifier", champion).compat_verdict("img-2") == (
        "identical"
    )


def test_reuse_preflight_ignores_a_verdict_judged_by_another_environment(
    registered: tuple[ModelRegistry, ModelVersionInfo],
) -> None:
    registry, info = registered
    environment = requirements_environment("compatible")
    subjects = [PreflightSubject(info.name, info.version, ("prd champion",))]
    run_preflight(registry, environment, subjects=subjects, tolerance=0.0)
    lock_hash = environment.spec.content_hash
    assert registry.get_version(info.name, info.version).tags[preflight_tag(lock_hash)]
    # this process is not the scikit-learn 1.8 environment that judged it: recompute
    assert reuse_preflight(registry, info.name, info.version, "img-2", lock_hash) is None


def test_a_second_environment_is_compiled_to_bytecode_once(tmp_path: Path) -> None:
    """Where PYTHONDONTWRITEBYTECODE is set no probe writes a .pyc: a built environment is
    compiled at install, one reused from a cache built before that on its first use, each
    with its own interpreter's tag; a compiled one is not compiled again."""
    pins = tmp_path / "pins.txt"
    pins.write_text("six==1.17.0\n")
    spec = spec_from_file("requirements", pins)
    built = prepare_environment(spec, tmp_path / "envs")
    folder = tmp_path / "envs" / spec.key
    assert (folder / COMPILED_MARKER).is_file()
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    assert list((folder / "venv").rglob(f"__pycache__/six.{tag}.pyc"))
    # a cache from before: no marker, no bytecode, and a module of its own
    (folder / COMPILED_MARKER).unlink()
    for cached in (folder / "venv").rglob("__pycache__"):
        shutil.rmtree(cached)
    site = next((folder / "venv").rglob("site-packages"))
    (site / "extra_module.py").write_text("VALUE = 1\n")
    reused = prepare_environment(spec, tmp_path / "envs")
    assert reused.reused
    assert reused.python == built.python
    assert (folder / COMPILED_MARKER).is_file()
    assert (site / "__pycache__" / f"extra_module.{tag}.pyc").is_file()
    assert (site / "__pycache__" / f"six.{tag}.pyc").is_file()
    # compiled once: a module added later is left alone (nothing walks the venv per use)
    (site / "later_module.py").write_text("VALUE = 2\n")
    prepare_environment(spec, tmp_path / "envs")
    assert not (site / "__pycache__" / f"later_module.{tag}.pyc").exists()
