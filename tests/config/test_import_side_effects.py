"""Importing the packages has no side effect: no file or folder, no logging set-up, no
MLflow URI, no environment change (the rule every module follows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Prefect configures its own logging when imported; that is Prefect's, not ours, so the
# probe imports it first and checks that our modules change nothing after it.
PROBE = r"""
import json, logging, os, pkgutil, importlib, sys
from prefect import flow, task  # noqa: F401 (Prefect sets its logging up here)
before_env = dict(os.environ)
root = logging.getLogger()
before = (list(root.handlers), root.level)
names = []
for package in ("config", "core", "models", "serving", "tasks", "flows", "cli"):
    module = importlib.import_module(package)
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if ".migrations" in info.name:
            continue  # Alembic scripts, run only by alembic
        importlib.import_module(info.name)
        names.append(info.name)
mlflow_uri = None
if "mlflow" in sys.modules:
    from mlflow.tracking._tracking_service import utils
    mlflow_uri = utils._tracking_uri
print(json.dumps({
    "modules": names,
    "handlers_changed": list(root.handlers) != before[0] or root.level != before[1],
    "mlflow_uri": mlflow_uri,
    "env_added": sorted(set(os.environ) - set(before_env)),
}))
"""


@pytest.mark.slow
def test_importing_every_module_has_no_side_effect(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_API"))}
    env["PYTHONPATH"] = str(ROOT)

    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "config.settings" in report["modules"]
    assert "core.source" in report["modules"]
    assert list(tmp_path.iterdir()) == [], "an import created files in the working directory"
    assert report["handlers_changed"] is False, "an import configured logging"
    assert report["mlflow_uri"] is None, "an import set the MLflow tracking URI"
    # third-party libraries set their own (scikit-learn: KMP_*); ours must set nothing
    from config import Settings

    ours = [k for k in report["env_added"] if k in Settings.model_fields or k.startswith("MLFLOW_")]
    assert ours == []
