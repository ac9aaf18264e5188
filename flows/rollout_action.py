"""`rollout-action`: start, pause, resume, abort, set the stage of, promote or roll back a
rollout from the Prefect UI (a form built from `RolloutActionRequest`) or a terminal:

    prefect deployment run 'rollout-action/prd' \
        --params '{"request": {"action": "pause", "rollout_id": 7,
                               "actor": "ana", "reason": "ticket 42"}}'
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field, model_validator

from config import get_settings
from core.ledger import RolloutRecord
from tasks.ledger import (
    abort_task,
    open_registry,
    open_state_database,
    pause_task,
    promote_task,
    report_task,
    resume_task,
    rollback_rollout_task,
    set_stage_task,
    start_rollout_task,
)

Action = Literal["start", "pause", "resume", "abort", "set_stage", "promote", "rollback"]


class RolloutActionRequest(BaseModel):
    """One manual action on a rollout; `start` names env, model and version, the others a
    rollout id (see `sml status`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action = Field(description="what to do")
    actor: str = Field(min_length=1, max_length=128, description="who does it")
    reason: str = Field(min_length=1, description="why (kept in the ledger)")
    rollout_id: int | None = Field(None, ge=1, description="the rollout (all but start)")
    env: Literal["dev", "stg", "prd"] | None = Field(None, description="start: environment")
    model_name: str | None = Field(None, min_length=1, description="start: registered model")
    candidate_version: str | None = Field(
        None, pattern=r"^\d+$", description="start: registered version to roll out"
    )
    mode: Literal["shadow", "canary"] = Field("canary", description="start: first phase")
    stage_index: int | None = Field(None, ge=0, description="set_stage: 0 = first stage")

    @model_validator(mode="after")
    def _needs(self) -> RolloutActionRequest:
        if self.action == "start":
            missing = [
                name
                for name in ("env", "model_name", "candidate_version")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"start needs {', '.join(missing)}")
        elif self.rollout_id is None:
            raise ValueError(f"{self.action} needs rollout_id")
        if self.action == "set_stage" and self.stage_index is None:
            raise ValueError("set_stage needs stage_index")
        return self


@flow(name="rollout-action")
def rollout_action(request: RolloutActionRequest) -> RolloutRecord:
    """Apply one manual action to a rollout through the ledger; leave a report."""
    logger = get_run_logger()
    settings = get_settings()
    # Extract
    engine = open_state_database(settings)
    needs_registry = request.action in ("start", "promote", "rollback")
    registry = open_registry(settings) if needs_registry else None
    # Load
    rid = request.rollout_id or 0
    who = {"actor": request.actor, "reason": request.reason}
    match request.action:
        case "start":
            record = start_rollout_task(
                engine,
                registry,
                env=request.env,
                model_name=request.model_name,
                candidate_version=request.candidate_version,
                stages=settings.CANARY_STAGES,
                mode=request.mode,
                **who,
            )
        case "pause":
            record = pause_task(engine, rid, **who)
        case "resume":
            record = resume_task(engine, rid, **who)
        case "abort":
            record = abort_task(engine, rid, **who)
        case "set_stage":
            record = set_stage_task(engine, rid, request.stage_index or 0, **who)
        case "rollback":
            record = rollback_rollout_task(engine, rid, registry=registry, **who)
        case "promote":
            record, release = promote_task(
                engine,
                rid,
                registry=registry,
                code_version=settings.CODE_VERSION,
                image_version=settings.IMAGE_VERSION,
                **who,
            )
            logger.info("%s release %s", release.env, release.tag)
    # Report
    summary = (
        f"rollout #{record.id} {request.action}: {record.model_name} "
        f"v{record.candidate_version} vs v{record.champion_version} in {record.env}: "
        f"{record.status}, stage {record.stage_index}, {record.percent:g}%"
    )
    logger.info(summary)
    report_task(
        key=f"rollout-{record.id}-{request.action.replace('_', '-')}",
        markdown=f"# rollout-action\n\n{summary}\n\nby {request.actor}: {request.reason}\n",
        description=summary,
    )
    engine.dispose()
    return record
