# syntax=docker/dockerfile:1
# The Stateful ML runtime image: router (default command), Prefect worker, flow runs, term,
# and the platform's Prefect and MLflow servers (k8s/platform).
#
#   docker build \
#     --build-arg PYTHON_DIGEST=sha256:<digest of python:3.11-slim, see docs/deploy.md> \
#     --build-arg IMAGE_VERSION=0.1.0 --build-arg CODE_VERSION=$(git describe --always) \
#     -t registry.example.com/stateful-ml:0.1.0 .
#   docker run -p 8080:8080 registry.example.com/stateful-ml:0.1.0     # serves on :8080
#
# The base image is named by digest, never by a floating tag: the project's premise is that
# the image identity decides whether a model must be retrained. PYTHON_DIGEST has no
# default on purpose: the build fails without one ("invalid reference format") rather
# than take whatever python:3.11-slim points at today. docs/deploy.md says how to read it.
# IMAGE_VERSION is baked in (ARG -> ENV): retrain-on-image-change compares it with the
# image each model version was trained on. Settings come from env (ConfigMap + Secret);
# without any, the embedded defaults below serve from SQLite under LOCAL_DIR.
ARG PYTHON_DIGEST

# --- builder: the locked environment, built with uv -------------------------------------
FROM python:3.11-slim@${PYTHON_DIGEST} AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# Dependencies first (cached until uv.lock changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# The code the processes run, named one by one: no tests, benchmarks or docs in the image.
COPY config ./config
COPY core ./core
COPY models ./models
COPY tasks ./tasks
COPY flows ./flows
COPY serving ./serving
COPY cli ./cli
COPY ops ./ops
COPY k8s ./k8s
COPY prefect.yaml create_data.py create_secrets.py ./
RUN uv sync --frozen --no-dev

# --- runtime: slim, no compiler, no uv, a non-root user ---------------------------------
FROM python:3.11-slim@${PYTHON_DIGEST} AS runtime

ARG PYTHON_DIGEST
LABEL org.opencontainers.image.title="stateful-ml" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim" \
      org.opencontainers.image.base.digest="${PYTHON_DIGEST}"

RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --home-dir /home/app --create-home app \
    && mkdir -p /var/lib/stateful-ml \
    && chown app:app /var/lib/stateful-ml

# Defaults that let `docker run -p 8080:8080 IMAGE` serve with no ConfigMap: listen on
# every interface; embedded state goes to /var/lib/stateful-ml, owned by the user (an
# emptyDir in Kubernetes, where the root filesystem is read-only). /app/.local points
# there too, so the settings' relative SQLite defaults (.local/state.db, ...) land in it
# while still reading as the dev defaults that stg and prd refuse (config/settings.py).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROUTER_HOST=0.0.0.0 \
    ROUTER_PORT=8080 \
    LOCAL_DIR=/var/lib/stateful-ml \
    MODEL_CACHE_DIR=/var/lib/stateful-ml/models \
    TRAFFIC_SPILL_DIR=/var/lib/stateful-ml/spill \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
RUN ln -s /var/lib/stateful-ml /app/.local

# Last, so a new version does not rebuild the layers above.
ARG CODE_VERSION=
ENV CODE_VERSION=${CODE_VERSION}
ARG IMAGE_VERSION=dev
ENV IMAGE_VERSION=${IMAGE_VERSION}

USER 10001:10001
VOLUME ["/var/lib/stateful-ml"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('ROUTER_PORT', '8080')}/health\", timeout=4)"]
CMD ["sml", "serve"]
