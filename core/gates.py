"""Declarative quality gates: named thresholds, every failed one listed, decision logged.

A gate is a list of `GateCheck`s (value, comparison, threshold). `GateReport` holds all of
them; `passed` only when every check passed, and `failed` lists every failing threshold,
never just the first. Thresholds come from Settings (CANARY_*, SHADOW_*), passed in by the
caller; this module has no defaults of its own.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

Comparison = Literal["<=", ">=", "<", ">"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One threshold: passed when `value <comparison> threshold`.

    A check whose value is None (not measurable, e.g. no labels) is skipped, not failed,
    unless `required` is set.
    """

    name: str
    value: float | None
    comparison: Comparison
    threshold: float
    required: bool = False

    @property
    def skipped(self) -> bool:
        """True when the value could not be measured and the check is optional."""
        return self.value is None and not self.required

    @property
    def passed(self) -> bool:
        """True when the threshold holds (or the optional check was skipped)."""
        if self.value is None:
            return not self.required
        return _OPS[self.comparison](self.value, self.threshold)

    def describe(self) -> str:
        """One line, e.g. `error_rate 0.031 <= 0.01: FAILED`."""
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        state = "skipped" if self.skipped else ("ok" if self.passed else "FAILED")
        return f"{self.name} {shown} {self.comparison} {self.threshold:.4g}: {state}"


@dataclass(frozen=True, slots=True)
class GateReport:
    """The result of one gate: every check, and the verdict."""

    gate: str
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        """Every failing check (all of them, in order)."""
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        """`<gate>: pass` or `<gate>: fail (a ...; b ...)` listing every failed threshold."""
        if self.passed:
            return f"{self.gate}: pass"
        return f"{self.gate}: fail (" + "; ".join(c.describe() for c in self.failed) + ")"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for rollout events, artifacts and reports."""
        return {
            "gate": self.gate,
            "passed": self.passed,
            "checks": [
                {
                    "name": c.name,
                    "value": c.value,
                    "comparison": c.comparison,
                    "threshold": c.threshold,
                    "passed": c.passed,
                    "skipped": c.skipped,
                }
                for c in self.checks
            ],
        }


def evaluate_gate(gate: str, checks: Iterable[GateCheck]) -> GateReport:
    """Bundle checks into a report for the gate named `gate`."""
    return GateReport(gate=gate, checks=tuple(checks))


def log_gate_report(report: GateReport, logger: logging.Logger) -> None:
    """Log the decision either way: INFO with every check on pass, WARNING on fail."""
    detail = "; ".join(check.describe() for check in report.checks)
    if report.passed:
        logger.info("%s [%s]", report.summary(), detail)
    else:
        logger.warning("%s [%s]", report.summary(), detail)
