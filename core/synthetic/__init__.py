"""Synthetic source data: drifting banking-assistant queries and the FAQ answer corpus.

`generate_queries` draws deterministic rows from the vocabulary in `vocabulary.yaml`
(phrasings per intent and era, vague queries, slots, weights keyed by name), checked on
load; `generate_faq_answers` turns `faq_answers.yaml` (answers per intent in older and
newer wordings) into the rows of the second source table. `create_source_table` writes
both idempotently and `summarize_source` shows the drift. `create_data.py` (the script),
`sml demo` and the tests all call this package.
"""

from core.synthetic.faq import (
    FAQ_FILE,
    FaqCorpus,
    FaqEntry,
    generate_faq_answers,
    load_faq_corpus,
    parse_faq_corpus,
)
from core.synthetic.generator import (
    AMBIGUOUS_SHARE,
    DEFAULT_DAYS,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    LABEL_NOISE,
    GeneratedQuery,
    add_noise,
    default_end,
    generate_queries,
    generate_query,
    modern_share,
    query_id,
)
from core.synthetic.source_table import (
    INSERT_BATCH,
    ProgressCallback,
    SourceSummary,
    count_rows,
    create_faq_table,
    create_source_table,
    ensure_source_table,
    summarize_source,
    wait_for_source,
)
from core.synthetic.vocabulary import (
    ERAS,
    Era,
    Vocabulary,
    VocabularyError,
    load_vocabulary,
    parse_vocabulary,
)

__all__ = [
    "AMBIGUOUS_SHARE",
    "DEFAULT_DAYS",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "ERAS",
    "FAQ_FILE",
    "INSERT_BATCH",
    "LABEL_NOISE",
    "Era",
    "FaqCorpus",
    "FaqEntry",
    "GeneratedQuery",
    "ProgressCallback",
    "SourceSummary",
    "Vocabulary",
    "VocabularyError",
    "add_noise",
    "count_rows",
    "create_faq_table",
    "create_source_table",
    "default_end",
    "ensure_source_table",
    "generate_faq_answers",
    "generate_queries",
    "generate_query",
    "load_faq_corpus",
    "load_vocabulary",
    "modern_share",
    "parse_faq_corpus",
    "parse_vocabulary",
    "query_id",
    "summarize_source",
    "wait_for_source",
]
