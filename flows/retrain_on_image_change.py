"""`retrain-on-image-change`: make sure every model has a version trained on this image,
with its role in this environment.

Scheduled, and triggered by an `image.published` event. Versions are shared by every
environment (one retrain per image); roles are per environment (`<env>-champion`,
`<env>-candidate`). For each model family in Settings.MODELS, under the model's lock
(`core.model_lock`: a concurrent retrain or train of the model waits, then re-plans):

- no release of the model in this env: its first release, of the image's existing version
  (trained by another env's run, or left by an interrupted one) or of a new training;
- a release: judge its champion under this image (core.compat, a `compat.<image>` tag),
  and open the image's version as this env's candidate (training one if none exists).

A version of a family that reads release state (the FAQ retriever's answer index) gets
its state built and published (the `build_release_state` subflow) before its role: a
version without its state takes no traffic.

A first champion is ledger first: the release (the truth), then `<env>-champion` (the
mirror); every run ends by making the model's aliases mirror the ledger (core.repair), so a
run that crashed anywhere is finished by the next one. The state database is opened (and
checked for migrations) before anything touches MLflow. The decision is
`core.retrain.plan_retrain` (pure, unit-tested).
"""

from __future__ import annotations

from prefect import flow

from config import get_settings
from core.db import state_database
from core.reporting import retrain_report_markdown, retrain_summary
from core.retrain import RetrainOutcome, check_image
from flows.build_release_state import build_release_state
from flows.train import train
from models import get_family
from tasks.registry import open_registry
from tasks.reporting import publish_markdown
from tasks.retrain import give_role, judge_champion, mirror_ledger, model_lock_held, plan_model

__all__ = ["RetrainOutcome", "retrain_on_image_change"]


@flow(name="retrain-on-image-change")
def retrain_on_image_change(image_version: str | None = None) -> list[RetrainOutcome]:
    """Give every model a version for the running image and its role in this environment.

    Args:
        image_version: the image an event announced; must be the running IMAGE_VERSION
            (a model must be trained inside the image that will serve it).

    Raises:
        ConflictError: `image_version` differs from the running IMAGE_VERSION.
        SmlError: the state database was never migrated (`sml db upgrade`); nothing was
            written to MLflow.
        ModelLockTimeout: another run kept a model's lock for too long.
        DataError: a model's training data is unusable (nothing is registered for it).
    """
    settings = get_settings()
    image = check_image(settings.IMAGE_VERSION, image_version)
    # the state database first: an unmigrated one stops the run before MLflow is touched
    with state_database(settings.database_url, wait_seconds=10) as engine:
        registry = open_registry(settings)
        outcomes: list[RetrainOutcome] = []
        for model_name in settings.MODELS:
            # each model under its lock: a concurrent retrain or train waits, then re-plans
            with model_lock_held(engine, model_name):
                # Extract: the env's release, the versions this image already has
                plan = plan_model(engine, registry, settings, model_name, image)
                if plan.up_to_date:
                    outcome = RetrainOutcome.nothing_to_do(plan)
                else:
                    # Transform: judge the champion here; train unless a version exists
                    verdict = judge_champion(registry, plan)
                    version = plan.resume_version or train(model_name=model_name).version
                    # a stateful version gets its state first: no role (no traffic) without it
                    if get_family(model_name).state:
                        build_release_state(model_name=model_name, version=version)
                    # Load: candidate, or the first release then the champion alias
                    outcome = give_role(engine, registry, settings, plan, version, verdict)
                mirror_ledger(engine, registry, settings, model_name)
            outcomes.append(outcome)

    # Report
    publish_markdown(
        key="retrain-on-image-change",
        markdown=retrain_report_markdown(image, outcomes),
        description=retrain_summary(image, outcomes),
    )
    return outcomes
