"""Prefect tasks of the rollout controller: each wraps one call of `core.controller`.

Both retry only on transient database/MLflow errors: a tick is idempotent (every change
is a compare-and-set ledger transaction), and a refusal of the ledger (`ConflictError`,
a stale plan) is an answer (`conflict`), never retried.

After the ledger committed, every event a tick wrote is announced (`announce`): a Prefect
event `stateful-ml.rollout.<kind>` each (core.alerts builds it), and rollbacks and
promotions also go to ALERT_WEBHOOK_URL in the background (core.notify). Announcing never
fails the task: a tick already done is not retried for a lost notification.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prefect import task
from prefect.events import emit_event
from sqlalchemy import Engine

from config import Settings
from core import alerts, controller
from core.controller import ApprovalRequest, CanaryPolicy, NoAnswer, OperatorAnswer, TickOutcome
from core.ledger import AliasRegistry, get_rollout
from core.notify import post_in_background
from models import stateful_models
from tasks.policies import IO_TASK

log = logging.getLogger(__name__)


def announce(engine: Engine, seqs: Mapping[int, int], webhook: str | None) -> list[alerts.Alert]:
    """Emit the Prefect event of every rollout event written after `seqs` ({rollout id:
    seq}); POST rollbacks and promotions to `webhook` (if any) without waiting.

    Never raises: the transitions are committed; a lost notification is logged.
    """
    try:
        found = alerts.events_since(engine, seqs)
    except Exception:
        log.exception("rollout alerts: could not read the new events")
        return []
    for alert in found:
        send(alert, webhook)
    return found


def send(alert: alerts.Alert, webhook: str | None) -> None:
    """Emit `alert` as a Prefect event; POST it to `webhook` (if any, and if it pages)
    without waiting. Never raises: a lost notification is logged."""
    try:
        emit_event(**alert.emit_kwargs())
    except Exception:
        log.exception("alert %s: could not emit the Prefect event", alert.event)
    if alert.pages and webhook:
        post_in_background(webhook, alert.webhook_body())


def webhook_url(settings: Settings) -> str | None:
    """ALERT_WEBHOOK_URL's value (a secret: never log it), or None."""
    url = settings.ALERT_WEBHOOK_URL
    return url.get_secret_value() if url is not None else None


@task(name="controller-reconcile", **IO_TASK)
def reconcile(
    engine: Engine,
    registry: AliasRegistry,
    policy: CanaryPolicy,
    env: str | None,
    settings: Settings,
) -> list[TickOutcome]:
    """`core.controller.reconcile`: one tick over the active rollouts of `env` (or all);
    a stage that needs an operator comes back `awaiting_approval` with its request.
    Forward moves wait for the deploy windows (DEPLOY_*); the tick's transitions are
    announced (`announce`)."""
    seqs = alerts.marks(engine, env)
    outcomes = controller.reconcile(
        engine,
        policy,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
        env=env,
        registry=registry,
        stateful=stateful_models(),
        windows=settings.deploy_windows,
    )
    announce(engine, seqs, webhook_url(settings))
    return outcomes


@task(name="controller-answer-approval", **IO_TASK)
def answer_approval(
    engine: Engine,
    registry: AliasRegistry,
    request: ApprovalRequest,
    answer: OperatorAnswer | NoAnswer,
    settings: Settings,
) -> TickOutcome:
    """`core.controller.answer_approval`: record the operator's answer and carry it out;
    the transitions it made are announced (`announce`)."""
    seqs = {request.rollout_id: get_rollout(engine, request.rollout_id).event_seq}
    outcome = controller.answer_approval(
        engine,
        request,
        answer,
        registry=registry,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
    )
    announce(engine, seqs, webhook_url(settings))
    return outcome
