"""An in-memory registry with exactly the ledger's `AliasRegistry` protocol, shared by the
environment tests: versions of several models, their digests, aliases and tags."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import NotFoundError


@dataclass(frozen=True)
class Info:
    """What the ledger reads of a version."""

    version: str
    artifact_sha256: str | None


@dataclass
class MemoryRegistry:
    """Versions `{(model, version): digest}`, aliases `{(model, alias): version}`, tags."""

    digests: dict[tuple[str, str], str | None]
    aliases: dict[tuple[str, str], str] = field(default_factory=dict)
    tags: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    moves: list[tuple[str, str, str | None]] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, *versions: str) -> MemoryRegistry:
        """`name` with `versions`, each with digest `sha-<name>-<version>`."""
        return cls({(name, v): f"sha-{name}-{v}" for v in versions})

    def get_version(self, name: str, version: str) -> Info:
        if (name, version) not in self.digests:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return Info(version, self.digests[(name, version)])

    def version_by_alias(self, name: str, alias: str) -> Info | None:
        version = self.aliases.get((name, alias))
        return None if version is None else self.get_version(name, version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get_version(name, version)
        self.aliases[(name, alias)] = version
        self.moves.append((name, alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop((name, alias), None)
        self.moves.append((name, alias, None))

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags.setdefault((name, version), {})[key] = value

    def env_aliases(self, env: str) -> dict[tuple[str, str], str]:
        """The aliases of one environment (`<env>-...`)."""
        return {k: v for k, v in self.aliases.items() if k[1].startswith(f"{env}-")}
