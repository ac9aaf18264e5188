"""Real second Python environments for compat tests, built once by uv and kept warm.

Each environment differs from the running one in a way that matters to a pickle of the
project's models (measured here with uv on Python 3.11; the project pins scikit-learn
1.9.1, numpy 2.4):

- `compatible`: scikit-learn 1.8.0: the pickles load (InconsistentVersionWarning) and
  reproduce every golden prediction;
- `drifted`: scikit-learn 1.4.2: the pickles load, but the fitted estimators do not
  count as fitted there: every golden prediction raises NotFittedError;
- `broken`: numpy 1.25 (with scikit-learn 1.5.2, pandas 2.2): the pickles reference
  `numpy._core`, which numpy before 1.26 does not have: unpickling fails (numpy 1.26
  ships a `numpy._core` shim and loads the registry's protocol-4 pickles: compatible);
- the running lock (`uv.lock` of this checkout): the same pins, so `identical`;
- a lock of this project with scikit-learn 1.8.0 (`uv lock` of a copy of pyproject.toml).

They are built under a stable folder (SML_TEST_ENV_CACHE, default
~/.cache/stateful-ml/compat-envs), keyed by the hash of their pins, so a rerun is warm.
When uv cannot build one (no registry), the test skips with the reason, except in CI
(SML_REQUIRE_POSTGRES=1, set by .ci/run, or CI set), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import pytest

from core.compat_envs import (
    PROJECT_ROOT,
    EnvironmentBuildError,
    EnvironmentSpec,
    PythonEnvironment,
    pinned_requirements,
    prepare_environment,
    spec_from_file,
    uv_command,
)

ENV_CACHE = Path(
    os.environ.get("SML_TEST_ENV_CACHE", Path.home() / ".cache" / "stateful-ml" / "compat-envs")
)
IN_CI = os.environ.get("SML_REQUIRE_POSTGRES") == "1" or bool(os.environ.get("CI"))
#: What each test environment changes from the running pins.
DIFFERENCES: dict[str, dict[str, str]] = {
    "compatible": {"scikit-learn": "1.8.0"},
    "drifted": {"scikit-learn": "1.4.2"},
    "broken": {"scikit-learn": "1.5.2", "numpy": "1.25.2", "pandas": "2.2.3", "scipy": "1.13.1"},
}


def build_or_skip(make: Callable[[], EnvironmentSpec]) -> PythonEnvironment:
    """prepare_environment, or skip (fail in CI) with uv's reason."""
    try:
        return prepare_environment(make(), ENV_CACHE)
    except EnvironmentBuildError as exc:
        reason = f"cannot build a second Python environment with uv: {exc}"
        if IN_CI:
            pytest.fail(reason + " (required in CI)")
        pytest.skip(reason)


def requirements_environment(name: str) -> PythonEnvironment:
    """The test environment `name` of DIFFERENCES, built once and reused."""

    def make() -> EnvironmentSpec:
        ENV_CACHE.mkdir(parents=True, exist_ok=True)
        path = ENV_CACHE / f"requirements-{name}.txt"
        text = pinned_requirements(DIFFERENCES[name])
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        return spec_from_file("requirements", path)

    return build_or_skip(make)


def running_lock_environment() -> PythonEnvironment:
    """An environment built from this checkout's uv.lock: the running pins."""
    return build_or_skip(lambda: spec_from_file("lock", PROJECT_ROOT / "uv.lock"))


def lock_environment(package: str, version: str) -> PythonEnvironment:
    """An environment built from a uv.lock of this project with `package` pinned to
    `version` (`uv lock` of a copy of pyproject.toml, kept under ENV_CACHE: relocked only
    when that copy changes)."""

    def make() -> EnvironmentSpec:
        folder = ENV_CACHE / f"lock-{package}-{version}"
        folder.mkdir(parents=True, exist_ok=True)
        source = (PROJECT_ROOT / "pyproject.toml").read_text()
        pinned = f'"{package}=={metadata.version(package)}"'
        assert pinned in source, f"pyproject.toml no longer pins {pinned}"
        project = source.replace(pinned, f'"{package}=={version}"')
        lock = folder / "uv.lock"
        if not lock.is_file() or (folder / "pyproject.toml").read_text() != project:
            shutil.copyfile(PROJECT_ROOT / "uv.lock", lock)  # the running pins, preferred
            (folder / "pyproject.toml").write_text(project)
            done = subprocess.run(
                [*uv_command(), "lock", "--quiet", "--project", str(folder)],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                lock.unlink()
                raise EnvironmentBuildError(f"uv lock failed: {done.stderr.strip()[-400:]}")
        return spec_from_file("lock", lock)

    return build_or_skip(make)


def changed_code_root(folder: Path, old: str, new: str) -> Path:
    """A copy of the project's `core` and `models` in which models/text.py has `old`
    replaced by `new`: the code of an image whose model family source changed."""
    for package in ("core", "models"):
        shutil.copytree(
            PROJECT_ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    text = folder / "models" / "text.py"
    source = text.read_text()
    assert old in source, f"models/text.py no longer holds {old!r}"
    text.write_text(source.replace(old, new))
    return folder


LOAD_SCRIPT = """
import json, pickle, sys
from core.lineage import predict_each
request = json.loads(sys.stdin.read())
try:
    model = pickle.loads(open(request["path"], "rb").read())
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)}))
else:
    print(json.dumps({"predictions": predict_each(model, request["inputs"])}))
"""


def real_load(environment: PythonEnvironment, pickle_path: Path, inputs: Sequence[str]) -> dict:
    """Load and predict in `environment` by a plain script (not the probe): what
    `pickle.load` really does there, to compare with the verdict."""
    done = subprocess.run(
        [str(environment.python), "-c", LOAD_SCRIPT],
        input=json.dumps({"path": str(pickle_path), "inputs": list(inputs)}),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(environment.spec.code_root)},
        cwd=str(environment.spec.code_root),
        check=True,
    )
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result
