"""MLflow alias names per environment: the ledger is the truth, aliases mirror it.

Model versions are shared by every environment (one retrain per image); which version an
environment serves is its own: `prd-champion`, `stg-candidate`, `dev-previous`. Nothing
moves another environment's alias, so stg and prd on one tracking server never flip each
other's `champion`. MLflow accepts `^[\\w\\-]*$` alias names (REFERENCE.md).
"""

from __future__ import annotations

from typing import Literal

AliasRole = Literal["champion", "candidate", "previous"]
ALIAS_ROLES: tuple[AliasRole, ...] = ("champion", "candidate", "previous")


def env_alias(env: str, role: AliasRole) -> str:
    """The alias of `role` in `env`, e.g. `env_alias("prd", "champion") == "prd-champion"`.

    Raises:
        ValueError: an unknown role (a typo would silently create a stray alias).
    """
    if role not in ALIAS_ROLES:
        raise ValueError(f"alias role: expected one of {', '.join(ALIAS_ROLES)}, got {role!r}")
    return f"{env}-{role}"


def split_env_alias(alias: str) -> tuple[str, AliasRole] | None:
    """`("prd", "champion")` for `prd-champion`; None for an alias that is not per-env."""
    env, _, role = alias.rpartition("-")
    for known in ALIAS_ROLES:
        if env and role == known:
            return env, known
    return None
