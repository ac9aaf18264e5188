"""core.aliases: one alias name per environment and role."""

from __future__ import annotations

import pytest

from core.aliases import env_alias, split_env_alias


@pytest.mark.parametrize(
    ("env", "role", "alias"),
    [("prd", "champion", "prd-champion"), ("stg", "candidate", "stg-candidate")],
)
def test_env_alias_names_env_and_role_and_splits_back(env: str, role: str, alias: str) -> None:
    assert env_alias(env, role) == alias  # type: ignore[arg-type]
    assert split_env_alias(alias) == (env, role)


def test_env_alias_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="expected one of champion, candidate, previous"):
        env_alias("prd", "champoin")  # type: ignore[arg-type]


@pytest.mark.parametrize("alias", ["champion", "prd-latest", "-champion", "release-7"])
def test_split_env_alias_ignores_aliases_that_are_not_per_env(alias: str) -> None:
    assert split_env_alias(alias) is None
