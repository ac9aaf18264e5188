"""Request and response bodies of the router (separate from the table models).

Field limits that depend on settings (text length, body size) are checked by the routes
and the body-size middleware; the fixed formats (ids, kinds) are checked here.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from serving.startup_fallback import StateSource

# Ids are logged and joined on: keep them short, printable and free of separators that
# would need escaping in logs or CSV exports.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"

# What /feedback accepts for thumbs; core.analysis counts down/-1/0/negative/bad as negative.
Thumbs = Literal["up", "down", "1", "+1", "-1", "0", "positive", "negative", "good", "bad"]
THUMBS_VALUES: tuple[str, ...] = get_args(Thumbs)

Role = Literal["champion", "candidate", "shadow", "fallback"]


def _storable(text: str) -> str:
    """`text` unchanged when the traffic table can hold it (one C-speed scan per request:
    this runs on the router's hot path). Unpaired surrogates never get here: pydantic
    refuses them as strings.

    Raises:
        ValueError: a NUL character (Postgres text refuses it), naming its position, never
            the text.
    """
    if "\x00" in text:
        raise ValueError(f"must not contain a NUL character (position {text.index(chr(0))})")
    return text


StorableText = Annotated[str, AfterValidator(_storable)]
"""Text the router logs: refused at the schema (422) when it holds NUL (pydantic already
refuses unpaired surrogates), so nothing is accepted that the traffic table would refuse."""


class PredictRequest(BaseModel):
    """A text to classify, with the ids used for sticky routing and feedback joins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: StorableText = Field(
        min_length=1, description="the input text (limit: ROUTER_MAX_TEXT_CHARS)"
    )
    user_id: str | None = Field(
        None,
        pattern=USER_ID_PATTERN,
        description="stable user id: the same user stays in the same arm of a rollout",
    )
    request_id: str | None = Field(
        None, pattern=REQUEST_ID_PATTERN, description="client request id; generated if absent"
    )
    model: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        description="model family to ask (one of MODELS); default: the primary model",
    )


class PredictResponse(BaseModel):
    """The answer, which version gave it, and in which role."""

    request_id: str
    intent: str
    model_version: str
    role: Role


class AnswerRequest(BaseModel):
    """A question to answer: its intent and the best FAQ answers for this user's arm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: StorableText = Field(
        min_length=1, description="the question (limit: ROUTER_MAX_TEXT_CHARS)"
    )
    user_id: str | None = Field(
        None,
        pattern=USER_ID_PATTERN,
        description="stable user id: the same user stays in the same arm of each rollout",
    )
    request_id: str | None = Field(
        None, pattern=REQUEST_ID_PATTERN, description="client request id; generated if absent"
    )
    k: int | None = Field(
        None, ge=1, le=10, description="how many answers (1..10); default: ANSWER_TOP_K"
    )


class AnswerItem(BaseModel):
    """One FAQ answer and its cosine similarity to the question."""

    answer_id: str
    intent: str
    text: str
    score: float


class ServedBy(BaseModel):
    """Which version of one model answered, in which role, reading which release state."""

    version: str
    role: Role
    state_key: str | None = None


class AnswerResponse(BaseModel):
    """The intent (classifier), the top answers (retriever), and who served each."""

    request_id: str
    intent: str
    answers: list[AnswerItem]
    served: dict[str, ServedBy] = Field(
        description="per model name: its version, role and release state (null: none)"
    )


class _Feedback(BaseModel):
    """What every feedback body has: the served request it is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(pattern=REQUEST_ID_PATTERN)


class ThumbsFeedback(_Feedback):
    """A user's thumbs on an answer; core.analysis counts down/-1/0/negative/bad as negative."""

    kind: Literal["thumbs"]
    value: Thumbs = Field(description="up|down (or 1/-1, good/bad, positive/negative, +1/0)")


class LabelFeedback(_Feedback):
    """The true intent of a served request (from a reviewer or a later signal)."""

    kind: Literal["label"]
    value: StorableText = Field(min_length=1, max_length=128, description="the true intent")


FeedbackRequest = Annotated[ThumbsFeedback | LabelFeedback, Field(discriminator="kind")]
"""Feedback on a served prediction, joined to traffic by request id: `kind` says which
(the OpenAPI document lists, per kind, exactly the values the route accepts)."""


class FeedbackResponse(BaseModel):
    """Feedback is buffered and written in batches, like traffic."""

    request_id: str
    accepted: bool = True


class HealthResponse(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"] = "ok"


class ModelReadiness(BaseModel):
    """What one model serves right now."""

    champion_version: str | None
    mode: str | None
    candidate_version: str | None = None
    candidate_loaded: bool = False
    percent: float = 0.0
    rollout_id: int | None = None
    source: StateSource | None = None


class ReadyResponse(BaseModel):
    """Readiness: every model this environment ships has its champion loaded.

    source: where the state being served came from: `ledger`, or `registry-alias` while
    the state database has not answered since start-up (None before any state).
    """

    ready: bool
    reason: str | None = None
    source: StateSource | None = None
    models: dict[str, ModelReadiness] = Field(default_factory=dict)
