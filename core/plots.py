"""PNG plots of shadow evaluations and canary stages (matplotlib, Agg backend).

The backend is chosen inside each function (never at import), so importing this module
has no side effect and works without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.shadow import LatencyProfile, ShadowReport


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def shadow_plots(report: ShadowReport, latency: LatencyProfile, out_dir: Path) -> list[Path]:
    """Write the latency distributions and per-intent agreement of a shadow evaluation.

    Returns the PNG paths (`shadow-latency.png`, `shadow-agreement.png`).
    """
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4))
    for timings, label in (
        (latency.champion_ms, f"champion v{report.champion_version}"),
        (latency.candidate_ms, f"candidate v{report.candidate_version}"),
    ):
        if timings:
            ax.hist(timings, bins=40, alpha=0.6, label=label)
    ax.set_xlabel("single-request latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{report.model_name}: latency distributions")
    ax.legend()
    path = out_dir / "shadow-latency.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    intents = list(report.per_intent)
    values = [report.per_intent[i].value or 0.0 for i in intents]
    rates = list(report.per_intent.values())
    errors = [
        [max(0.0, (r.value or 0.0) - (r.low or 0.0)) for r in rates],
        [max(0.0, (r.high or 0.0) - (r.value or 0.0)) for r in rates],
    ]
    ax.bar(range(len(intents)), values, yerr=errors if intents else None, capsize=3)
    ax.set_xticks(range(len(intents)), intents, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement (95% CI)")
    ax.set_title(f"{report.model_name}: agreement per intent (champion's answer)")
    path = out_dir / "shadow-agreement.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths


def stage_plot(title: str, stages: Sequence[dict[str, Any]], out_path: Path) -> Path:
    """Plot each stage's figures of one rollout (from its advance/promote/rollback events).

    `stages`: dicts with `label` (e.g. "1%"), and `figures` as stored by the controller
    (`StageFigures.as_dict()`): per arm n, error_rate, p95_ms, negative_feedback_rate.
    """
    plt = _pyplot()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    labels = [s["label"] for s in stages]
    metrics = (
        ("error_rate", "error rate"),
        ("p95_ms", "p95 latency (ms)"),
        ("negative_feedback_rate", "negative feedback rate"),
        ("n", "requests"),
    )
    fig, axes = plt.subplots(1, len(metrics), figsize=(14, 3.6))
    x = range(len(stages))
    for ax, (key, name) in zip(axes, metrics, strict=True):
        for arm, marker in (("champion", "o"), ("candidate", "s")):
            ys = [(s["figures"].get(arm) or {}).get(key) for s in stages]
            ax.plot(x, [float("nan") if y is None else y for y in ys], marker=marker, label=arm)
        ax.set_xticks(list(x), labels)
        ax.set_title(name)
        ax.set_xlabel("stage")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
