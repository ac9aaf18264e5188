"""Rich tables of the ledger: status, history, diff, events, rollouts.

Plain functions from ledger records to `rich.table.Table`, shared by the `sml` commands,
the demo and `sml term`; they print nothing themselves. Where a release's state matters,
they take `stateful` (the model names whose versions read release state): a release's
state is {model: `core.release_state.model_state_key(model, version)`} of those models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from rich.table import Table
from sqlalchemy import Engine

from core.ledger import (
    ENVIRONMENTS,
    EventRecord,
    ReleaseRecord,
    RolloutRecord,
    active_rollouts,
    current_release,
    diff_releases,
    last_figures,
)
from core.release_state import model_state_key

IDENTIFIER_COLUMNS = frozenset({"#", "tag", "image", "code", "model", "champion", "candidate"})
"""Columns whose values other commands take as input: drawn whole, never wrapped or cut."""


def fmt_time(ts: datetime | None) -> str:
    """`YYYY-MM-DD HH:MM:SS` (times are UTC), or `-`."""
    return f"{ts:%Y-%m-%d %H:%M:%S}" if ts else "-"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_figures(event: EventRecord | None, width: int = 70) -> str:
    """`kind: k=v, k=v` of an event's figures, cut to `width` characters."""
    if event is None or not event.figures:
        return "-"
    text = f"{event.kind}: " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in event.figures.items())
    return text if len(text) <= width else text[: width - 1] + "…"


# (label, figure of each arm, how it is shown) in a controller event's gate summary
_ARM_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("n", "n", "{:d}"),
    ("err", "error_rate", "{:.1%}"),
    ("p95", "p95_ms", "{:.3g} ms"),
    ("thumbs-down", "negative_feedback_rate", "{:.1%}"),
    ("reform", "reformulation_rate", "{:.1%}"),
    ("hand-off", "handoff_rate", "{:.1%}"),
    ("abandon", "abandonment_rate", "{:.1%}"),
)


def _arm_value(arm: Mapping[str, Any], key: str, shown: str) -> str:
    value = arm.get(key)
    return "-" if value is None else shown.format(value)


def gate_summary(event: EventRecord | None) -> str:
    """A controller event's figures as an operator reads them: `kind: figure cand/champ`
    for every gate figure (user behaviour included), then the breaches; other events'
    figures as `format_figures` shows them."""
    figures = (event.figures or {}) if event is not None else {}
    arms, verdict = figures.get("figures"), figures.get("verdict")
    if event is None or not isinstance(arms, Mapping) or not isinstance(verdict, Mapping):
        return format_figures(event)
    cand, champ = arms.get("candidate", {}), arms.get("champion", {})
    parts = [
        f"{label} {_arm_value(cand, key, shown)}/{_arm_value(champ, key, shown)}"
        for label, key, shown in _ARM_FIGURES
    ]
    breaches = [name for name, test in verdict.get("tests", {}).items() if test.get("reject")]
    return (
        f"{event.kind} (candidate/champion): "
        + ", ".join(parts)
        + f"; breaches: {', '.join(breaches) or 'none'}"
    )


def stage_text(rollout: RolloutRecord) -> str:
    """`shadow` for a shadow rollout (stage -1), else `step k` (one-based, as `sml status`
    and `sml rollout set-stage` count)."""
    return "shadow" if rollout.stage_index < 0 else f"step {rollout.stage_index + 1}"


def also_in(env: str, releases: Mapping[str, ReleaseRecord | None]) -> list[str]:
    """The other envs whose current release runs exactly the model versions `env`'s does
    (where a release is: `v0.1.0-...v2` in stg and prd)."""
    mine = releases.get(env)
    if mine is None:
        return []
    return [
        other
        for other, theirs in releases.items()
        if other != env and theirs is not None and theirs.model_versions == mine.model_versions
    ]


def state_keys(release: ReleaseRecord, stateful: Collection[str]) -> dict[str, str]:
    """{model: state key} of the release's models that read state."""
    return {
        name: model_state_key(name, version)
        for name, version in sorted(release.model_versions.items())
        if name in stateful
    }


def state_text(release: ReleaseRecord, stateful: Collection[str]) -> str:
    """`model:key, ...` of a release's state, or `-` when no model of it reads state."""
    keys = state_keys(release, stateful)
    return ", ".join(f"{name}:{key}" for name, key in keys.items()) or "-"


def versions_text(rollout: RolloutRecord) -> str:
    """`model vCandidate vs vChampion` for every model of a rollout, lead first (a bundle's
    members joined by `+`)."""
    champions = rollout.champion_versions
    return " + ".join(
        f"{name} v{candidate} vs v{champions[name]}"
        for name, candidate in rollout.candidate_versions.items()
    )


def _rollout_cell(r: RolloutRecord, name: str) -> str:
    """`#id`, with the bundle's lead named on every model of a bundle."""
    if not r.bundle:
        return f"#{r.id}"
    return f"#{r.id} bundle (lead)" if name == r.model_name else f"#{r.id} bundle of {r.model_name}"


def _model_row(
    name: str, release: ReleaseRecord | None, r: RolloutRecord | None, stateful: Collection[str]
) -> list[str]:
    """The model's cells of a status row: champion, candidate, state, rollout, status,
    stage, percent (the gate figures are added by the caller)."""
    champion = release.model_versions.get(name, "-") if release else "-"
    if r is not None:
        champion = r.champion_versions[name]
    state = model_state_key(name, champion) if name in stateful and champion != "-" else "-"
    return [
        name,
        champion,
        r.candidate_versions[name] if r else "-",
        state,
        _rollout_cell(r, name) if r else "-",
        r.status if r else "serving",
        stage_text(r) if r else "-",
        f"{r.percent:g}%" if r else "-",
    ]


def status_table(
    engine: Engine, envs: tuple[str, ...] = ENVIRONMENTS, stateful: Collection[str] = ()
) -> Table:
    """Per env and model: release tag, the other envs running the same versions, champion,
    candidate (every model of a bundle, each naming the bundle's rollout), the champion's
    state key (models in `stateful`), status, stage, percent, gates."""
    table = Table(title="status", show_lines=False)
    for column in (
        "env", "release", "also in", "model", "champion", "candidate", "state", "rollout",
        "status",
    ):  # fmt: skip
        table.add_column(column)
    table.add_column("stage", justify="right")
    table.add_column("percent", justify="right")
    table.add_column("last gate figures", overflow="fold")
    releases = {env: current_release(engine, env) for env in ENVIRONMENTS}
    for env in envs:
        release = releases[env]
        active = active_rollouts(engine, env)
        rollouts = {name: r for r in active for name in r.candidate_versions}
        figures = last_figures(engine, [r.id for r in active])
        models = sorted(set(release.model_versions if release else {}) | set(rollouts))
        if not models:
            table.add_row(env, "(nothing released)", *["-"] * 10)
            continue
        where = ", ".join(also_in(env, releases)) or "-"
        for i, name in enumerate(models):
            r = rollouts.get(name)
            table.add_row(
                env if i == 0 else "",
                (release.tag if release else "-") if i == 0 else "",
                where if i == 0 else "",
                *_model_row(name, release, r, stateful),
                gate_summary(figures.get(r.id)) if r else "-",
            )
    return table


def models_text(release: ReleaseRecord) -> str:
    """`name vN, name vM` of a release, sorted by name."""
    return ", ".join(f"{n} v{v}" for n, v in sorted(release.model_versions.items()))


def history_table(
    releases: list[ReleaseRecord],
    title: str,
    highlight: int | None = None,
    stateful: Collection[str] = (),
) -> Table:
    """Releases newest first: time, tag, models, state keys (of the models in
    `stateful`), image, code, actor, reason."""
    table = Table(title=title)
    for column in ("#", "time (UTC)", "tag", "models", "state", "image", "code", "actor"):
        # identifiers are never cut (print through cli.fit.Fitted to keep them whole)
        table.add_column(column, no_wrap=column in IDENTIFIER_COLUMNS)
    table.add_column("reason", overflow="fold")
    for r in releases:
        style = "bold green" if r.id == highlight else None
        table.add_row(
            str(r.id),
            fmt_time(r.created_at),
            r.tag,
            models_text(r),
            state_text(r, stateful),
            r.image_version,
            r.code_version,
            r.actor,
            r.reason or "",
            style=style,
        )
    return table


def diff_table(a: ReleaseRecord, b: ReleaseRecord, stateful: Collection[str] = ()) -> Table:
    """What differs between two releases, row by row: code, image, each model, and the
    release state of each model in `stateful` (its key changes with its version)."""
    diff = diff_releases(a, b)
    table = Table(title=f"{a.env}#{a.id} {a.tag}  ->  {b.env}#{b.id} {b.tag}")
    table.add_column("what")
    table.add_column(a.tag, no_wrap=True)
    table.add_column(b.tag, no_wrap=True)
    table.add_column("change")
    table.add_row("code", a.code_version, b.code_version, "changed" if diff.code else "same")
    table.add_row("image", a.image_version, b.image_version, "changed" if diff.image else "same")
    for name, (old, new) in diff.changed.items():
        table.add_row(name, f"v{old}", f"v{new}", "changed", style="yellow")
    for name, version in diff.added.items():
        table.add_row(name, "-", f"v{version}", "added", style="green")
    for name, version in diff.removed.items():
        table.add_row(name, f"v{version}", "-", "removed", style="red")
    for name, version in diff.unchanged.items():
        note = "same version, other artifact" if name in diff.digests_changed else "same"
        table.add_row(name, f"v{version}", f"v{version}", note)
    keys_a, keys_b = state_keys(a, stateful), state_keys(b, stateful)
    for name in sorted(set(keys_a) | set(keys_b)):
        old_key, new_key = keys_a.get(name, "-"), keys_b.get(name, "-")
        change = "same" if old_key == new_key else "changed"
        table.add_row(f"state {name}", old_key, new_key, change)
    return table


def _step_text(stage_index: int | None) -> str:
    if stage_index is None:
        return "-"
    return "shadow" if stage_index < 0 else f"step {stage_index + 1}"


def events_table(events: list[EventRecord], title: str) -> Table:
    """A rollout's events in order: who did what, why, on which figures."""
    table = Table(title=title)
    for column in ("seq", "time (UTC)", "kind", "actor", "status", "stage", "percent"):
        table.add_column(column)
    table.add_column("reason", overflow="fold")
    table.add_column("figures", overflow="fold")
    for e in events:
        table.add_row(
            str(e.seq),
            fmt_time(e.ts),
            e.kind,
            e.actor,
            f"{e.from_status or '-'} -> {e.to_status or '-'}",
            _step_text(e.stage_index),
            "-" if e.percent is None else f"{e.percent:g}%",
            e.reason or "",
            format_figures(e, width=120) if e.figures else "",
        )
    return table


def rollouts_table(rollouts: list[RolloutRecord], title: str) -> Table:
    """Rollouts, newest first."""
    table = Table(title=title)
    for column in ("#", "env", "model", "champion", "candidate", "status", "stage", "percent"):
        table.add_column(column, no_wrap=column in IDENTIFIER_COLUMNS)
    table.add_column("started (UTC)")
    table.add_column("ended (UTC)")
    for r in rollouts:
        members = " + ".join(r.candidate_versions)
        table.add_row(
            str(r.id),
            r.env,
            members,
            " + ".join(f"v{v}" for v in r.champion_versions.values()),
            " + ".join(f"v{v}" for v in r.candidate_versions.values()),
            r.status,
            stage_text(r),
            f"{r.percent:g}%",
            fmt_time(r.created_at),
            fmt_time(r.ended_at),
        )
    return table
