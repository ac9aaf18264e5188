"""The router: FastAPI app, sticky routing, online shadow, fallback, traffic logging.

`serving.app.create_app(settings)` builds the app; `sml serve` runs it with uvicorn.

Traffic rows written per request (the canary analysis reads these with SQL):

- champion arm (any mode): one row role=champion, the champion's answer and latency.
  In shadow mode, and in canary mode for champion-arm users, the candidate also answers
  off the hot path: one more row role=shadow with the same request_id (dropped, never
  delayed, when the shadow executor is saturated; drops are counted in
  router_shadow_dropped_total).
- candidate arm (canary): exactly one row role=candidate per request:
  * success: the candidate's answer, latency, error NULL;
  * failure (exception, timeout after ROUTER_CANDIDATE_TIMEOUT_MS, or a candidate that
    could not be loaded): output NULL, error set ("ValueError: ...", "timeout after
    250 ms", "candidate not loaded: ..."), latency = time spent on the attempt; then a
    second row role=fallback: the champion version, the answer the user got, its latency,
    and error = the candidate's error (why the fallback happened; it is NOT a champion
    error).
  So: candidate error rate = share of role=candidate rows with error set; champion error
  rate = share of role=champion rows with error set; fallback rows are served answers.
- A champion failure (nothing to fall back to) writes its row with error set and answers
  500.
- Shadow rows are written when the batched shadow call finishes (up to ~0.2 s later);
  their latency_ms is the batch time divided by the batch size (amortised), so do not
  compare it with champion/candidate latencies (the canary analysis does not use it).

Public API: `serving.app.create_app(settings, *, model_source=None, engine=None,
state_reader=None, shadow_in_canary=True, shadow_max_batch=64)`; once the lifespan has
started, `app.state.service` is the `serving.service.RouterService` (`wait_ready()`,
`plans()`, `writer`, `metrics`). `serving.server.serve_in_thread(app)` serves it on a free
loopback port and yields the base URL.
"""
