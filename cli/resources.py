"""What a command opens: the state database (ledger-ready) and the model registry.

Both open lazily, inside the command: `import mlflow` alone takes ~10 s, so commands
that never touch the registry never pay for it, and a bad input fails before it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from config import Settings, load_settings
from core.db import state_database

if TYPE_CHECKING:
    from core.registry import ModelRegistry


def ledger_database(settings: Settings | None = None) -> AbstractContextManager[Engine]:
    """The state database of `settings` (loaded when not given), disposed when the block ends.

    Raises:
        SmlError: on entering, when the database was never migrated (run `sml db upgrade`).
    """
    return state_database((settings or load_settings()).database_url)


def open_registry(settings: Settings) -> ModelRegistry:
    """The MLflow registry of these settings, knowing the model families (for compat checks).

    Imports MLflow (~10 s the first time), so commands that never touch it stay fast.
    """
    from core.registry import ModelRegistry
    from models import FAMILIES

    return ModelRegistry.from_settings(settings, families=FAMILIES)
