"""HTTP routes of the router. Thin: validate, call RouterService, shape the answer.

No route changes rollout state: that goes through the ledger (CLI, flows).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.limits import validation_detail
from serving.schemas import (
    AnswerItem,
    AnswerRequest,
    AnswerResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    ModelReadiness,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
    ServedBy,
)
from serving.service import ChampionError, ModelNotServedError, NotReadyError, RouterService

router = APIRouter()


async def get_service(request: Request) -> RouterService:
    """The app's RouterService (created by the lifespan)."""
    service: RouterService = request.app.state.service
    return service


ServiceDep = Annotated[RouterService, Depends(get_service)]


def _check_text(text: str, service: RouterService) -> None:
    """Refuse a text over ROUTER_MAX_TEXT_CHARS with a 422 naming the limit."""
    limit = service.settings.ROUTER_MAX_TEXT_CHARS
    if len(text) > limit:
        raise RequestValidationError(
            validation_detail(
                ["body", "text"],
                f"text is {len(text)} characters; the limit is {limit}",
                "string_too_long",
            )
        )


@router.post("/predict", response_model=PredictResponse)
async def predict(body: PredictRequest, request: Request) -> Response:
    """Classify a text with the model version this user is routed to."""
    # The hot path: a valid request is answered before it gets here, by the same
    # `answer_predict` (serving/fast_path.py); this route answers the rest and documents it.
    service: RouterService = request.app.state.service
    return Response(await answer_predict(service, body), media_type="application/json")


async def answer_predict(service: RouterService, body: PredictRequest) -> bytes:
    """The JSON answer to a valid /predict request (what the route and the fast path send).

    Raises:
        RequestValidationError: the text is over the limit, or `model` is not served (422).
        HTTPException: 503 while the model has no champion, 500 when the champion failed.
    """
    _check_text(body.text, service)
    try:
        result = await service.predict(
            body.text, user_id=body.user_id, request_id=body.request_id, model=body.model
        )
    except ModelNotServedError as exc:
        raise RequestValidationError(
            validation_detail(["body", "model"], str(exc), "value_error")
        ) from exc
    except NotReadyError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    except ChampionError as exc:
        raise HTTPException(status_code=500, detail=str(exc)) from exc
    answer = PredictResponse(
        request_id=result.request_id,
        intent=result.intent,
        model_version=result.model_version,
        role=result.role,  # type: ignore[arg-type]
    )
    # serialised once by its model (FastAPI would validate it again against response_model)
    return answer.model_dump_json().encode()


@router.post(
    "/answer",
    response_model=AnswerResponse,
    responses={
        404: {"description": "this environment serves no retriever (MODELS)"},
        503: {"description": "a champion or its release state is not loaded yet"},
    },
)
async def answer(body: AnswerRequest, service: ServiceDep) -> AnswerResponse:
    """Answer a question: its intent (classifier) and the top-k FAQ answers (retriever,
    over the answer index of the version serving this user). Each model's arm follows its
    own rollout; a bundle's models are served together (all candidates or all champions).
    """
    _check_text(body.text, service)
    try:
        result = await service.answer(
            body.text, user_id=body.user_id, request_id=body.request_id, k=body.k
        )
    except ModelNotServedError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except NotReadyError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    except ChampionError as exc:
        raise HTTPException(status_code=500, detail=str(exc)) from exc
    return AnswerResponse(
        request_id=result.request_id,
        intent=result.intent,
        answers=[
            AnswerItem(answer_id=a.answer_id, intent=a.intent, text=a.text, score=a.score)
            for a in result.answers
        ],
        served={
            name: ServedBy(version=s.version, role=s.role, state_key=s.state_key)  # type: ignore[arg-type]
            for name, s in result.served.items()
        },
    )


@router.post("/feedback", response_model=FeedbackResponse, status_code=202)
async def feedback(body: FeedbackRequest, service: ServiceDep) -> FeedbackResponse:
    """Record thumbs or a true label for a served request (written in batches)."""
    service.feedback(body.request_id, body.kind, body.value)
    return FeedbackResponse(request_id=body.request_id)


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse)
async def ready(service: ServiceDep) -> JSONResponse:
    """Readiness: 200 once every model's champion is loaded, else 503 with the reason."""
    plans = service.plans()
    models = {}
    for name in service.models:
        plan = plans.get(name)
        if plan is None:
            models[name] = ModelReadiness(champion_version=None, mode=None)
            continue
        s = plan.state
        models[name] = ModelReadiness(
            champion_version=s.champion_version,
            mode=s.mode,
            candidate_version=s.candidate_version,
            candidate_loaded=plan.candidate is not None,
            percent=s.percent,
            rollout_id=s.rollout_id,
            source=plan.source,
        )
    missing = [name for name in service.models if name not in plans]
    body = ReadyResponse(
        ready=not missing,
        reason=f"no champion loaded for {', '.join(missing)}" if missing else None,
        source=service.state_source(),
        models=models,
    )
    return JSONResponse(body.model_dump(), status_code=200 if not missing else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics of this router."""
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
