"""Every `sml` command starts by importing the CLI: it must not pull in the heavy libraries
that only some commands use (each cost seconds: `sml serve` processes of the load test
imported ~4 s of plots, statistics and state builders they never ran)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "scipy", "matplotlib", "mlflow", "prefect", "sklearn", "dask")


def test_importing_the_cli_loads_none_of_the_heavy_libraries() -> None:
    probe = f"import sys, cli.main; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"imported at CLI start: {out.stdout.strip()}"


def test_the_controller_flow_starts_without_the_estimators() -> None:
    """A controller tick's flow run (a pod every minute in production) reads figures: it
    must not import scikit-learn or pandas through the model families."""
    probe = (
        "import sys, flows.rollout_controller, models; "
        "assert models.handoff_labels() == ('talk_to_agent',); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules and m != 'prefect'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"imported by the controller flow: {out.stdout.strip()}"


def test_the_model_families_agree_with_the_catalog_and_load_on_first_use() -> None:
    from models import catalog, families

    assert tuple(families.FAMILIES) == catalog.NAMES
    for name, family in families.FAMILIES.items():
        assert family.state == catalog.STATE_KINDS.get(name)
        assert family.handoff_label == catalog.HANDOFF_LABELS.get(name)
    probe = (
        "import sys, models; on_use = models.families_on_use(); "
        "before = 'sklearn' in sys.modules; names = sorted(on_use); "
        "print(before, 'sklearn' in sys.modules, names)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True", "['faq-retriever',", "'intent-classifier']"]


def test_the_release_state_builders_load_on_first_use() -> None:
    probe = (
        "import sys, core.release_state as r; "
        "before = 'pandas' in sys.modules; "
        "r.build_answer_index; "
        "print(before, 'pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "True"]
