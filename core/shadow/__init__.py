"""Shadow evaluation: replay recent production inputs through champion and candidate.

1. `sample_requests` draws a random sample of the requests an env served for a model in a
   recent window (SQL in the database), with the true label where feedback holds one and,
   joined in SQL, the candidate's online shadow row of the same request when the router
   logged one. `split_sample` (module `online`) counts those online pairs as evidence as
   they are; only the rest is replayed, and the counts merge over the union.
2. `chunk_requests` cuts the sample into chunks; `replay_chunk` predicts a chunk through
   both models in batches and returns only counts, so chunks can run as mapped tasks on
   many workers and be merged (`merge_chunks`) in any order.
3. `measure_latency` times single-request predictions on a small subsample: the latency a
   user would see, which batched replay cannot show.
4. `evaluate` turns the merged counts into rates with confidence intervals, latency
   percentiles, paired accuracy (McNemar, bootstrap) and the gate (Settings SHADOW_*),
   listing every failed threshold.
5. `act_on_report` records the verdict in the ledger and moves the rollout on it;
   `log_to_mlflow` keeps the evaluation as an MLflow run.

Modules: `replay` (steps 1-3), `online` (the online shadow evidence), `statistics` (4),
`subjects` (who is compared, step 5), `mlflow_run` (the MLflow record); the report's
markdown is in core.reporting. No Prefect here; tasks/shadow.py and
flows/shadow_evaluation.py wrap these.
"""

from core.reporting import shadow_report_markdown as report_markdown
from core.shadow.chunks import RequestChunk, chunk_requests
from core.shadow.mlflow_run import log_to_mlflow
from core.shadow.online import SampleSplit, split_sample
from core.shadow.replay import (
    ChunkCounts,
    LatencyProfile,
    OnlinePair,
    Predictor,
    ReplayRequest,
    ShadowSampling,
    measure_latency,
    merge_chunks,
    predict_tolerant,
    replay_chunk,
    sample_requests,
)
from core.shadow.statistics import (
    CONFIDENCE,
    AccuracyComparison,
    Rate,
    ShadowReport,
    ShadowThresholds,
    compare_accuracy,
    evaluate,
)
from core.shadow.subjects import ShadowAction, ShadowSubjects, act_on_report, resolve_subjects

__all__ = [
    "CONFIDENCE",
    "AccuracyComparison",
    "ChunkCounts",
    "LatencyProfile",
    "OnlinePair",
    "Predictor",
    "Rate",
    "ReplayRequest",
    "RequestChunk",
    "SampleSplit",
    "ShadowAction",
    "ShadowReport",
    "ShadowSampling",
    "ShadowSubjects",
    "ShadowThresholds",
    "act_on_report",
    "chunk_requests",
    "compare_accuracy",
    "evaluate",
    "log_to_mlflow",
    "measure_latency",
    "merge_chunks",
    "predict_tolerant",
    "replay_chunk",
    "report_markdown",
    "resolve_subjects",
    "sample_requests",
    "split_sample",
]
