"""Subprocess entry for isolated loading: `python -m core.compat_probe` (used by core.compat).

Reads one JSON request on stdin: `{"pickle_path": str, "sha256": str, "inputs": [str]}`.
Verifies the file's sha256, unpickles it in THIS fresh interpreter (so classes resolve
against the code installed now, not the code the parent process already imported),
predicts every input one by one, and prints one result line on stdout:

    SML-PROBE-RESULT {"ok": true, "predictions": [...]}
    SML-PROBE-RESULT {"ok": false, "stage": "digest|read|unpickle|predict", "error": "..."}

A fingerprint request, `{"fingerprint": {"packages": [str], "source_modules": [str]}}`,
asks what this interpreter would judge with instead (nothing is unpickled):

    SML-PROBE-RESULT {"ok": true, "fingerprint": {"python_version": ..., "packages": {...},
                      "family_source_hash": ...}}

The child imports only the standard library and `core.lineage` before unpickling, so it
runs under any Python environment (`core.compat_envs`) with the project on PYTHONPATH.

A crash (segfault, os._exit in a malicious pickle) or a hang is handled by the parent:
that is the point of running here.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

RESULT_PREFIX = "SML-PROBE-RESULT "


def sha256_mismatch(expected: str, found: str) -> str:
    """The one short wording of an artifact digest mismatch: expected vs found."""
    return f"artifact sha256 mismatch: expected {expected[:12]}..., found {found[:12]}..."


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def fingerprint(request: dict[str, Any]) -> dict[str, Any]:
    """This interpreter's python, package versions and family source hash (docstring)."""
    from core.lineage import module_source_hash, package_versions, python_version

    modules = list(request.get("source_modules") or [])
    try:
        source = module_source_hash(modules, sys.path) if modules else ""
    except Exception as exc:  # reported, not raised: the parent names the environment
        return {"ok": False, "stage": "fingerprint", "error": _describe(exc)}
    return {
        "ok": True,
        "fingerprint": {
            "python_version": python_version(),
            "packages": package_versions(list(request.get("packages") or [])),
            "family_source_hash": source,
        },
    }


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Verify, unpickle and predict as described in the module docstring."""
    from core.lineage import predict_each

    if "fingerprint" in request:
        return fingerprint(request["fingerprint"])
    path = Path(request["pickle_path"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"ok": False, "stage": "read", "error": _describe(exc)}
    actual = hashlib.sha256(data).hexdigest()
    if actual != request["sha256"]:
        return {
            "ok": False,
            "stage": "digest",
            "error": sha256_mismatch(str(request["sha256"]), actual),
        }
    try:
        model = pickle.loads(data)  # noqa: S301 - digest verified just above
    except BaseException as exc:  # anything raised while unpickling means: does not load
        return {"ok": False, "stage": "unpickle", "error": _describe(exc)}
    if not hasattr(model, "predict"):
        return {"ok": False, "stage": "predict", "error": f"{type(model).__name__} has no predict"}
    return {"ok": True, "predictions": predict_each(model, list(request["inputs"]))}


def main() -> None:
    """Read the request from stdin, print the result line."""
    request = json.loads(sys.stdin.read())
    result = probe(request)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
