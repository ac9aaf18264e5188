"""Every markdown report a flow leaves (Prefect artifacts, MLflow): one place, plain text.

Flows and tasks call these and publish the result; nothing here does I/O. Inputs are our
records, or Protocols of what a report reads of them (core never imports `models`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.gates import GateReport
    from core.ledger import ReleaseRecord, RolloutRecord
    from core.lineage import ModelVersionInfo
    from core.retrain import RetrainOutcome
    from core.shadow.statistics import ShadowReport
    from core.tick import TickOutcome


def artifact_key(*parts: object) -> str:
    """A Prefect artifact key from its parts: lowercase letters, digits and dashes only
    (what Prefect accepts), e.g. `artifact_key("rollout", 7, "set_stage")` ->
    `rollout-7-set-stage`."""
    key = "-".join(str(part) for part in parts).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key)


# --- train ----------------------------------------------------------------------------------


class HoldoutEvaluation(Protocol):
    """What the training report reads of `models.evaluation.Evaluation`."""

    @property
    def rows(self) -> int: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def labels(self) -> Sequence[str]: ...
    @property
    def per_class_accuracy(self) -> Mapping[str, float]: ...
    @property
    def per_class_support(self) -> Mapping[str, int]: ...


class SnapshotSummary(Protocol):
    """What the training report reads of `models.pipeline.SnapshotInfo`."""

    @property
    def rows(self) -> int: ...
    @property
    def digest(self) -> str: ...


class TrainingRun(Protocol):
    """What the training report reads of `models.pipeline.TrainedModel`."""

    @property
    def snapshot(self) -> SnapshotSummary: ...
    @property
    def window(self) -> str: ...
    @property
    def train_rows(self) -> int: ...
    @property
    def evaluation(self) -> HoldoutEvaluation: ...


def training_report_markdown(info: ModelVersionInfo, trained: TrainingRun) -> str:
    """A markdown summary of a training run (Prefect artifact, demo output)."""
    evaluation = trained.evaluation
    lines = [
        f"# {info.name} v{info.version}",
        "",
        f"- image `{info.image_version}`, code `{info.tags.get('code_version', '?')}`, "
        f"python {info.tags.get('python_version', '?')}, "
        f"scikit-learn {info.tags.get('pkg.scikit-learn', '?')}",
        f"- data snapshot `{trained.snapshot.digest[:12]}` ({trained.snapshot.rows} rows), "
        f"training window {trained.window} ({trained.train_rows} rows)",
        f"- holdout accuracy **{evaluation.accuracy:.1%}** on {evaluation.rows} recent rows",
        f"- artifact sha256 `{info.artifact_sha256[:16]}`, golden digest "
        f"`{info.golden_digest[:16]}`",
        f"- aliases: {', '.join(info.aliases) or 'none'}",
        "",
        "| intent | accuracy | support |",
        "|---|---:|---:|",
    ]
    for label in evaluation.labels:
        accuracy = evaluation.per_class_accuracy[label]
        shown = "n/a" if accuracy != accuracy else f"{accuracy:.1%}"  # NaN: no holdout rows
        lines.append(f"| {label} | {shown} | {evaluation.per_class_support[label]} |")
    return "\n".join(lines) + "\n"


# --- rollout-controller ------------------------------------------------------------------


def tick_report_markdown(outcomes: Sequence[TickOutcome]) -> str:
    """A markdown table of what one controller tick did to each active rollout."""
    lines = [
        "# rollout-controller tick",
        "",
        "| rollout | stage | outcome | why |",
        "|---|---|---|---|",
    ]
    lines += [f"| #{o.rollout_id} | {o.stage_index} | {o.outcome} | {o.detail} |" for o in outcomes]
    return "\n".join(lines) + "\n"


# --- retrain-on-image-change -------------------------------------------------------------


def retrain_report_markdown(image: str, outcomes: Sequence[RetrainOutcome]) -> str:
    """A markdown table of what the run did per model."""
    lines = [
        f"# retrain on image `{image}`",
        "",
        "| model | action | version | champion | champion verdict | why |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.model} | {o.action} | v{o.version} | "
            f"{'v' + o.champion_version if o.champion_version else '-'} | "
            f"{o.champion_verdict or '-'} | {o.reason} |"
        )
    return "\n".join(lines) + "\n"


def retrain_summary(image: str, outcomes: Sequence[RetrainOutcome]) -> str:
    """One line: the image and what each model got."""
    return f"image {image}: " + ", ".join(f"{o.model} {o.action} v{o.version}" for o in outcomes)


# --- shadow-evaluation -------------------------------------------------------------------


def shadow_report_markdown(report: ShadowReport) -> str:
    """The report as markdown (a Prefect artifact and an MLflow artifact)."""
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"# Shadow evaluation: {report.model_name} v{report.candidate_version} "
        f"vs champion v{report.champion_version}",
        "",
        f"**Verdict: {verdict}** ({report.gate.summary()})",
        "",
        f"Requests: {report.requests} ({report.online_requests} from online shadow rows, "
        f"{report.replayed_requests} replayed)",
        "",
        "| figure | champion | candidate |",
        "|---|---|---|",
        f"| error rate (95% CI) | {report.champion_error.describe()} | "
        f"{report.candidate_error.describe()} |",
    ]
    for p in ("p50", "p95", "p99"):
        a, b = report.champion_latency[p], report.candidate_latency[p]
        lines.append(
            f"| latency {p} (ms) | {'n/a' if a is None else f'{a:.2f}'} | "
            f"{'n/a' if b is None else f'{b:.2f}'} |"
        )
    if report.accuracy is not None:
        acc = report.accuracy
        lines.append(
            f"| accuracy (95% CI) | {acc.champion.describe()} | {acc.candidate.describe()} |"
        )
    lines += ["", f"Agreement (95% CI): {report.agreement.describe()}", ""]
    lines += _online_latency_lines(report)
    if report.accuracy is not None:
        acc = report.accuracy
        lines += [
            f"Accuracy drop champion - candidate: {acc.drop:+.4f} "
            f"[{acc.drop_low:+.4f}, {acc.drop_high:+.4f}] (bootstrap 95%); "
            f"McNemar exact p = {acc.mcnemar_p_value:.4g}",
            "",
        ]
    else:
        lines += ["No labelled feedback in the sample: accuracy not compared.", ""]
    lines += ["## Gate", ""] + [f"- {c.describe()}" for c in report.gate.checks]
    return "\n".join(lines) + "\n"


def _online_latency_lines(report: ShadowReport) -> list[str]:
    """The online pairs' logged latencies, marked indicative (shadow runs off the hot
    path); the latency rows above (single requests timed alike) are the gated evidence."""
    if report.online_latency is None:
        return []
    champ, cand = report.online_latency["champion"], report.online_latency["candidate"]

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    return [
        f"Online shadow latency p50/p95 (ms, indicative only: the shadow call runs off the "
        f"hot path, so it is not timed like the champion's; the latency rows above, timed "
        f"one request at a time for both, are the latency evidence): champion "
        f"{ms(champ['p50'])}/{ms(champ['p95'])}, candidate {ms(cand['p50'])}/{ms(cand['p95'])}",
        "",
    ]


def gate_table(gate: GateReport) -> list[dict[str, Any]]:
    """Every threshold of a gate as table rows (a Prefect table artifact)."""
    return [
        {"check": c.name, "value": c.value, "comparison": c.comparison,
         "threshold": c.threshold, "passed": c.passed}
        for c in gate.checks
    ]  # fmt: skip


# --- manual actions ----------------------------------------------------------------------


def rollback_summary(env: str, release: ReleaseRecord) -> str:
    """One line: which release an env went back to, with its model versions."""
    models = ", ".join(f"{n} v{v}" for n, v in sorted(release.model_versions.items()))
    return f"{env} rolled back to {release.tag} ({models})"


def rollback_report_markdown(summary: str, release: ReleaseRecord, actor: str) -> str:
    """The rollback flow's report: what, the ledger's reason, and who."""
    return f"# rollback\n\n{summary}\n\n{release.reason}\n\nby {actor}\n"


def rollout_action_summary(action: str, record: RolloutRecord) -> str:
    """One line: the action and the rollout's state after it."""
    return (
        f"rollout #{record.id} {action}: {record.model_name} "
        f"v{record.candidate_version} vs v{record.champion_version} in {record.env}: "
        f"{record.status}, stage {record.stage_index}, {record.percent:g}%"
    )


def rollout_action_report_markdown(summary: str, actor: str, reason: str) -> str:
    """The rollout-action flow's report: what, by whom and why."""
    return f"# rollout-action\n\n{summary}\n\nby {actor}: {reason}\n"


@dataclass
class StageRecord:
    """The figures one controller decision acted on (for the summary and the plots)."""

    rollout_id: int
    label: str
    action: str
    figures: dict[str, Any]


def stage_records(rollout_id: int, events: list[Any], stages: list[float]) -> list[StageRecord]:
    """The figures each controller decision (advance, promote, rollback) acted on."""
    records = []
    for event in events:
        figures = event.figures or {}
        if event.kind not in ("advance", "promote", "rollback") or "figures" not in figures:
            continue
        index = int(figures.get("verdict", {}).get("stage_index", 0))
        label = f"{stages[index]:g}%" if 0 <= index < len(stages) else str(index)
        records.append(StageRecord(rollout_id, label, event.kind, figures["figures"]))
    return records
