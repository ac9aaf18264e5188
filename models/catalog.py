"""What the controller, the router and the CLI know of each model family without loading
its estimator code (scikit-learn, pandas: seconds of imports in every flow run that only
reads figures): its name, the kind of release state its versions read when they serve,
and the output that means "a person, please".

`models.families.FAMILIES` takes these facts from here, so they are stated once.
"""

from __future__ import annotations

INTENT_CLASSIFIER = "intent-classifier"
FAQ_RETRIEVER = "faq-retriever"
NAMES: tuple[str, ...] = (INTENT_CLASSIFIER, FAQ_RETRIEVER)

#: The kind of release state a version reads when it serves (core.release_state builds
#: it); families absent read none.
STATE_KINDS: dict[str, str] = {FAQ_RETRIEVER: "answer_index"}

#: The output that means the user asked for a person (the canary's hand-off rate: a
#: user's next query classified so); families absent declare none.
HANDOFF_LABELS: dict[str, str] = {INTENT_CLASSIFIER: "talk_to_agent"}


def stateful_models() -> frozenset[str]:
    """The names of the families whose versions read release state: core functions that
    gate traffic on a built state take this set as `stateful`."""
    return frozenset(STATE_KINDS)


def handoff_labels() -> tuple[str, ...]:
    """Every family's hand-off label (the outputs that mean "a person, please")."""
    return tuple(sorted(set(HANDOFF_LABELS.values())))
