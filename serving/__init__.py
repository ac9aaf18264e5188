"""The router: FastAPI app, sticky routing, online shadow, fallback, traffic logging.

`serving.app.create_app(settings)` builds the app; `sml serve` runs it with uvicorn.

Endpoints: `POST /predict` (one model: the intent), `POST /answer` (the classifier's
intent and the retriever's top-k FAQ answers over the answer index of the version serving
the user: serving/answering.py), `POST /feedback`, `GET /health`, `/ready`, `/metrics`.

Traffic rows written per request, one per model the request used (the canary analysis
reads these with SQL); each row has its model's rollout_id, version, role, and state_key
(the release state the model read: the retriever's answer index; NULL for the classifier):

- champion arm (any mode): one row role=champion, the champion's answer.
  In shadow mode, and in canary mode for champion-arm users, the candidate also answers
  off the hot path: one more row role=shadow with the same request_id (dropped, never
  delayed, when ROUTER_SHADOW_QUEUE shadow calls are outstanding; drops are counted in
  router_shadow_dropped_total). /answer shadows the classifier only (what /predict
  shadows); the retriever is not shadowed.
- candidate arm (canary): exactly one row role=candidate per request and model:
  * success: the candidate's answer, error NULL;
  * failure (exception, timeout after ROUTER_CANDIDATE_TIMEOUT_MS, or a candidate that
    could not be loaded or whose release state is not published): output NULL, error set
    ("ValueError: ...", "timeout after 250 ms", "candidate not loaded: ..."); then a
    row role=fallback: the champion version, the answer the user got, and error = the
    candidate's error (why the fallback happened; it is NOT a champion error).
  * bundles (one rollout of several models, one salt: a user is in the candidate arm of
    all its models or of none): if any candidate member fails, the whole request falls
    back to the champions of the bundle, so a user sees the candidate set or none. The
    first member of the bundle in the request (the lead first) logs the role=candidate
    row with the error naming the failing model ("faq-retriever v3: timeout after ..."),
    then every member logs a role=fallback row. The controller judges a rollout on its
    lead model's rows, so the lead's row speaks for the bundle request.
  So: candidate error rate = share of role=candidate rows with error set; champion error
  rate = share of role=champion rows with error set; fallback rows are served answers.
- A champion failure (nothing to fall back to) writes its row with error set and answers
  500.
- Shadow rows are written when the shadow call finishes (serving/shadow.py: on the same
  micro-batcher as the request path); their latency_ms is the span from the job queued
  to its answer (the canary analysis does not use it).

One clock: every champion, candidate and fallback row's latency_ms is the same span for
every arm: from the request parsed (the route calls the service) to its answer ready
(all model calls of the request done), i.e. what the user waits for, minus HTTP framing
that is the same for both arms. All rows of one request carry the same value. Every model
call, champion and candidate alike, goes through the same micro-batcher onto the same
thread pool, awaited by the same `asyncio.wait_for(future, deadline)` (deadline: the candidate's
ROUTER_CANDIDATE_TIMEOUT_MS; the champion's a 30 s safety net, past which the request
fails with 500): the thread hop and the extra event-loop turn the candidate needs for its
timeout are applied to both arms, so an identical candidate has an identical latency
distribution at any load (tested end to end through `sml serve`:
tests/serving/test_one_clock.py). A fallback's span includes the failed attempt: the user
waited for both. Cost: the champion pays the hop too (~80 us of CPU, docs/benchmarks.md).

Micro-batching (serving/batching.py): concurrent requests for the same model version (and
state, and kind of work) share one batched call: `predict(texts)` for the classifier, one
`embed(texts)` and one index search for the retriever. The first request of an idle
version is dispatched at once, alone; while a batch runs, requests queue and go together
as the next batch (at most ROUTER_BATCH_MAX; ROUTER_BATCH_WAIT_MS, 0 by default, lingers
only under concurrency). A batch that raises is re-run text by text, so a failing input
fails (and falls back) alone. Deadlines stay per request: a candidate past its timeout
falls back whatever its batch does. Both arms take this path, so the one clock holds.

Processes: `sml serve --workers N` (ROUTER_WORKERS; 0, the default, is one per usable
core, capped by the container's CPU quota) runs N router processes on one port. They share
nothing but the database: each has its own pool, poller, shadow workers, traffic writer
(and spill file) and /metrics.

Public API: `serving.app.create_app(settings, *, model_source=None, engine=None,
state_reader=None, shadow_in_canary=True, stateful=None,
record_traffic=True)`; once the lifespan has started, `app.state.service` is the
`serving.service.RouterService` (`wait_ready()`, `plans()`, `writer`, `metrics`).
`serving.server.serve_in_thread(app)` serves it on a free loopback port and yields the
base URL.

Pinned routers (`sml serve --pin MODEL=VERSION`, serving/pinned.py): serve exactly the
given versions as champions, ignore the ledger, and write no traffic or feedback rows (the
pre-canary load test's routers: docs/load_test.md).
"""
