"""`retrain-on-image-change`: make sure every model has a version trained on this image.

Scheduled, and triggered by an `image.published` event. For each model family in
Settings.MODELS, if no registered version was trained on the running IMAGE_VERSION:
judge the champion under this image (core.compat, recorded as a `compat.<image>` tag),
retrain (the `train` flow), and open the new version as `candidate`. A model with no
champion yet gets its first version as `champion` and a first release in the ledger.
Idempotent: a second run on the same image does nothing; a run that stopped between
registering a version and giving it its role is finished, not repeated. The decision is
`core.retrain.plan_retrain` (pure, unit-tested).
"""

from __future__ import annotations

from prefect import flow

from config import Settings, get_settings
from core.registry import ModelRegistry
from core.reporting import retrain_report_markdown, retrain_summary
from core.retrain import RetrainOutcome, check_image
from flows.train import train
from tasks.registry import open_registry
from tasks.reporting import publish_markdown
from tasks.retrain import give_role, judge_champion, plan_model

__all__ = ["RetrainOutcome", "retrain_on_image_change"]


@flow(name="retrain-on-image-change")
def retrain_on_image_change(image_version: str | None = None) -> list[RetrainOutcome]:
    """Retrain every model that has no version for the running image.

    Args:
        image_version: the image an event announced; must be the running IMAGE_VERSION
            (a model must be trained inside the image that will serve it).

    Raises:
        ConflictError: `image_version` differs from the running IMAGE_VERSION.
        DataError: a model's training data is unusable (nothing is registered for it).
    """
    settings = get_settings()
    image = check_image(settings.IMAGE_VERSION, image_version)
    registry = open_registry(settings)

    outcomes = [retrain_model(registry, settings, name, image) for name in settings.MODELS]

    # Report
    publish_markdown(
        key="retrain-on-image-change",
        markdown=retrain_report_markdown(image, outcomes),
        description=retrain_summary(image, outcomes),
    )
    return outcomes


def retrain_model(
    registry: ModelRegistry, settings: Settings, model_name: str, image: str
) -> RetrainOutcome:
    """One model's steps inside the flow run: carry out its `plan_retrain` plan."""
    # Extract: the versions this image already has, and the champion
    plan = plan_model(registry, model_name, image)
    if plan.up_to_date:
        return RetrainOutcome.nothing_to_do(plan)

    # Transform: judge the champion under this image; train unless a run left a version
    verdict = judge_champion(registry, plan)
    version = plan.resume_version or train(model_name=model_name).version

    # Load: the version becomes candidate, or the first champion with a first release
    return give_role(registry, settings, plan, version, verdict)
