"""The Python environment a compat verdict is judged under, and its fingerprint.

A verdict (core.compat) is judged by a probe subprocess (core.compat_probe). By default
that is this interpreter; it can also be another environment, described by an
`EnvironmentSpec`:

- `lock`: a `uv.lock` (with the `pyproject.toml` next to it): `uv export` gives its pinned
  requirements (without the project itself, without dev groups), installed into a venv;
- `requirements`: a requirements file (pins, one a line), installed the same way;
- `python`: an existing interpreter, used as it is.

A built environment is cached under `<cache root>/<key>` (key: the kind, the sha256 of the
file and the Python version), so a second build of the same lock is a lookup: the
`READY` marker is written last, under a file lock, so a crashed or concurrent build is
never used half made. The project's own code is not installed: the probe runs with the
code root (default: this checkout) first on PYTHONPATH, as an image puts its code there.

`probe_fingerprint` measures an `EnvironmentFingerprint` (core.compat_fingerprint)
*inside* the environment, so a verdict records which environment judged it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.compat_fingerprint import EnvironmentFingerprint
from core.compat_probe import RESULT_PREFIX
from core.errors import SmlError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EnvironmentKind = Literal["lock", "requirements", "python"]
BUILD_TIMEOUT_S = 900.0
READY_MARKER = "READY"
COMPILED_MARKER = "COMPILED"
"""Written once the venv's packages are compiled to bytecode: where PYTHONDONTWRITEBYTECODE
is set, no probe ever writes a .pyc, and each one compiled scikit-learn, numpy and pandas
from source again (4-8 s a probe)."""
#: The packages a model pickle depends on: what a requirements file of "the running pins
#: with a change" lists (`pinned_requirements`).
PICKLE_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle", "pydantic",
                   "joblib", "threadpoolctl")  # fmt: skip


class EnvironmentBuildError(SmlError):
    """An environment could not be built or used (uv missing, registry unreachable, bad
    pins, no such interpreter); the message carries the tool's last lines."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (a lock's hash).

    Raises:
        EnvironmentBuildError: the file cannot be read.
    """
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise EnvironmentBuildError(f"cannot read {path}: {exc.strerror or exc}") from None


def pinned_requirements(changes: Mapping[str, str]) -> str:
    """A requirements file's text: the running versions of PICKLE_PACKAGES, with `changes`
    (package -> version) applied."""
    from importlib import metadata

    versions = {name: metadata.version(name) for name in PICKLE_PACKAGES}
    versions.update(changes)
    return "".join(f"{name}=={version}\n" for name, version in sorted(versions.items()))


def running_lock_hash(root: Path = PROJECT_ROOT) -> str | None:
    """The hash of the lock this checkout (an image's code) was installed from, if any."""
    lock = root / "uv.lock"
    return file_sha256(lock) if lock.is_file() else None


@dataclass(frozen=True)
class EnvironmentSpec:
    """Which environment to judge under; `content_hash` is the lock hash for a lock."""

    kind: EnvironmentKind
    source: Path
    content_hash: str
    python: str = ""
    code_root: Path = PROJECT_ROOT

    @property
    def key(self) -> str:
        """The cache key: kind, file hash and Python version."""
        text = f"{self.kind}\0{self.content_hash}\0{self.python}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """How a report names this environment."""
        if self.kind == "python":
            return f"python {self.source}"
        return f"{self.kind} {self.source.name} ({self.content_hash[:12]})"


def _running_python() -> str:
    """The running interpreter's full version: a build asks uv for the same one, so the
    python of a fingerprint differs only when asked to."""
    return ".".join(str(part) for part in sys.version_info[:3])


def spec_from_file(
    kind: EnvironmentKind, path: Path, *, python: str | None = None, code_root: Path | None = None
) -> EnvironmentSpec:
    """The spec of a lock, a requirements file or an interpreter at `path`.

    Raises:
        EnvironmentBuildError: the file is missing; a lock without its pyproject.toml;
            an interpreter that is not an executable file.
    """
    # absolute, not resolved: a venv's bin/python is a symlink to the base interpreter,
    # and only the venv's path finds the venv's packages
    path = path.expanduser().absolute()
    root = (code_root or PROJECT_ROOT).resolve()
    if not path.is_file():
        raise EnvironmentBuildError(f"{kind} file {path} does not exist")
    if kind == "python":
        if not os.access(path, os.X_OK):
            raise EnvironmentBuildError(f"interpreter {path} is not executable")
        digest = hashlib.sha256(str(path).encode()).hexdigest()
        return EnvironmentSpec("python", path, digest, "", root)
    lock_alone = path.name != "uv.lock" or not (path.parent / "pyproject.toml").is_file()
    if kind == "lock" and lock_alone:
        raise EnvironmentBuildError(
            f"{path} is not a uv.lock next to its pyproject.toml (`uv export` needs both); "
            "for a plain list of pins use --requirements"
        )
    return EnvironmentSpec(kind, path, file_sha256(path), python or _running_python(), root)


def spec_from_choice(
    *,
    lock: Path | None = None,
    requirements: Path | None = None,
    python: Path | None = None,
    code_root: Path | None = None,
    python_version: str | None = None,
) -> EnvironmentSpec:
    """The spec of the one of `lock`, `requirements`, `python` that is given.

    Raises:
        EnvironmentBuildError: none or several given, or see `spec_from_file`.
    """
    choices: tuple[tuple[EnvironmentKind, Path | None], ...] = (
        ("lock", lock),
        ("requirements", requirements),
        ("python", python),
    )
    given = [(kind, path) for kind, path in choices if path is not None]
    if len(given) != 1:
        raise EnvironmentBuildError("give exactly one of a lock, a requirements file or a python")
    kind, path = given[0]
    return spec_from_file(kind, path, python=python_version, code_root=code_root)


@dataclass(frozen=True)
class PythonEnvironment:
    """A ready environment: its interpreter, and what getting it cost."""

    spec: EnvironmentSpec
    python: Path
    seconds: float = 0.0
    reused: bool = True

    @property
    def label(self) -> str:
        """How a report names this environment."""
        return self.spec.label


def running_environment() -> PythonEnvironment:
    """This interpreter, as an environment (the default judge)."""
    path = Path(sys.executable)
    return PythonEnvironment(
        EnvironmentSpec("python", path, hashlib.sha256(str(path).encode()).hexdigest()), path
    )


def uv_command() -> list[str]:
    """How to run uv here: the `uv` on PATH, else this interpreter's `-m uv`.

    Raises:
        EnvironmentBuildError: neither exists.
    """
    found = shutil.which("uv")
    if found:
        return [found]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [sys.executable, "-m", "uv", "--version"], check=True, capture_output=True, timeout=30
        )
        return [sys.executable, "-m", "uv"]
    raise EnvironmentBuildError("uv is not installed: it builds the environment to judge under")


def _run_uv(args: Sequence[str], what: str) -> None:
    try:
        done = subprocess.run(
            [*uv_command(), *args],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentBuildError(f"{what} timed out after {BUILD_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-4:])[:600]
        raise EnvironmentBuildError(f"{what} failed (uv exit {done.returncode}): {tail}")


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(spec: EnvironmentSpec, folder: Path) -> None:
    """uv venv + uv pip install of the spec's pins into `folder/venv`."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    requirements = folder / "requirements.txt"
    if spec.kind == "lock":
        _run_uv(
            [
                "export", "--frozen", "--no-emit-project", "--no-dev", "--no-hashes",
                "--format", "requirements-txt", "--quiet",
                "--project", str(spec.source.parent), "--output-file", str(requirements),
            ],
            f"exporting {spec.source}",
        )  # fmt: skip
    else:
        shutil.copyfile(spec.source, requirements)
    _run_uv(["venv", "--quiet", "--python", spec.python, str(folder / "venv")], "uv venv")
    _run_uv(
        [
            "pip", "install", "--quiet", "--compile-bytecode",
            "--python", str(folder / "venv" / "bin" / "python"), "-r", str(requirements),
        ],
        f"installing {spec.label}",
    )  # fmt: skip


def prepare_environment(spec: EnvironmentSpec, cache_root: Path) -> PythonEnvironment:
    """The environment `spec` describes: an interpreter as it is, or a venv built by uv
    once and reused from `cache_root/<key>` after that.

    Raises:
        EnvironmentBuildError: uv is missing or failed (for example the package registry
            is unreachable, or a pin does not exist for this Python).
    """
    if spec.kind == "python":
        return PythonEnvironment(spec, spec.source)
    folder = cache_root / spec.key
    python = folder / "venv" / "bin" / "python"
    started = time.perf_counter()
    with _build_lock(cache_root / f"{spec.key}.lock"):
        if (folder / READY_MARKER).is_file() and python.exists():
            _compile(folder)  # a venv built before its packages were compiled at build
            return PythonEnvironment(spec, python, time.perf_counter() - started, reused=True)
        _build(spec, folder)
        (folder / READY_MARKER).write_text(spec.label + "\n")
        (folder / COMPILED_MARKER).touch()
    return PythonEnvironment(spec, python, time.perf_counter() - started, reused=False)


def _compile(folder: Path) -> None:
    """Compile the venv's packages to bytecode once, with its own interpreter (the .pyc
    carry its version's tag). Best effort: a file that does not compile stays source."""
    if (folder / COMPILED_MARKER).is_file():
        return
    venv = folder / "venv"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")],
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    (folder / COMPILED_MARKER).touch()


@dataclass(frozen=True)
class ProbeRun:
    """The result object a probe printed, or why there is none."""

    result: dict[str, Any] | None = None
    error: str | None = None


def run_probe(
    environment: PythonEnvironment | None, request: Mapping[str, Any], timeout_s: float
) -> ProbeRun:
    """Run `python -m core.compat_probe` under `environment` (None: this interpreter).

    The child gets this process's environment with the code root prepended to PYTHONPATH;
    anything else on PYTHONPATH stays (that is where an image's code lives). Never raises
    for what happens in the child: a crash or a timeout is the `error`.
    """
    env = environment or running_environment()
    child_env = dict(os.environ)
    root = str(env.spec.code_root)
    child_env["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, child_env.get("PYTHONPATH", "")) if part
    )
    try:
        completed = subprocess.run(
            [str(env.python), "-m", "core.compat_probe"],
            input=json.dumps(dict(request)),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_env,
            cwd=root,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeRun(error=f"loading timed out after {timeout_s:g} s (process killed)")
    except OSError as exc:
        return ProbeRun(error=f"cannot start {env.python}: {exc.strerror or exc}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return ProbeRun(error=f"loader process exited with code {completed.returncode}: {tail}")
    return ProbeRun(result=json.loads(lines[-1].removeprefix(RESULT_PREFIX)))


def probe_fingerprint(
    environment: PythonEnvironment,
    packages: Sequence[str],
    source_modules: Sequence[str],
    timeout_s: float = 60.0,
) -> EnvironmentFingerprint:
    """The fingerprint measured inside `environment` (no image: none was built from it).

    Raises:
        EnvironmentBuildError: the interpreter does not start or the probe fails there.
    """
    request = {"fingerprint": {"packages": list(packages), "source_modules": list(source_modules)}}
    run = run_probe(environment, request, timeout_s)
    if run.result is None or not run.result.get("ok"):
        why = run.error or f"{run.result and run.result.get('error')}"
        raise EnvironmentBuildError(f"cannot fingerprint {environment.label}: {why}")
    found = run.result["fingerprint"]
    return EnvironmentFingerprint(
        image_version="",
        python_version=str(found["python_version"]),
        packages={str(k): str(v) for k, v in found["packages"].items()},
        family_source_hash=str(found["family_source_hash"]),
    )
