"""The job variables of a flow run that must run on a given runtime image.

An `image.published` event names a new image version; the retrain it starts must run in a
pod of that image (a pickle is only trustworthy under the image it was made in). Used by
the relay flow `flows/image_published.py` (why a relay: its docstring).
"""

from __future__ import annotations

from typing import Any


def image_job_variables(image_version: str, image_repository: str | None) -> dict[str, Any]:
    """The job variables of a flow run that must run on `image_version`.

    `image_repository` (e.g. `registry.example.com/stateful-ml`) sets the container image of
    a Kubernetes pool; None for a process pool, which cannot change its code and only gets
    `IMAGE_VERSION` (so a laptop follows the same path as a cluster).

    Raises:
        ValueError: `image_version` is empty (an image tag must name a version).
    """
    if not image_version.strip():
        raise ValueError("image.published without a payload image_version: nothing to run on")
    job_variables: dict[str, Any] = {"env": {"IMAGE_VERSION": image_version}}
    if image_repository:
        job_variables["image"] = f"{image_repository}:{image_version}"
    return job_variables
