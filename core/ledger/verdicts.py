"""The compat verdict a rollback consults: can the target version run under this image?

`core.compat` judges a registered version under the running environment (identical,
compatible, drifted, broken, with the reason). The ledger takes it as an injected
`verdict_fn(name, version)` so it stays testable; this builds the real one.
"""

from __future__ import annotations

from typing import Any

from config import Settings
from core.ledger.rollouts import Verdict, VerdictFn


def compat_verdict_fn(registry: Any, settings: Settings) -> VerdictFn:
    """`(name, version) -> verdict` of `core.compat` under the running image of `settings`."""
    from core import compat

    def verdict(name: str, version: str) -> Verdict:
        return compat.judge_version(registry, name, version, settings=settings)  # type: ignore[no-any-return]

    return verdict
