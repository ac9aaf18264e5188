"""`retrain-on-image-change`: make sure every model has a version trained on this image.

Scheduled, and triggered by an `image.published` event. For each model family in
Settings.MODELS, if no registered version was trained on the running IMAGE_VERSION:
judge the champion under this image (core.compat, recorded as a `compat.<image>` tag),
retrain (the `train` flow), and open the new version as `candidate`. A model with no
champion yet gets its first version as `champion` and a first release in the ledger.
Idempotent: a second run on the same image does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect import flow, get_run_logger

from config import get_settings
from core.errors import ConflictError
from core.registry import ModelVersionInfo
from flows.train import train
from tasks.ledger import open_state_database
from tasks.registry import (
    check_and_record_compat,
    list_image_versions,
    open_registry,
    record_first_release,
    set_alias,
    version_by_alias,
)
from tasks.training import publish_markdown

ACTOR = "retrain_on_image_change"


@dataclass(frozen=True)
class RetrainOutcome:
    """What the flow did for one model."""

    model: str
    action: Literal["up_to_date", "candidate", "first_champion"]
    version: str
    champion_version: str | None = None
    champion_verdict: str | None = None
    reason: str = ""


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
    logger = get_run_logger()
    settings = get_settings()
    image = settings.IMAGE_VERSION
    if image_version is not None and image_version != image:
        raise ConflictError(
            f"asked to retrain for image {image_version!r} but this run is on image {image!r}: "
            "run the flow in the new image"
        )

    # Extract
    registry = open_registry(settings)
    outcomes: list[RetrainOutcome] = []
    for model_name in settings.MODELS:
        existing = list_image_versions(registry, model_name, image)
        champion = version_by_alias(registry, model_name, "champion")
        unfinished = (
            existing[-1] if existing and _never_given_a_role(existing[-1], champion) else None
        )
        if existing and unfinished is None:
            latest = existing[-1]
            logger.info("%s already has v%s for image %s", model_name, latest.version, image)
            outcomes.append(
                RetrainOutcome(model_name, "up_to_date", latest.version, reason="already trained")
            )
            continue

        # Transform
        verdict = None
        if champion is not None:
            report = check_and_record_compat(registry, model_name, champion.version, image)
            verdict = report.verdict
            logger.info(
                "champion %s v%s under %s: %s (%s)",
                model_name,
                champion.version,
                image,
                report.verdict,
                report.reason,
            )
        if unfinished is not None:
            # an earlier run registered this version, then stopped before giving it its role
            logger.warning(
                "%s v%s was registered for image %s but never given a role: resuming",
                model_name,
                unfinished.version,
                image,
            )
            info = unfinished
        else:
            info = train(model_name=model_name)

        # Load
        if champion is not None:
            info = set_alias(registry, model_name, "candidate", info.version)
            outcomes.append(
                RetrainOutcome(
                    model_name,
                    "candidate",
                    info.version,
                    champion.version,
                    verdict,
                    f"champion v{champion.version} is {verdict} under {image}",
                )
            )
        else:
            info = set_alias(registry, model_name, "champion", info.version)
            engine = open_state_database(settings)
            release = record_first_release(engine, settings, info, ACTOR)
            engine.dispose()
            outcomes.append(
                RetrainOutcome(
                    model_name,
                    "first_champion",
                    info.version,
                    reason=f"no champion yet: first release {release.tag}",
                )
            )

    # Report
    publish_markdown(
        key="retrain-on-image-change",
        markdown=retrain_report_markdown(image, outcomes),
        description=f"image {image}: "
        + ", ".join(f"{o.model} {o.action} v{o.version}" for o in outcomes),
    )
    return outcomes


def _never_given_a_role(version: ModelVersionInfo, champion: ModelVersionInfo | None) -> bool:
    """True for a version an interrupted run left behind: no alias, never rolled back, and
    newer than the champion (so it never served)."""
    if version.aliases or "rolled_back_reason" in version.tags:
        return False
    return champion is None or int(version.version) > int(champion.version)


def retrain_report_markdown(image: str, outcomes: list[RetrainOutcome]) -> str:
    """A markdown table of what the run did per model."""
    lines = [
        f"# retrain on image `{image}`",
        "",
        "| model | action | version | champion | champion verdict | why |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.model} | {o.action} | v{o.version} | "
            f"{'v' + o.champion_version if o.champion_version else '-'} | "
            f"{o.champion_verdict or '-'} | {o.reason} |"
        )
    return "\n".join(lines) + "\n"
