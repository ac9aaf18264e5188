"""The pre-canary load test: the candidate and the champion, each in a real router process
on loopback, under the most recent production queries at a target rate and at saturation.

- `routers`: `sml serve --pin MODEL=VERSION` subprocesses (serving/pinned.py), ready-checked;
- `client`: the async httpx load generator (open loop at a rate, closed loop at C
  connections), one clock for both models;
- `run`: the plan (Settings LOADTEST_*) and the interleaved schedule of phases;
- `stats`: percentiles, error rate, throughput;
- `gate`: the declarative gate (core/gates.py) and when the pipeline runs the test;
- `report`, `record`: markdown/table, the latency plot, the MLflow run, the ledger event;
- `compare`: all of it for one champion/candidate pair.

docs/load_test.md explains the method and the thresholds. No Prefect here: tasks/loadtest.py
and flows/load_test.py wrap these.
"""

from core.loadtest.compare import Versions, compare_versions
from core.loadtest.gate import GATE, LoadTestThresholds, load_test_due, load_test_gate
from core.loadtest.queries import recent_queries, replayable
from core.loadtest.record import EVENT_KIND, latency_plot, log_to_mlflow, record_event
from core.loadtest.report import (
    LoadTestReport,
    QuerySource,
    figures_table,
    report_markdown,
)
from core.loadtest.routers import RouterStartError, pinned_routers
from core.loadtest.run import LoadTestPlan, Measurements, run_load, schedule
from core.loadtest.stats import LoadFigures, PhaseSample, percentile, summarize

__all__ = [
    "EVENT_KIND",
    "GATE",
    "LoadFigures",
    "LoadTestPlan",
    "LoadTestReport",
    "LoadTestThresholds",
    "Measurements",
    "PhaseSample",
    "QuerySource",
    "RouterStartError",
    "Versions",
    "compare_versions",
    "figures_table",
    "latency_plot",
    "load_test_due",
    "load_test_gate",
    "log_to_mlflow",
    "percentile",
    "pinned_routers",
    "recent_queries",
    "record_event",
    "replayable",
    "report_markdown",
    "run_load",
    "schedule",
    "summarize",
]
