"""MLflow follows the ledger: aliases and rolled-back tags after start, promote and rollbacks.

`AliasBook` is an in-memory registry with exactly the ledger's `AliasRegistry` protocol
(`version_by_alias` returns the version object or None), so nothing is probed for.
Each test runs on SQLite and on the real Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine

from core.errors import NotFoundError
from core.ledger import (
    AliasRegistry,
    get_rollout,
    promote,
    rollback,
    rollback_env,
    start_rollout,
)
from tests.factories import make_release


@dataclass
class AliasBook:
    """An in-memory registry with exactly the ledger's AliasRegistry protocol."""

    versions: set[tuple[str, str]]
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    @dataclass(frozen=True)
    class Info:
        version: str
        artifact_sha256: str | None

    def get_version(self, name: str, version: str) -> AliasBook.Info:
        if (name, version) not in self.versions:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return AliasBook.Info(version, f"sha-{name}-{version}")

    def version_by_alias(self, name: str, alias: str) -> AliasBook.Info | None:
        version = self.aliases.get((name, alias))
        return None if version is None else self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self.aliases[(name, alias)] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop((name, alias), None)

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags.setdefault((name, version), {})[key] = value


def test_rollback_env_moves_champion_back_and_tags_what_it_took_out(engine: Engine) -> None:
    book = AliasBook({("clf", v) for v in ("1", "2", "3")})
    make_release(engine, models=dict(clf="1"))
    make_release(engine, models=dict(clf="2"))
    book.aliases[("clf", "prd-champion")] = "2"
    rollout_id = _start(engine, book, "3")

    rollback_env(engine, "prd", actor="oncall", reason="bad day", registry=book)

    assert book.aliases[("clf", "prd-champion")] == "1"
    assert get_rollout(engine, rollout_id).status == "rolled_back"
    for version in ("2", "3"):  # the replaced champion and the ended rollout's candidate
        tags = book.tags[("clf", version)]
        assert tags["rolled_back_reason"] == "rollback of prd to v1.0-clfv1: bad day"
        assert (tags["rolled_back_by"], tags["rolled_back_env"]) == ("oncall", "prd")
    assert ("clf", "1") not in book.tags


def _start(engine: Engine, book: AliasRegistry, version: str) -> int:
    return start_rollout(
        engine,
        env="prd",
        model_name="clf",
        candidate_version=version,
        stages=[1, 100],
        actor="a",
        reason="r",
        registry=book,
    ).id


def test_start_rollout_refuses_a_version_the_registry_does_not_hold(engine: Engine) -> None:
    book = AliasBook({("clf", "1")})
    make_release(engine, models=dict(clf="1"))
    with pytest.raises(NotFoundError, match="model 'clf' has no version 7"):
        _start(engine, book, "7")


@pytest.mark.parametrize("candidate_alias", ["2", "3", None])
def test_promote_moves_champion_and_previous_and_clears_its_candidate_alias(
    engine: Engine, candidate_alias: str | None
) -> None:
    book = AliasBook({("clf", v) for v in ("1", "2", "3")}, {("clf", "prd-champion"): "1"})
    if candidate_alias is not None:
        book.aliases[("clf", "prd-candidate")] = candidate_alias
    make_release(engine, models=dict(clf="1"))
    rid = _start(engine, book, "2")

    _, release = promote(
        engine, rid, actor="c", reason="passed", registry=book, code_version="1", image_version="i"
    )

    assert release.artifact_digests == {"clf": "sha-clf-2"}  # read through get_version
    assert book.aliases[("clf", "prd-champion")] == "2"
    assert book.aliases[("clf", "prd-previous")] == "1"
    # the candidate alias goes only if it still points at the promoted version
    expected = None if candidate_alias == "2" else candidate_alias
    assert book.aliases.get(("clf", "prd-candidate")) == expected


def test_rollback_tags_the_candidate_with_why(engine: Engine) -> None:
    book = AliasBook({("clf", "1"), ("clf", "2")})
    make_release(engine, models=dict(clf="1"))
    rid = _start(engine, book, "2")

    rollback(engine, rid, actor="controller", reason="error rate breach", registry=book)

    tags = book.tags[("clf", "2")]
    assert tags["rolled_back_reason"] == "error rate breach"
    assert (tags["rolled_back_by"], tags["rolled_back_env"]) == ("controller", "prd")
    assert "rolled_back_at" in tags
