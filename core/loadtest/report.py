"""The load test's report: both models' figures per phase, the gate, and how it was run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from core.gates import GateReport
from core.loadtest.run import LoadTestPlan, Measurements
from core.loadtest.stats import PHASES, LoadFigures, Phase

QuerySource = Literal["traffic", "golden_inputs"]
Side = Literal["champion", "candidate"]
SIDES: tuple[Side, ...] = ("champion", "candidate")
PHASE_TITLES: dict[Phase, str] = {
    "target_rate": "target rate (open loop)",
    "saturation": "saturation (closed loop)",
}


@dataclass(frozen=True, slots=True)
class LoadTestReport:
    """A load test of a candidate against its champion, and its verdict."""

    env: str
    model_name: str
    champion_version: str
    candidate_version: str
    plan: LoadTestPlan
    query_source: QuerySource
    queries: int
    champion: Mapping[Phase, LoadFigures]
    candidate: Mapping[Phase, LoadFigures]
    gate: GateReport

    @property
    def passed(self) -> bool:
        """True when every threshold of the gate held."""
        return self.gate.passed

    def figures(self, side: Side) -> Mapping[Phase, LoadFigures]:
        """The champion's or the candidate's figures, per phase."""
        return self.champion if side == "champion" else self.candidate

    def version(self, side: Side) -> str:
        """The champion's or the candidate's version."""
        return self.champion_version if side == "champion" else self.candidate_version

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the ledger event's figures, the MLflow report)."""
        return {
            "env": self.env,
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "candidate_version": self.candidate_version,
            "plan": self.plan.as_dict(),
            "query_source": self.query_source,
            "queries": self.queries,
            "champion": {p: f.as_dict() for p, f in self.champion.items()},
            "candidate": {p: f.as_dict() for p, f in self.candidate.items()},
            "gate": self.gate.as_dict(),
        }


def figures_by_phase(measurements: Measurements, label: Side) -> dict[Phase, LoadFigures]:
    """One model's pooled figures, per phase."""
    return {phase: measurements.figures(label, phase) for phase in PHASES}


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def figures_table(report: LoadTestReport) -> list[dict[str, Any]]:
    """One row per model and phase (a Prefect table artifact, the markdown report)."""
    rows = []
    for phase in PHASES:
        for side in SIDES:
            figures = report.figures(side)[phase]
            rows.append(
                {"phase": phase, "model": f"{side} v{report.version(side)}",
                 "requests": figures.requests,
                 "errors": figures.errors, "error_rate": figures.error_rate,
                 "throughput_rps": figures.throughput_rps, "p50_ms": figures.p50_ms,
                 "p95_ms": figures.p95_ms, "p99_ms": figures.p99_ms}
            )  # fmt: skip
    return rows


def report_markdown(report: LoadTestReport) -> str:
    """The report as markdown: the verdict, the figures per phase and model, the gate."""
    plan = report.plan
    lines = [
        f"# Load test: {report.model_name} v{report.candidate_version} vs champion "
        f"v{report.champion_version} ({report.env})",
        "",
        f"**{report.gate.summary()}**",
        "",
        f"{report.queries} recent queries replayed (from {report.query_source.replace('_', ' ')}); "
        f"{plan.rounds} round(s) of {plan.phase_seconds:g} s per phase and model, "
        f"interleaved; target rate {plan.rate_rps:g} req/s (open loop), saturation "
        f"{plan.connections} connections (closed loop). Latencies are client-side, in ms.",
        "",
        "| phase | model | requests | errors | throughput (req/s) | p50 | p95 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in figures_table(report):
        lines.append(
            f"| {PHASE_TITLES[row['phase']]} | {row['model']} | {row['requests']} | "
            f"{row['errors']} | {_ms(row['throughput_rps'])} | {_ms(row['p50_ms'])} | "
            f"{_ms(row['p95_ms'])} | {_ms(row['p99_ms'])} |"
        )
    lines += ["", "## Gate", ""]
    lines += [f"- {check.describe()}" for check in report.gate.checks]
    return "\n".join(lines) + "\n"
