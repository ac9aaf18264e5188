"""`image.published` -> a retrain run *on the new image*.

A deployment trigger can pass the event's values as parameters, but on Prefect 3.8.8 it
cannot set a flow run's job variables from the event: `prefect deploy` drops the
`{{ event.* }}` placeholders of a trigger's `job_variables` (only `parameters` are kept
unrendered) and the server's run-deployment action passes `job_variables` through without
rendering them. So the event triggers this small relay flow (deployments
`image-published/<env>` in prefect.yaml) with the announced `image_version`; it starts the
environment's `retrain-on-image-change` run with the job variables of that image (the
container image tag for a Kubernetes pool, `IMAGE_VERSION` in the run's environment for
every pool) and the `image_version` parameter, whose check refuses a run on any other image.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from core.image_events import image_job_variables

RETRAIN_FLOW = "retrain-on-image-change"


@flow(name="image-published")
def image_published(image_version: str, env: str, image_repository: str | None = None) -> UUID:
    """Start `retrain-on-image-change/<env>` on the published image; returns its run id.

    Args:
        image_version: the event's `payload.image_version`.
        env: the deployment name of the retrain to start (`local`, `stg`, `prd`).
        image_repository: the image repository of a Kubernetes pool; None for a process pool.

    Raises:
        ValueError: `image_version` is empty.
    """
    job_variables = image_job_variables(image_version, image_repository)
    # sync_compatible: called from a sync flow it returns the FlowRun, not a coroutine
    run = cast(
        FlowRun,
        run_deployment(
            name=f"{RETRAIN_FLOW}/{env}",
            parameters={"image_version": image_version},
            job_variables=job_variables,
            timeout=0,  # start it; the retrain's own run reports its outcome
            as_subflow=False,
            # a retried relay run must not start a second retrain
            idempotency_key=f"image-published-{flow_run.get_id()}",
        ),
    )
    get_run_logger().info(
        "started %s/%s run %s on image %s with job variables %s",
        RETRAIN_FLOW,
        env,
        run.name,
        image_version,
        job_variables,
    )
    return run.id
