# The one command vocabulary of Stateful ML: CI and the README call these targets.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export DO_NOT_TRACK ?= 1

.PHONY: setup demo test term lint bench data migrate up down deploy worker clean

# make deploy [ENV=local|stg|prd] [IMAGE_VERSION=...]; make up [PREFECT_PORT=4200] [MLFLOW_PORT=5000]
ENV ?= local
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
PACKAGES := cli config core flows models ops serving tasks

setup: ## install uv if absent, then the locked environment, compiled to bytecode
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet
	@# Compiled once per lock: where PYTHONDONTWRITEBYTECODE is set (these machines), no
	@# .pyc is ever written, and every process (each `sml serve`, flow run, Prefect server,
	@# test subprocess) compiled every library it imports from source: 10 s -> 4 s for
	@# sklearn, mlflow, prefect, pandas (docs/benchmarks.md). Stale .pyc of edited sources
	@# are ignored by Python (mtime check).
	@[ .venv/.bytecode -nt uv.lock ] || { $(UV) sync --frozen --quiet --compile-bytecode \
		&& $(UV) run python -m compileall -q -j 0 $(PACKAGES) *.py >/dev/null \
		&& { [ ! -d .venv ] || touch .venv/.bytecode; }; }

demo: setup ## the whole lifecycle on embedded defaults
	$(UV) run sml demo

test: lint ## lint (ruff, format, mypy), then pytest, one worker per usable core (TEST_WORKERS=1: serial)
	$(UV) run pytest -n $(TEST_WORKERS) --dist load

term: setup ## an IPython shell with settings, engine, registry and ledger loaded
	$(UV) run sml term

lint: setup ## ruff (rules + complexity), ruff format, mypy over every package: each one fails
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

bench: setup ## benchmarks, each printing a ratio against a baseline measured in the same run
	@for b in bench/*.py; do echo "== $$b"; $(UV) run python $$b || exit 1; done

migrate: setup
	$(UV) run sml db upgrade

data: setup
	$(UV) run python create_data.py

up: setup ## a local Prefect server, MLflow server and process worker in the background (.local/up/)
	$(UV) run python -m ops.local_stack up

down: ## stop what `make up` started
	$(UV) run python -m ops.local_stack down

deploy: setup ## ENV's deployments (default local) to PREFECT_API_URL, creating the work pool if absent
	$(UV) run python -m ops.deploy --env $(ENV)

worker: setup ## a local process worker for the `local` deployments
	$(UV) run prefect work-pool create local --type process --overwrite
	$(UV) run prefect worker start --pool local --type process

clean:
	rm -rf .local
