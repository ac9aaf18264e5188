"""Reproduce a registered version's training from its recorded lineage, and say what differs.

A version records what it was trained from (`models.registration.lineage_tags` and the
registry's environment tags): the data snapshot's hash, row count and time range, the
training window, the configuration (run artifact `evaluation/config.json`, seed included),
the code version, python and key package versions, and its golden predictions.
`reproduce_version` reads that lineage, reads the source rows of the recorded range
again, trains with the recorded configuration, and compares:

- `identical`: the same snapshot hash and every golden prediction reproduced;
- otherwise the list of what differs: the snapshot is no longer available as it was
  (hash and rows now vs then), the training window, the environment (code, python,
  packages, family source), and predictions changed on N of M golden inputs.

Training is given as a function (`Retrain`): core never imports `models` (the CLI passes
`models.pipeline`), so this module holds the comparison, tested with the real family.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.compat_fingerprint import EnvironmentFingerprint
from core.errors import NotFoundError
from core.lineage import (
    KEY_PACKAGES,
    TAG_CODE,
    TAG_SNAPSHOT,
    TAG_WINDOW,
    package_versions,
    predict_each,
    python_version,
)

if TYPE_CHECKING:
    import pandas as pd

    from core.registry import ModelRegistry

CONFIG_ARTIFACT = "evaluation/config.json"
TAG_SNAPSHOT_ROWS = "data_snapshot_rows"
TAG_SNAPSHOT_RANGE = "data_snapshot_range"


@dataclass(frozen=True)
class RecordedLineage:
    """What a version says it was trained from."""

    name: str
    version: str
    snapshot_hash: str
    snapshot_rows: int
    first_at: datetime
    last_at: datetime
    window: str
    code_version: str
    config: dict[str, Any]
    fingerprint: EnvironmentFingerprint


@dataclass(frozen=True)
class Retrained:
    """What a training run on the re-read snapshot gave (`Retrain`'s result)."""

    model: Any
    snapshot_hash: str
    snapshot_rows: int
    window: str


Retrain = Callable[["pd.DataFrame", Mapping[str, Any]], Retrained]
ReadSnapshot = Callable[[datetime], "pd.DataFrame"]


@dataclass(frozen=True)
class ReproduceReport:
    """The comparison of a reproduced training with its recorded lineage."""

    name: str
    version: str
    differences: tuple[str, ...]
    """What differs in the result: snapshot, window, golden predictions."""
    environment: tuple[str, ...]
    """How this environment differs from the training's: code, python, packages, source."""
    golden_checked: int
    golden_changed: int

    @property
    def reproduced(self) -> bool:
        """True when the same snapshot and window gave every golden prediction again."""
        return not self.differences

    @property
    def identical(self) -> bool:
        """True when nothing differs at all, the environment included."""
        return self.reproduced and not self.environment

    def describe(self) -> str:
        """One line for the operator."""
        head = f"{self.name} v{self.version}"
        matched = f"all {self.golden_checked} golden predictions match"
        if self.identical:
            return f"{head} reproduced: identical ({matched})"
        if self.reproduced:
            return f"{head} reproduced ({matched}) under another environment: " + ", ".join(
                self.environment
            )
        parts = list(self.differences)
        if self.environment:
            parts.append(f"environment: {', '.join(self.environment)}")
        return f"{head} does NOT reproduce: " + "; ".join(parts)


def _parse_range(value: str) -> tuple[datetime, datetime]:
    start, _, end = value.partition("..")

    def parse(text: str) -> datetime:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    return parse(start), parse(end)


def _run_config(registry: ModelRegistry, run_id: str) -> dict[str, Any]:
    import mlflow

    with tempfile.TemporaryDirectory(prefix="sml-reproduce-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=CONFIG_ARTIFACT,
                dst_path=tmp,
                tracking_uri=registry.tracking_uri,
            )
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise NotFoundError(f"run {run_id} has no {CONFIG_ARTIFACT} ({exc})") from None
        data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise NotFoundError(f"run {run_id}: {CONFIG_ARTIFACT} is not a JSON object")
    return data


def read_lineage(registry: ModelRegistry, name: str, version: str) -> RecordedLineage:
    """The lineage a version recorded at registration.

    Raises:
        NotFoundError: the version does not exist, or lacks a lineage tag or its config.
    """
    info = registry.get_version(name, version)
    missing = [
        key
        for key in (TAG_SNAPSHOT, TAG_SNAPSHOT_ROWS, TAG_SNAPSHOT_RANGE, TAG_WINDOW)
        if not info.tags.get(key)
    ]
    if missing:
        raise NotFoundError(
            f"{name} v{version} records no {', '.join(missing)}: it cannot be reproduced"
        )
    try:
        first_at, last_at = _parse_range(info.tags[TAG_SNAPSHOT_RANGE])
    except ValueError:
        raise NotFoundError(
            f"{name} v{version}: unreadable {TAG_SNAPSHOT_RANGE} {info.tags[TAG_SNAPSHOT_RANGE]!r}"
        ) from None
    return RecordedLineage(
        name=name,
        version=info.version,
        snapshot_hash=info.tags[TAG_SNAPSHOT],
        snapshot_rows=int(info.tags[TAG_SNAPSHOT_ROWS]),
        first_at=first_at,
        last_at=last_at,
        window=info.tags[TAG_WINDOW],
        code_version=info.tags.get(TAG_CODE, ""),
        config=_run_config(registry, info.run_id),
        fingerprint=EnvironmentFingerprint.from_tags(info.tags),
    )


def environment_differences(
    lineage: RecordedLineage, code_version: str, family_source_hash: str
) -> list[str]:
    """How this process differs from the one that trained: code, python, packages, source."""
    running = EnvironmentFingerprint(
        "", python_version(), package_versions(KEY_PACKAGES), family_source_hash
    )
    out = lineage.fingerprint.differences(running)
    if lineage.code_version and code_version != lineage.code_version:
        out.insert(0, f"code {lineage.code_version} -> {code_version}")
    return out


def reproduce_version(
    registry: ModelRegistry,
    name: str,
    version: str,
    *,
    read_snapshot: ReadSnapshot,
    retrain: Retrain,
    code_version: str,
) -> ReproduceReport:
    """Train again from `version`'s lineage and compare with what it recorded.

    `read_snapshot(until)` reads the source rows created before `until` (exclusive); the
    recorded range is kept to the second, so the rows up to its end's next second are read.

    Raises:
        NotFoundError: the version, its lineage or its golden predictions do not exist.
        DataError: the rows read now cannot be trained on.
    """
    lineage = read_lineage(registry, name, version)
    frame = read_snapshot(lineage.last_at + timedelta(seconds=1))
    retrained = retrain(frame, lineage.config)
    differences = []
    if retrained.snapshot_hash != lineage.snapshot_hash:
        differences.append(
            f"data snapshot {lineage.snapshot_hash[:12]} ({lineage.snapshot_rows} rows, "
            f"{lineage.first_at:%Y-%m-%d}..{lineage.last_at:%Y-%m-%d}) is no longer available: "
            f"the source gives {retrained.snapshot_hash[:12]} ({retrained.snapshot_rows} rows)"
        )
    if retrained.window != lineage.window:
        differences.append(f"training window {lineage.window} -> {retrained.window}")
    family = registry.family_source(name)
    source = family.source_hash() if family is not None else ""
    environment = environment_differences(lineage, code_version, source)
    inputs, expected = registry.golden_predictions(name, version)
    found = predict_each(retrained.model, inputs)
    changed = [(t, a, b) for t, a, b in zip(inputs, expected, found, strict=True) if a != b]
    if changed:
        text, before, after = changed[0]
        differences.append(
            f"predictions changed on {len(changed)} of {len(inputs)} golden inputs "
            f"(e.g. {text!r}: {before} -> {after})"
        )
    return ReproduceReport(
        name, version, tuple(differences), tuple(environment), len(inputs), len(changed)
    )
