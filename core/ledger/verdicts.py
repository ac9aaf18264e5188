"""The compat judgement a rollback consults: can the target version run under this image?

`core.compat.check_version` judges a registered version under the running environment
(identical, compatible, drifted, broken, with the reason) by loading it in a subprocess.
The ledger takes the judgement as an injected `verdict_fn(name, version)` so it stays
testable; this builds the real one, and records each verdict on its version in MLflow.
Its `CompatReport` is the ledger's `CompatJudgement` as it is: there is one verdict shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.ledger.records import VerdictFn

if TYPE_CHECKING:
    from core.compat import CompatReport
    from core.registry import ModelRegistry


def compat_verdict_fn(
    registry: ModelRegistry, image_version: str, *, record: bool = True
) -> VerdictFn:
    """`(name, version) -> core.compat.CompatReport` under `image_version`.

    With `record`, the verdict is also stored on the version (`compat.<image>` tags).
    The returned function raises `NotFoundError` for a version missing from the registry
    (nothing to roll back to).
    """
    from core import compat

    def verdict(name: str, version: str) -> CompatReport:
        report = compat.check_version(registry, name, version, image_version=image_version)
        if record:
            compat.record_verdict(registry, report)
        return report

    return verdict
