"""Plots of shadow evaluations and canary stages a person reads at a glance (matplotlib).

Every plot draws the thresholds it is judged against (dashed, labelled), never plots an
arm that served nothing (n=0 is no rate, not a rate of 0), starts rate and latency axes
at 0, and names the versions and the number of requests in its titles. The `*_figures`
functions return matplotlib Figures (tested as objects: axes limits, line labels,
titles); the `*_plots` / `stage_plot` functions write them as PNG. The backend (Agg) is
chosen inside each function, never at import, so importing this module has no side
effect and works without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.canary import CanaryPolicy
from core.shadow import LatencyProfile, ShadowReport

ARMS = (("champion", "o"), ("candidate", "s"))
THRESHOLD_STYLE: dict[str, Any] = {"linestyle": "--", "color": "tab:red", "linewidth": 1.2}
# (figure key, panel name, margin attribute of CanaryPolicy: the candidate may exceed the
# champion's rate by that much) for the rate panels of a stage plot
RATE_PANELS = (
    ("error_rate", "error rate", "error_margin"),
    ("negative_feedback_rate", "negative feedback rate", "feedback_margin"),
    ("reformulation_rate", "reformulation rate", "reformulation_margin"),
)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _gate_threshold(report: ShadowReport, name: str) -> float | None:
    return next((c.threshold for c in report.gate.checks if c.name == name), None)


def shadow_figures(report: ShadowReport, latency: LatencyProfile) -> dict[str, Any]:
    """{"shadow-latency": Figure, "shadow-agreement": Figure} of a shadow evaluation.

    Latency: each model's single-request latency histogram (a model with no timing is
    left out), the gate's p95 limit as a dashed line. Agreement: per intent with its 95%
    interval, the gate's minimum agreement as a dashed line; y from 0 to 1.
    """
    plt = _pyplot()
    versions = f"candidate v{report.candidate_version} vs champion v{report.champion_version}"
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, version, timings in (
        ("champion", report.champion_version, latency.champion_ms),
        ("candidate", report.candidate_version, latency.candidate_ms),
    ):
        label = f"{arm} v{version} (n={len(timings)})"
        if timings:
            ax.hist(timings, bins=40, alpha=0.6, label=label)
    limit = _gate_threshold(report, "candidate_p95_ms")
    if limit is not None:
        ax.axvline(limit, label=f"p95 limit {limit:g} ms", **THRESHOLD_STYLE)
    ax.set_xlim(left=0)
    ax.set_xlabel("single-request latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{report.model_name}: latency, {versions}")
    ax.legend()
    figures = {"shadow-latency": fig}

    fig, ax = plt.subplots(figsize=(7, 4))
    intents = [i for i, r in report.per_intent.items() if r.n]  # no request: no bar
    rates = [report.per_intent[i] for i in intents]
    values = [r.value or 0.0 for r in rates]
    errors = [
        [max(0.0, (r.value or 0.0) - (r.low or 0.0)) for r in rates],
        [max(0.0, (r.high or 0.0) - (r.value or 0.0)) for r in rates],
    ]
    ax.bar(range(len(intents)), values, yerr=errors if intents else None, capsize=3)
    ax.set_xticks(range(len(intents)), intents, rotation=45, ha="right")
    minimum = _gate_threshold(report, "agreement")
    if minimum is not None:
        ax.axhline(minimum, label=f"minimum agreement {minimum:.0%}", **THRESHOLD_STYLE)
        ax.legend()
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement (95% CI)")
    ax.set_title(f"{report.model_name}: agreement per intent, {versions} (n={report.requests})")
    figures["shadow-agreement"] = fig
    return figures


def shadow_plots(report: ShadowReport, latency: LatencyProfile, out_dir: Path) -> list[Path]:
    """Write `shadow_figures` as PNG into `out_dir`; return the paths
    (`shadow-latency.png`, `shadow-agreement.png`)."""
    return [
        _save(fig, out_dir / f"{name}.png") for name, fig in shadow_figures(report, latency).items()
    ]


def _arm_series(stages: Sequence[Mapping[str, Any]], arm: str, key: str) -> list[float]:
    """One arm's figure per stage; NaN (not drawn) where the arm served nobody."""
    values = []
    for stage in stages:
        figures = stage["figures"].get(arm) or {}
        value = figures.get(key)
        values.append(float("nan") if not figures.get("n") or value is None else float(value))
    return values


def _total_n(stages: Sequence[Mapping[str, Any]], arm: str) -> int:
    return sum(int((s["figures"].get(arm) or {}).get("n") or 0) for s in stages)


def _draw_arms(ax: Any, stages: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """Plot both arms (an arm with no request in any stage is not drawn); return the
    champion's series (for thresholds relative to it)."""
    x = list(range(len(stages)))
    for arm, marker in ARMS:
        series = _arm_series(stages, arm, key)
        if any(v == v for v in series):  # NaN != NaN: some stage has this arm
            ax.plot(x, series, marker=marker, label=f"{arm} (n={_total_n(stages, arm)})")
    return _arm_series(stages, "champion", key)


def stage_figure(
    title: str,
    stages: Sequence[Mapping[str, Any]],
    policy: CanaryPolicy | None = None,
    versions: Mapping[str, str] | None = None,
) -> Any:
    """A rollout's stages side by side: error rate, negative feedback, reformulation and
    p95 latency per arm, each with its gate threshold (the champion's rate plus the
    policy's margin; the p95 limit and the champion's p95 x (1 + margin)) when `policy`
    is given. `stages`: dicts with `label` (e.g. "10%") and `figures` as the controller
    stores them (`StageFigures.as_dict()`). `versions` ({"champion": v, "candidate": v})
    go into the title with the requests per arm. Returns the Figure."""
    plt = _pyplot()
    panels = len(RATE_PANELS) + 1
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.8))
    x = list(range(len(stages)))
    labels = [
        f"{s['label']}\nn={_total_n([s], 'candidate')}/{_total_n([s], 'champion')}" for s in stages
    ]
    for ax, (key, name, margin_name) in zip(axes, RATE_PANELS, strict=False):
        champion = _draw_arms(ax, stages, key)
        if policy is not None:
            margin = float(getattr(policy, margin_name))
            ax.plot(
                x, [c + margin for c in champion],
                label=f"threshold: champion + {margin:.0%}", **THRESHOLD_STYLE,
            )  # fmt: skip
        ax.set_ylim(bottom=0)
        ax.set_title(name)
    ax = axes[-1]
    champion = _draw_arms(ax, stages, "p95_ms")
    if policy is not None:
        ax.axhline(
            policy.p95_max_ms, label=f"p95 limit {policy.p95_max_ms:g} ms", **THRESHOLD_STYLE
        )
        ax.plot(
            x, [c * (1 + policy.p95_margin) for c in champion], linestyle=":",
            color="tab:red", label=f"champion p95 + {policy.p95_margin:.0%}",
        )  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_title("p95 latency (ms)")
    for ax in axes:
        ax.set_xticks(x, labels)
        ax.set_xlabel("stage (n candidate/champion)")
        ax.legend(fontsize="small")
    shown = (
        f" — candidate v{versions['candidate']} vs champion v{versions['champion']}"
        if versions
        else ""
    )
    fig.suptitle(
        f"{title}{shown} (n: candidate {_total_n(stages, 'candidate')}, "
        f"champion {_total_n(stages, 'champion')})"
    )
    return fig


def stage_plot(
    title: str,
    stages: Sequence[Mapping[str, Any]],
    out_path: Path,
    policy: CanaryPolicy | None = None,
    versions: Mapping[str, str] | None = None,
) -> Path:
    """Write `stage_figure` as a PNG at `out_path`; return the path."""
    return _save(stage_figure(title, stages, policy, versions), out_path)


def markdown_images(paths: Sequence[Path]) -> str:
    """Markdown that shows each PNG (for a Prefect markdown artifact: the image path as a
    link the UI opens, the file stays where it was written)."""
    return "\n".join(f"![{p.stem}]({p.resolve().as_uri()})" for p in paths)
