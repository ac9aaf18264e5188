"""The compat verdict a rollback consults: can the target version run under this image?

`core.compat.check_version` judges a registered version under the running environment
(identical, compatible, drifted, broken, with the reason) by loading it in a subprocess.
The ledger takes the judgement as an injected `verdict_fn(name, version)` so it stays
testable; this builds the real one, and records each verdict on its version in MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.ledger.rollouts import VerdictFn

if TYPE_CHECKING:
    from core.registry import ModelRegistry


@dataclass(frozen=True, slots=True)
class CompatVerdict:
    """A compat verdict as the ledger reads it: status identical|compatible|drifted|broken."""

    status: str
    reason: str


def compat_verdict_fn(
    registry: ModelRegistry, image_version: str, *, record: bool = True
) -> VerdictFn:
    """`(name, version) -> CompatVerdict` of `core.compat` under `image_version`.

    With `record`, the verdict is also stored on the version (`compat.<image>` tags).
    A version missing from the registry raises `NotFoundError` (nothing to roll back to).
    """
    from core import compat

    def verdict(name: str, version: str) -> CompatVerdict:
        report = compat.check_version(registry, name, version, image_version=image_version)
        if record:
            compat.record_verdict(registry, report)
        return CompatVerdict(status=report.verdict, reason=report.reason)

    return verdict
