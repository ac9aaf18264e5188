"""The state database goes away mid-traffic (real Postgres behind a TCP proxy we cut):
no request fails, and once it is back every traffic row is in the table."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import (
    RegisteredVersions,
    RouterFactory,
    open_canary,
    release,
    router_settings,
    wait_until,
)
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from core.db import Traffic, make_engine, session_scope, upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.integration]


def _drive(client: httpx.Client, texts: list[str], n: int, offset: int) -> list[dict[str, str]]:
    bodies = []
    for i in range(offset, offset + n):
        response = client.post(
            "/predict", json={"text": texts[i % len(texts)], "user_id": f"user-{i % 97}"}
        )
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    return bodies


def test_database_outage_mid_traffic_loses_no_rows(
    postgres_url: str, run_router: RouterFactory, registered_versions: RegisteredVersions
) -> None:
    versions = registered_versions
    texts = versions.texts
    direct = make_engine(postgres_url)
    upgrade(direct)
    release(direct, versions.champion)
    # a real registered candidate that raises on ~30% of inputs: fallbacks during the outage
    rollout_id = open_canary(direct, versions.faulty, 50.0)
    upstream = make_url(postgres_url)
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432).start()
    via_proxy = upstream.set(port=proxy.port).render_as_string(hide_password=False)

    router = run_router(router_settings(via_proxy), model_source=versions.registry())
    client = router.client
    writer = router.service.writer

    served = _drive(client, texts, 150, 0)
    assert writer.flush()
    proxy.cut()
    cut_at = time.monotonic()
    served += _drive(client, texts, 200, 150)
    wait_until(lambda: writer.stats().spilled > 0 and not writer.stats().database_up)
    # keep the database away for a few seconds of traffic and polls
    while time.monotonic() - cut_at < 3.0:
        served += _drive(client, texts, 20, len(served))
    assert router.client.get("/metrics").status_code == 200
    assert "router_state_poll_errors_total" in client.get("/metrics").text
    during = writer.stats()
    assert during.spill_pending > 0
    gauges = {
        line.split()[0]: float(line.split()[1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith(("router_traffic_spill_rows ", "router_traffic_database_up "))
    }
    assert gauges["router_traffic_spill_rows"] > 0
    assert gauges["router_traffic_database_up"] == 0.0
    proxy.restore()
    served += _drive(client, texts, 150, len(served))
    wait_until(lambda: writer.stats().database_up and writer.stats().spill_pending == 0, 30)
    router.stop()  # flushes the rest, as on SIGTERM
    proxy.close()

    roles = {b["role"] for b in served}
    assert {"champion", "candidate", "fallback"} <= roles  # the canary kept running
    with session_scope(direct) as session:
        rows = session.execute(
            select(Traffic.request_id, Traffic.role).where(
                Traffic.role.in_(("champion", "candidate", "fallback"))
            )
        ).all()
        shadow_rows = session.scalar(
            select(func.count()).select_from(Traffic).where(Traffic.role == "shadow")
        )
    answered = {(r.request_id, r.role) for r in rows}
    for body in served:
        assert (body["request_id"], body["role"]) in answered
    fallbacks = sum(b["role"] == "fallback" for b in served)
    # one row per answer, plus the failed candidate's own row for each fallback
    assert len(rows) == len(served) + fallbacks
    assert shadow_rows == router.service.shadow.completed
    assert all(r.request_id for r in rows)
    with session_scope(direct) as session:
        in_rollout = session.scalar(
            select(func.count()).select_from(Traffic).where(Traffic.rollout_id == rollout_id)
        )
    assert in_rollout == len(rows) + shadow_rows
    direct.dispose()
