"""Real small models and a real answer-index state for the /answer tests.

TEST HELPER, kept small: the state helper builds the real builder (flows/build_release_state)
on another branch. Here a retriever (TF-IDF + TruncatedSVD + L2 normalise) embeds a tiny
FAQ corpus, and `publish_answer_index` writes the `answer_index` table
(core.answer_index) into the version's own SQLite file / Postgres schema and publishes it
with a `release_states` row, as the builder does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import normalize
from sqlalchemy import Engine, MetaData, create_engine, insert, text

from core.answer_index import answer_index_table, encode_vector
from core.artifacts import LoadedModel
from core.db import ReleaseStateRow, session_scope, utcnow
from core.release_state import model_state_key, schema_for

CLASSIFIER = "intent-classifier"
RETRIEVER = "faq-retriever"
STATEFUL = frozenset({RETRIEVER})

# (answer_id, intent, text)
CORPUS = (
    ("refund-1", "billing", "Refunds reach your card within five days of the request."),
    ("refund-2", "billing", "To request a refund open the order and choose refund."),
    ("invoice-1", "billing", "Invoices are in your account under billing, as a PDF."),
    ("invoice-2", "billing", "We email an invoice for every payment you make."),
    ("password-1", "account", "Reset your password from the login page link."),
    ("password-2", "account", "A password reset email expires after one hour."),
    ("email-1", "account", "Change your email address in account settings."),
    ("crash-1", "bug", "If the app crashes, update it to the latest version."),
    ("crash-2", "bug", "Send us the crash report from the help menu."),
    ("slow-1", "bug", "A slow app often recovers after clearing its cache."),
)
QUERIES = (
    ("i want a refund for my order", "billing"),
    ("where is my refund", "billing"),
    ("send me the invoice pdf", "billing"),
    ("invoice for last payment", "billing"),
    ("forgot my password", "account"),
    ("password reset link expired", "account"),
    ("change my email address", "account"),
    ("the app crashes on start", "bug"),
    ("app crash when I open it", "bug"),
    ("the app is very slow", "bug"),
)


@dataclass
class TinyRetriever:
    """An embedder (TF-IDF -> TruncatedSVD -> unit rows) with an intent per text: the
    nearest intent centroid of the corpus in embedding space."""

    dims: int
    seed: int = 0
    _pipeline: object = field(init=False, repr=False)
    _centroids: np.ndarray = field(init=False, repr=False)
    _intents: list[str] = field(init=False, repr=False)

    def fit(self, corpus: Sequence[tuple[str, str, str]]) -> TinyRetriever:
        texts = [t for _, _, t in corpus] + [q for q, _ in QUERIES]
        self._pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TruncatedSVD(n_components=self.dims, random_state=self.seed),
        ).fit(texts)
        vectors = self.embed([t for _, _, t in corpus])
        self._intents = sorted({i for _, i, _ in corpus})
        self._centroids = normalize(
            np.stack(
                [
                    vectors[[k for k, (_, i, _) in enumerate(corpus) if i == intent]].mean(0)
                    for intent in self._intents
                ]
            )
        )
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        reduced = self._pipeline.transform(list(texts))  # type: ignore[attr-defined]
        return normalize(reduced).astype(np.float32)

    def predict(self, texts: Sequence[str]) -> list[str]:
        scores = self.embed(texts) @ self._centroids.T
        return [self._intents[i] for i in scores.argmax(axis=1)]


def tiny_classifier(seed: int = 0) -> object:
    """A real sklearn text classifier fitted on QUERIES (deterministic for a seed)."""
    texts = [q for q, _ in QUERIES] + [t for _, _, t in CORPUS]
    labels = [i for _, i in QUERIES] + [i for _, i, _ in CORPUS]
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=500, random_state=seed)
    ).fit(texts, labels)


@dataclass
class LoadedModels:
    """A model source: registered-like versions (`core.artifacts.LoadedModel`) by name and
    version, as the registry hands them to the router (the fitted object in `.model`)."""

    models: dict[tuple[str, str], LoadedModel] = field(default_factory=dict)

    def add(self, name: str, version: str, model: object) -> LoadedModels:
        self.models[(name, version)] = LoadedModel(name, version, "sha256:test", model)
        return self

    def load(self, name: str, version: str) -> LoadedModel:
        try:
            return self.models[(name, version)]
        except KeyError:
            raise LookupError(f"{name} v{version} is not registered") from None


def publish_answer_index(
    engine: Engine, version: str, retriever: TinyRetriever, state_dir: Path
) -> str:
    """Embed CORPUS with `retriever`, write the answer_index of RETRIEVER `version` into
    its own place (a Postgres schema of `engine`, or its own SQLite file in `state_dir`),
    publish it (`release_states` row); return its state key."""
    key = model_state_key(RETRIEVER, version)
    vectors = retriever.embed([t for _, _, t in CORPUS])
    rows = [
        {"position": n, "answer_id": a, "intent": i, "text": t, "vector": encode_vector(v)}
        for n, ((a, i, t), v) in enumerate(zip(CORPUS, vectors, strict=True))
    ]
    if engine.dialect.name == "postgresql":
        backend, location = "postgresql", schema_for(key)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {location}"))
            table = answer_index_table(MetaData(), location)
            table.create(conn)
            conn.execute(insert(table), rows)
    else:
        state_dir.mkdir(parents=True, exist_ok=True)
        backend, location = "sqlite", str(state_dir / f"{schema_for(key)}.db")
        target = create_engine(f"sqlite:///{location}")
        table = answer_index_table(MetaData(), None)
        with target.begin() as conn:
            table.create(conn)
            conn.execute(insert(table), rows)
        target.dispose()
    with session_scope(engine) as session:
        session.add(
            ReleaseStateRow(
                key=key,
                backend=backend,
                location=location,
                model_versions={RETRIEVER: version},
                rows=len(rows),
                built_at=utcnow(),
                build_seconds=0.0,
            )
        )
    return key
