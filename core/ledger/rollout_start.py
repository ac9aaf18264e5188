"""Opening a rollout: check the stages, find the champion, insert the row and its first event.

A rollout is the only row of its (env, model) that is active: the check here gives a
readable refusal, and the database's partial unique index settles two starters racing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import ACTIVE_STATUSES, Rollout, utcnow
from core.errors import ConflictError, DataError, NotFoundError
from core.ledger.records import SHADOW_STAGE, AliasRegistry, RolloutMode, RolloutRecord
from core.ledger.releases import _current_row, check_env
from core.ledger.rollout_rows import append_event
from core.ledger.transactions import lock_env, write_transaction


def check_stages(stages: Sequence[float]) -> list[float]:
    """Return the stage percents if they increase strictly within (0, 100].

    Raises:
        DataError: naming what is wrong with them.
    """
    percents = [float(p) for p in stages]
    if not percents:
        raise DataError("stages: expected at least one percent, like 1,10,25,50,100")
    if percents[0] <= 0 or percents[-1] > 100:
        raise DataError(f"stages: expected percents in (0, 100], got {percents}")
    if any(b <= a for a, b in pairwise(percents)):
        raise DataError(f"stages: expected strictly increasing percents, got {percents}")
    return percents


def _champion_against(
    session: Session, env: str, model_name: str, candidate: str, named: str | None
) -> str:
    """The champion `candidate` is compared with: `named`, else the model's current version.

    Raises:
        NotFoundError: none named and the model is in no release of `env`.
        ConflictError: the candidate is the champion.
    """
    found = named
    if found is None:
        release = _current_row(session, env)
        found = release.model_versions.get(model_name) if release else None
    if found is None:
        raise NotFoundError(
            f"no champion of {model_name!r} in {env}: it is in no release there yet "
            "(record a release first, or name the champion version)"
        )
    if str(found) == candidate:
        raise ConflictError(f"{model_name} v{candidate} is already the champion in {env}")
    return str(found)


def _refuse_second_active(session: Session, env: str, model_name: str) -> None:
    """Raises ConflictError if a rollout of the model is already active in `env`."""
    active = session.scalars(
        select(Rollout).where(
            Rollout.env == env,
            Rollout.model_name == model_name,
            Rollout.status.in_(ACTIVE_STATUSES),
        )
    ).first()
    if active is not None:
        raise ConflictError(
            f"rollout #{active.id} of {model_name} (v{active.candidate_version}, "
            f"{active.status} at {active.percent:g}%) is already active in {env}: "
            "promote, roll back or abort it first"
        )


def _insert_rollout(
    session: Session,
    *,
    env: str,
    model_name: str,
    champion: str,
    candidate: str,
    mode: RolloutMode,
    first_percent: float,
    now: datetime,
) -> Rollout:
    """Insert a new rollout row with a fresh salt, so it buckets a fresh set of users.

    A canary starts at stage 0 (`first_percent`), a shadow rollout at stage -1 (0 percent).

    Raises:
        ConflictError: another rollout of the model became active at the same moment (the
            database's partial unique index settles the race between two starters).
    """
    canary = mode == "canary"
    row = Rollout(
        env=env,
        model_name=model_name,
        champion_version=champion,
        candidate_version=candidate,
        salt=secrets.token_hex(8),
        stage_index=0 if canary else SHADOW_STAGE,
        percent=first_percent if canary else 0.0,
        status=mode,
        stage_started_at=now,
        created_at=now,
        updated_at=now,
        event_seq=0,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            f"another rollout of {row.model_name} became active in {row.env} at the same moment"
        ) from exc
    return row


def start_rollout(  # noqa: PLR0913 (keyword-only: each names a fact the ledger records)
    engine: Engine,
    *,
    env: str,
    model_name: str,
    candidate_version: str,
    champion_version: str | None = None,
    stages: Sequence[float],
    mode: RolloutMode = "canary",
    actor: str,
    reason: str,
    registry: AliasRegistry | None = None,
    forced: bool = False,
) -> RolloutRecord:
    """Open a rollout of `candidate_version` against the champion in `env`.

    The champion defaults to the model's version in the env's current release. A canary
    starts at stage 0 (`stages[0]` percent); a shadow rollout at stage -1 (0 percent). Each
    rollout draws a fresh random salt, so it buckets a fresh set of users. With `registry`,
    the candidate version must exist there. `forced` records that the rollout was opened
    past a refusal (`core.promotion`); the release its promotion records is forced too.

    Raises:
        NotFoundError: unknown env, no champion to compare against, or (with a registry) a
            candidate version that is not registered.
        ConflictError: another rollout of the model is active in the env, or the candidate
            is the champion.
        DataError: malformed stages or mode.
    """
    check_env(env)
    percents = check_stages(stages)
    if mode not in ("shadow", "canary"):
        raise DataError(f"mode: expected shadow or canary, got {mode!r}")
    candidate_version = str(candidate_version)
    if registry is not None:
        registry.get_version(model_name, candidate_version)
    with write_transaction(engine) as session:
        lock_env(session, env)
        champion = _champion_against(session, env, model_name, candidate_version, champion_version)
        _refuse_second_active(session, env, model_name)
        now = utcnow()
        row = _insert_rollout(
            session,
            env=env,
            model_name=model_name,
            champion=champion,
            candidate=candidate_version,
            mode=mode,
            first_percent=percents[0],
            now=now,
        )
        row.forced = forced
        start = {"stages": percents, "mode": mode} | ({"forced": True} if forced else {})
        append_event(
            session, row, kind="start", actor=actor, reason=reason, from_status=None,
            figures=start, ts=now,
        )  # fmt: skip
        return RolloutRecord.from_row(row)
