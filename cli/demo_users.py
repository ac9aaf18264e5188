"""The demo's simulated users: short sessions through the router that react to its answers.

A user asks (/predict or /answer) and reacts as users do (`USER_REACTIONS`): a right answer
gets thumbs up or the user leaves; a wrong one makes them ask again, ask for an agent,
thumbs down, or leave. A follow-up query gets its own reaction, after which the user stops.
So the canary's behaviour gates (reformulation, hand-off, abandonment: core.behaviour) see
the router's real answers move them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

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

        The sessions run one after another on the router's own event loop (the test
        client's portal), over HTTP to its ASGI app: one hop between threads for all of
        them, instead of several per request (~6 ms a request through the test client)."""
        client = self._router(settings)
        rng = np.random.default_rng(self.seed + self.served)
        first = self.served
        self.served += requests
        roles = client.portal.call(self._sessions, client.app, rng, first, requests, endpoint)
        self.service.writer.flush()
        return roles

    async def _sessions(
        self, app: Any, rng: np.random.Generator, first: int, requests: int, endpoint: str
    ) -> dict[str, int]:
        """Users `first` .. `first + requests - 1`, one session each, in turn."""
        roles: dict[str, int] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            for k in range(first, first + requests):
                await self._session(client, rng, f"user-{k}", roles, endpoint)
        return roles

    async def _ask(
        self, client: httpx.AsyncClient, endpoint: str, i: int, user: str
    ) -> tuple[str, str, bool]:
        """Query `i` as `user`: (request id, role, whether the user got what they asked:
        the intent from /predict; an answer of that intent from /answer)."""
        response = await client.post(f"/{endpoint}", json={"text": self.texts[i], "user_id": user})
        response.raise_for_status()
        body = response.json()
        if endpoint == "answer":
            right = any(a["intent"] == self.intents[i] for a in body["answers"])
            return body["request_id"], body["served"][ANSWER_LEAD]["role"], right
        return body["request_id"], body["role"], body["intent"] == self.intents[i]

    async def _session(
        self,
        client: httpx.AsyncClient,
        rng: np.random.Generator,
        user: str,
        roles: dict[str, int],
        endpoint: str,
    ) -> None:
        """One user: a query, a reaction; a follow-up query gets its own reaction (after
        which the user stops asking)."""
        i = int(rng.integers(len(self.texts)))
        for follow_up in (False, True):
            request_id, role, right = await self._ask(client, endpoint, i, user)
            roles[role] = roles.get(role, 0) + 1
            weights = USER_REACTIONS[right]
            reaction = str(rng.choice(list(weights), p=list(weights.values())))
            if reaction in ("again", "agent") and not follow_up:
                i = self._next_query(rng, self.intents[i] if reaction == "again" else HANDOFF)
                continue
            if reaction.startswith("thumbs"):
                await self._feedback(client, rng, request_id, reaction, self.intents[i])
            return

    def _next_query(self, rng: np.random.Generator, intent: str) -> int:
        """Another query of `intent` (the user rephrases, or asks for a person)."""
        same = [j for j, known in enumerate(self.intents) if known == intent]
        return int(rng.choice(same)) if same else int(rng.integers(len(self.texts)))

    @staticmethod
    async def _feedback(
        client: httpx.AsyncClient,
        rng: np.random.Generator,
        request_id: str,
        reaction: str,
        intent: str,
    ) -> None:
        """Thumbs up/down, and half the time the true intent as a label."""
        thumbs = {"request_id": request_id, "kind": "thumbs", "value": reaction.split("_")[1]}
        (await client.post("/feedback", json=thumbs)).raise_for_status()
        if rng.random() < 0.5:
            label = {"request_id": request_id, "kind": "label", "value": intent}
            (await client.post("/feedback", json=label)).raise_for_status()
