"""core.compat_preflight: the blocking rule (pure) and the report."""

from __future__ import annotations

import pytest

from core.compat import CompatReport
from core.compat_fingerprint import EnvironmentFingerprint
from core.compat_preflight import (
    PreflightResult,
    PreflightRow,
    PreflightSubject,
    blocking_reason,
    preflight_markdown,
)


def _report(verdict: str, bad: int = 0, checked: int = 25) -> CompatReport:
    return CompatReport(
        "intent-classifier", "3", "", verdict, f"why {verdict}",  # type: ignore[arg-type]
        golden_checked=checked, golden_mismatches=bad,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("verdict", "bad", "tolerance", "blocks"),
    [
        ("identical", 0, 0.0, False),
        ("compatible", 0, 0.0, False),
        ("drifted", 2, 0.1, False),  # 8% within a 10% tolerance
        ("drifted", 3, 0.1, True),  # 12% beyond it
        ("drifted", 1, 0.0, True),
        ("broken", 0, 1.0, True),  # no tolerance lets a broken champion through
    ],
)
def test_blocking_reason_for_a_champion(
    verdict: str, bad: int, tolerance: float, blocks: bool
) -> None:
    reason = blocking_reason(_report(verdict, bad), True, tolerance)
    assert (reason is not None) == blocks
    if reason and verdict == "drifted":
        assert f"{bad}/25 golden predictions (tolerance {tolerance:.0%})" in reason


def test_blocking_reason_never_for_a_candidate_or_rollback_target() -> None:
    assert blocking_reason(_report("broken"), False, 0.0) is None


def test_subject_is_a_champion_when_one_env_serves_it() -> None:
    assert PreflightSubject("m", "1", ("stg candidate", "prd champion")).is_champion
    assert not PreflightSubject("m", "1", ("prd rollback target",)).is_champion


def test_preflight_markdown_lists_every_version_and_the_decision() -> None:
    broken = _report("broken")
    fine = CompatReport("intent-classifier", "4", "", "identical", "same | all",
                        judged_by=EnvironmentFingerprint("", "3.11.7"))  # fmt: skip
    result = PreflightResult(
        "lock uv.lock (abc)",
        "abc",
        0.0,
        (
            PreflightRow(PreflightSubject("intent-classifier", "3", ("prd champion",)), broken,
                         blocking_reason(broken, True, 0.0)),
            PreflightRow(PreflightSubject("intent-classifier", "4", ("prd candidate",)), fine,
                         None),
        ),
    )  # fmt: skip
    markdown = preflight_markdown(result)
    assert "**FAILS**" in markdown
    assert "| intent-classifier | 3 | prd champion | **broken** (blocks) | why broken |" in markdown
    assert "| intent-classifier | 4 | prd candidate | identical | same \\| all |" in markdown
    assert result.summary().startswith("preflight under lock uv.lock (abc): 1 broken, 1 identical")
