# syntax=docker/dockerfile:1
# The Stateful ML runtime image: router (default command), Prefect worker, flow runs, term.
#   docker build --build-arg IMAGE_VERSION=0.1.0 --build-arg CODE_VERSION=$(git describe --always) \
#     -t registry.example.com/stateful-ml:0.1.0 .
# IMAGE_VERSION is baked in here (ARG -> ENV): retrain-on-image-change compares it with the
# image each model version was trained on. Settings come from env (ConfigMap + Secret).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

RUN pip install --no-cache-dir uv==0.13.9 \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --create-home app \
    && mkdir -p /var/lib/stateful-ml \
    && chown app:app /var/lib/stateful-ml

WORKDIR /app

# Dependencies first (cached until uv.lock changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev

# Last, so a new version does not rebuild the dependency layers.
ARG CODE_VERSION=
ENV CODE_VERSION=${CODE_VERSION}
ARG IMAGE_VERSION=dev
ENV IMAGE_VERSION=${IMAGE_VERSION}

USER 10001
EXPOSE 8080
CMD ["sml", "serve"]
