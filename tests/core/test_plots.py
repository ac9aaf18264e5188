"""Plots read at a glance: thresholds drawn, empty arms hidden, rates from 0, versions
and n in titles. Checked on the matplotlib objects (limits, line labels, titles), not
pixels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from core.canary import CanaryPolicy
from core.plots import markdown_images, shadow_figures, shadow_plots, stage_figure, stage_plot
from core.shadow import LatencyProfile
from core.shadow.replay import ChunkCounts
from core.shadow.statistics import ShadowThresholds, evaluate


def _arm(n: int, error_rate: float, p95_ms: float, feedback: float) -> dict[str, Any]:
    return {
        "n": n, "error_rate": error_rate, "p95_ms": p95_ms if n else None,
        "negative_feedback_rate": feedback, "reformulation_rate": 0.1 if n else None,
    }  # fmt: skip


STAGES = [
    # a 1% stage where the candidate served nobody yet: its rates are no rates
    {"label": "1%", "figures": {"champion": _arm(500, 0.01, 40.0, 0.05),
                                "candidate": _arm(0, 0.0, 0.0, 0.0)}},
    {"label": "10%", "figures": {"champion": _arm(900, 0.012, 42.0, 0.04),
                                 "candidate": _arm(100, 0.0, 38.0, 0.03)}},
]  # fmt: skip


@pytest.fixture
def policy() -> CanaryPolicy:
    return CanaryPolicy.from_settings(load_settings())


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_stage_figure_draws_thresholds_hides_empty_arms_and_names_versions_and_n(
    policy: CanaryPolicy,
) -> None:
    fig = stage_figure(
        "rollout #7: intent-classifier", STAGES, policy, {"champion": "3", "candidate": "4"}
    )

    title = fig._suptitle.get_text()
    assert "candidate v4 vs champion v3" in title
    assert "n: candidate 100, champion 1400" in title
    error, feedback, reformulation, p95 = fig.axes
    for ax in (error, feedback, reformulation, p95):
        assert ax.get_ylim()[0] == 0  # rates and latency never start below 0
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1%\nn=0/500", "10%\nn=100/900"]
    lines = _lines(error)
    margin_label = f"threshold: champion + {policy.error_margin:.0%}"
    assert set(lines) == {"champion (n=1400)", "candidate (n=100)", margin_label}
    candidate = lines["candidate (n=100)"].get_ydata()
    assert math.isnan(candidate[0])  # n=0 is not drawn as a rate of 0
    assert candidate[1] == 0.0  # a measured 0 is drawn
    threshold = lines[f"threshold: champion + {policy.error_margin:.0%}"].get_ydata()
    assert list(threshold) == pytest.approx(
        [0.01 + policy.error_margin, 0.012 + policy.error_margin]
    )
    assert f"threshold: champion + {policy.feedback_margin:.0%}" in _lines(feedback)
    p95_lines = _lines(p95)
    assert f"p95 limit {policy.p95_max_ms:g} ms" in p95_lines
    assert list(p95_lines[f"champion p95 + {policy.p95_margin:.0%}"].get_ydata()) == pytest.approx(
        [40.0 * (1 + policy.p95_margin), 42.0 * (1 + policy.p95_margin)]
    )


def test_stage_figure_leaves_out_an_arm_that_never_served() -> None:
    arms = {"champion": _arm(50, 0.0, 30.0, 0.0), "candidate": _arm(0, 0, 0, 0)}
    only_champion = [{"label": "1%", "figures": arms}]

    fig = stage_figure("rollout #8", only_champion)

    for ax in fig.axes:
        assert list(_lines(ax)) == ["champion (n=50)"]


def test_stage_plot_writes_a_png(tmp_path: Path, policy: CanaryPolicy) -> None:
    path = stage_plot("rollout #7", STAGES, tmp_path / "r" / "stages.png", policy)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown_images([path]) == f"![stages]({path.resolve().as_uri()})"


def _report() -> tuple[Any, LatencyProfile]:
    counts = ChunkCounts(
        n=200, both_answered=200, agree=180,
        per_intent={"billing": [120, 110], "refund": [80, 70], "never-asked": [0, 0]},
    )  # fmt: skip
    latency = LatencyProfile(champion_ms=(10.0, 12.0, 14.0), candidate_ms=())
    thresholds = ShadowThresholds(
        min_agreement=0.85, max_error_rate=0.02, max_p95_ms=250.0, max_accuracy_drop=0.02
    )
    report = evaluate(
        counts, latency, thresholds, model_name="intent-classifier",
        champion_version="3", candidate_version="4",
    )  # fmt: skip
    return report, latency


def test_shadow_figures_draw_gate_thresholds_versions_and_n(tmp_path: Path) -> None:
    report, latency = _report()

    figures = shadow_figures(report, latency)

    latency_ax = figures["shadow-latency"].axes[0]
    assert "candidate v4 vs champion v3" in latency_ax.get_title()
    legend = [t.get_text() for t in latency_ax.get_legend().get_texts()]
    assert legend == ["champion v3 (n=3)", "p95 limit 250 ms"]  # no timing: no candidate
    assert latency_ax.get_xlim()[0] == 0
    agreement_ax = figures["shadow-agreement"].axes[0]
    assert "(n=200)" in agreement_ax.get_title()
    assert agreement_ax.get_ylim() == (0, 1.05)
    assert [t.get_text() for t in agreement_ax.get_xticklabels()] == ["billing", "refund"]
    assert _lines(agreement_ax)["minimum agreement 85%"].get_ydata()[0] == 0.85
    paths = shadow_plots(report, latency, tmp_path)
    assert [p.name for p in paths] == ["shadow-latency.png", "shadow-agreement.png"]
