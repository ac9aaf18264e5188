"""`compat-preflight` flow: a real Prefect harness, real MLflow store, real probe subprocesses
under this interpreter with this checkout's code, then with the next image's changed code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from config import get_settings
from core.compat_preflight import preflight_tag
from core.errors import ConflictError
from core.registry import ModelRegistry
from flows.compat_preflight import compat_preflight
from models import FAMILIES
from tests.core.compat_environments import changed_code_root
from tests.factories import make_release, train_and_register

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SHORT_WORDS_DROPPED = (
    'return _WHITESPACE.sub(" ", out).strip()',
    'return " ".join(w for w in _WHITESPACE.sub(" ", out).strip().split() if len(w) > 4)',
)


def test_compat_preflight_flow_passes_identical_then_fails_on_a_drifted_champion(
    state_db: Engine, tmp_path: Path
) -> None:
    registry = ModelRegistry.from_settings(get_settings(), families=FAMILIES)
    info = train_and_register(registry)
    make_release(state_db, models={info.name: info.version},
                 digests={info.name: info.artifact_sha256}, image_version="img-1")  # fmt: skip

    result = compat_preflight(python_path=sys.executable)

    assert result.passed
    assert [(row.report.verdict, row.subject.roles) for row in result.rows] == [
        ("identical", ("prd champion",))
    ]

    code = changed_code_root(tmp_path / "next-image", *SHORT_WORDS_DROPPED)
    with pytest.raises(ConflictError, match=f"champion {info.name} v{info.version} would drift"):
        compat_preflight(python_path=sys.executable, code_path=str(code))
    # recorded under the same key (this interpreter's): the newest verdict, with who judged
    stored = registry.get_version(info.name, info.version).tags
    assert stored[preflight_tag(result.lock_hash)] == "drifted"
    assert '"family_source_hash"' in stored[f"{preflight_tag(result.lock_hash)}.env"]
