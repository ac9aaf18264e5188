"""Benchmark: writing a retriever version's answer index vs the embedder alone.

Builds the answer index of a synthetic FAQ corpus with `core.release_state.
build_answer_index` (chunk i+1 embedded while a second thread writes chunk i:
executemany on SQLite, binary COPY on Postgres) and, in the same run on the same texts
in the same chunks, calls the embedder's own `embed` with no writing at all. Prints
embeddings written per second vs embeddings computed per second (ratio, target >= 0.8):
the median of per-round ratios (each round a bare embed then a build, back to back), on
SQLite and (when reachable) Postgres.

The embedder is the retriever's kind of pipeline: TF-IDF -> TruncatedSVD -> unit rows.

    uv run python bench/state_build.py [--rows 50000] [--dims 128] [--chunk-rows 2000]
        [--rounds 5] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

WORDS = [
    *("refund", "invoice", "charge", "card", "parcel", "courier", "track", "return"),
    *("label", "login", "reset", "email", "address", "order", "late", "damaged"),
    *("missing", "account", "delete", "password", "change", "payment", "plan"),
    *("upgrade", "cancel", "subscription", "delivery", "store", "pickup", "warranty"),
    *("repair", "exchange", "gift", "voucher", "balance", "limit"),
]
INTENTS = ("billing", "shipping", "returns", "account", "password", "delivery", "payments")


class Embedder:
    """TF-IDF -> TruncatedSVD -> unit rows, as the FAQ retriever embeds."""

    def __init__(self, texts: list[str], dims: int) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2)), TruncatedSVD(n_components=dims, random_state=0)
        ).fit(texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        return normalize(self.pipeline.transform(list(texts))).astype(np.float32)


def corpus(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(WORDS), size=(rows, 14))
    return pd.DataFrame(
        {
            "answer_id": [f"a{i:07d}" for i in range(rows)],
            "intent": [INTENTS[i % len(INTENTS)] for i in range(rows)],
            "text": [" ".join(WORDS[j] for j in row) for row in picks],
        }
    )


def postgres_unreachable(url: str) -> str | None:
    """Why Postgres at `url` cannot be used, or None when it answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means: not reachable
        return f"{type(exc).__name__} at {make_url(url).render_as_string()}"
    finally:
        engine.dispose()
    return None


@contextmanager
def postgres_engine(admin_url: str) -> Iterator[object]:
    """A fresh migrated Postgres database for the run, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from core.db import make_engine, upgrade

    admin_sa = make_url(admin_url).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_sa, isolation_level="AUTOCOMMIT")
    name = f"sml_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(admin_url).set(database=name).render_as_string(False))
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def measure(
    engine: object, frame: pd.DataFrame, embedder: Embedder, args: argparse.Namespace, tmp: Path
) -> tuple[float, float, float, float]:
    """Medians over rounds (a bare embed, then a build, back to back: the machine's load
    drifts alike over both) of: build rows/s, embed rows/s, per-round ratio, build s."""
    from core.release_state import build_answer_index, plan_chunks

    chunks = plan_chunks(frame, args.chunk_rows)
    builds, embeds, ratios, seconds = [], [], [], []
    for round_number in range(args.rounds):
        started = time.perf_counter()
        for chunk in chunks:
            embedder.embed(list(chunk.texts))
        embed_rate = len(frame) / (time.perf_counter() - started)

        started = time.perf_counter()
        state, built = build_answer_index(
            engine, "faq-retriever", str(round_number + 1), embedder, frame,  # type: ignore[arg-type]
            state_dir=tmp / "states", chunk_rows=args.chunk_rows,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        assert built
        assert state.rows == len(frame)
        builds.append(len(frame) / elapsed)
        embeds.append(embed_rate)
        ratios.append(len(frame) / elapsed / embed_rate)
        seconds.append(elapsed)
    medians = (statistics.median(v) for v in (builds, embeds, ratios, seconds))
    return tuple(medians)  # type: ignore[return-value]


def report(label: str, run: Callable[[], tuple[float, float, float, float]]) -> None:
    build, embed, ratio, seconds = run()
    print(
        f"{label}: written {build:,.0f} embeddings/s (build {seconds:.2f} s), "
        f"embed alone {embed:,.0f}/s, ratio {ratio:.2f} (median of per-round ratios; "
        "target >= 0.8)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--chunk-rows", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()

    from core.db import make_engine, upgrade

    frame = corpus(args.rows)
    embedder = Embedder(frame["text"].tolist(), args.dims)
    print(f"{args.rows:,} answers, {args.dims} dims, chunks of {args.chunk_rows:,}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        engine = make_engine(f"sqlite:///{tmp}/state.db")
        upgrade(engine)
        report("SQLite  ", lambda: measure(engine, frame, embedder, args, tmp))
        engine.dispose()
        unreachable = postgres_unreachable(args.postgres_url)
        if unreachable:
            print(f"Postgres: skipped ({unreachable})")
            return
        with postgres_engine(args.postgres_url) as pg:
            report("Postgres", lambda: measure(pg, frame, embedder, args, tmp))


if __name__ == "__main__":
    main()
