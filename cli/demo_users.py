"""The demo's simulated users: short sessions through the router that react to its answers.

A user asks (/predict or /answer) and reacts as users do (`USER_REACTIONS`): a right answer
gets thumbs up or the user leaves; a wrong one makes them ask again, ask for an agent,
thumbs down, or leave. A follow-up query gets its own reaction, after which the user stops.
So the canary's behaviour gates (reformulation, hand-off, abandonment: core.behaviour) see
the router's real answers move them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from cli.asgi_calls import post_json
from config import Settings

HANDOFF = "talk_to_agent"
ANSWER_LEAD = "faq-retriever"  # whose role an /answer request is counted under
# The simulated users talk as users did over the last month (phrasing drifts: create_data.py)
USER_DAYS = 30
# How a simulated user reacts to a right (True) or wrong (False) answer: thumbs (with a
# label half the time), leave without a word, ask again (rephrased), ask for an agent.
USER_REACTIONS: dict[bool, dict[str, float]] = {
    True: {"thumbs_up": 0.60, "leave": 0.36, "again": 0.03, "agent": 0.01},
    False: {"thumbs_down": 0.10, "leave": 0.10, "again": 0.55, "agent": 0.25},
}
CONCURRENT_USERS = 16
"""Sessions in flight at once: users arrive together, as on a real router, so concurrent
requests share the router's batched predict calls (serving.batching). Each user keeps its
own sequence (a follow-up comes right after its answer) and its own random stream, so
what one user does never depends on how the sessions interleave."""


class SimulatedUsers:
    """The users' part of the demo's `Lifecycle` (which provides the router and the
    queries: `texts` with their true `intents`)."""

    seed: int
    served: int
    texts: list[str]
    intents: list[str]
    service: Any
    _router: Callable[[Settings], Any]

    def _users(
        self, settings: Settings, requests: int, endpoint: str = "predict"
    ) -> dict[str, int]:
        """`requests` simulated users, each with a short session through the router's
        `endpoint` (predict or answer): they ask, then react to the answer as users do
        (`USER_REACTIONS`): a wrong one makes them ask again or ask for an agent more
        often. Returns requests served per role (the retriever's role for /answer).

        The sessions run on the router's own event loop (the test client's portal), as HTTP
        requests into its ASGI app (`cli.asgi_calls`), CONCURRENT_USERS at a time: one hop
        between threads for all of them, instead of several per request. 600 users: 3.1 s
        one at a time through an httpx client, 0.75 s so (docs/benchmarks.md)."""
        client = self._router(settings)
        first = self.served
        self.served += requests
        roles = client.portal.call(self._sessions, client.app, first, requests, endpoint)
        self.service.writer.flush()
        return roles

    async def _sessions(self, app: Any, first: int, requests: int, endpoint: str) -> dict[str, int]:
        """Users `first` .. `first + requests - 1`, one session each, CONCURRENT_USERS at
        a time; user k draws from its own stream (seed, k)."""
        roles: dict[str, int] = {}
        users = iter(range(first, first + requests))

        async def arrivals() -> None:
            for k in users:  # shared: each lane takes the next user that arrives
                rng = np.random.default_rng([self.seed, k])
                await self._session(app, rng, f"user-{k}", roles, endpoint)

        await asyncio.gather(*(arrivals() for _ in range(CONCURRENT_USERS)))
        return roles

    async def _ask(self, app: Any, endpoint: str, i: int, user: str) -> tuple[str, str, bool]:
        """Query `i` as `user`: (request id, role, whether the user got what they asked:
        the intent from /predict; an answer of that intent from /answer)."""
        body = await post_json(app, f"/{endpoint}", {"text": self.texts[i], "user_id": user})
        if endpoint == "answer":
            right = any(a["intent"] == self.intents[i] for a in body["answers"])
            return body["request_id"], body["served"][ANSWER_LEAD]["role"], right
        return body["request_id"], body["role"], body["intent"] == self.intents[i]

    async def _session(
        self,
        app: Any,
        rng: np.random.Generator,
        user: str,
        roles: dict[str, int],
        endpoint: str,
    ) -> None:
        """One user: a query, a reaction; a follow-up query gets its own reaction (after
        which the user stops asking)."""
        i = int(rng.integers(len(self.texts)))
        for follow_up in (False, True):
            request_id, role, right = await self._ask(app, endpoint, i, user)
            roles[role] = roles.get(role, 0) + 1
            weights = USER_REACTIONS[right]
            reaction = str(rng.choice(list(weights), p=list(weights.values())))
            if reaction in ("again", "agent") and not follow_up:
                i = self._next_query(rng, self.intents[i] if reaction == "again" else HANDOFF)
                continue
            if reaction.startswith("thumbs"):
                await self._feedback(app, rng, request_id, reaction, self.intents[i])
            return

    def _next_query(self, rng: np.random.Generator, intent: str) -> int:
        """Another query of `intent` (the user rephrases, or asks for a person)."""
        same = [j for j, known in enumerate(self.intents) if known == intent]
        return int(rng.choice(same)) if same else int(rng.integers(len(self.texts)))

    @staticmethod
    async def _feedback(
        app: Any,
        rng: np.random.Generator,
        request_id: str,
        reaction: str,
        intent: str,
    ) -> None:
        """Thumbs up/down, and half the time the true intent as a label."""
        thumbs = {"request_id": request_id, "kind": "thumbs", "value": reaction.split("_")[1]}
        await post_json(app, "/feedback", thumbs)
        if rng.random() < 0.5:
            label = {"request_id": request_id, "kind": "label", "value": intent}
            await post_json(app, "/feedback", label)
