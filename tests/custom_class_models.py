"""Models pickled from a custom class in an "image code" folder, which a test can remove.

Ledger, CLI and compat tests use them to get real registered versions that real core.compat
judges `broken` under a "new image" (the class gone), without tampering with any file.

`image_code` (import `image_code_fixture` into a test module to use it) puts a folder of
"image code" on sys.path and PYTHONPATH (the compat probe subprocess inherits PYTHONPATH),
so a test can register a model pickled from a class in that folder and then remove the
class, as a new image that renamed it would.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import ModelRegistry, ModelVersionInfo

CUSTOM_MODEL = "custom-intent"
CLEANER_SOURCE = '''
from sklearn.base import BaseEstimator, TransformerMixin


class QueryCleaner(TransformerMixin, BaseEstimator):
    """Lower-cases queries."""

    def fit(self, texts, y=None):
        return self

    def transform(self, texts):
        return [str(t).lower() for t in texts]
'''


@pytest.fixture(name="image_code")
def image_code_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str]]:
    """A folder on sys.path and PYTHONPATH holding 'image code', and a fresh module name."""
    folder = tmp_path / "image_code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    module = f"sml_ledger_cleaner_{uuid.uuid4().hex[:8]}"
    yield folder, module
    sys.modules.pop(module, None)


def register_with_custom_class(
    registry: ModelRegistry, folder: Path, module: str, source: str = CLEANER_SOURCE
) -> ModelVersionInfo:
    """Register a `custom-intent` version whose pipeline pickles `module.QueryCleaner`.

    `source` is the image code written to `folder/module.py` first (a changed cleaner
    stands in for an image whose code changed).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    from models.intent_classifier import GOLDEN_INPUTS
    from tests.factories import training_frame

    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    cleaner = importlib.import_module(module).QueryCleaner
    frame = training_frame()
    pipeline = Pipeline(
        [("clean", cleaner()), ("tfidf", TfidfVectorizer()), ("clf", LinearSVC())]
    ).fit(frame["text"].tolist(), frame["intent"].tolist())
    return registry.register(
        CUSTOM_MODEL,
        pipeline,
        tags={"image_version": registry.image_version},
        params={},
        metrics={},
        golden_inputs=list(GOLDEN_INPUTS),
    )


def remove_class(folder: Path, module: str) -> None:
    """The next image renamed the class: old pickles reference one that no longer exists."""
    source = textwrap.dedent(CLEANER_SOURCE).replace("class QueryCleaner", "class QueryNormalizer")
    (folder / f"{module}.py").write_text(source)
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
