"""Nobody without the right token gets in, and secrets never leak into logs or metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.testclient import TestClient

from services.common.demo import WebhookReceiver
from services.common.kafka import ensure_topics
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import write_config
from tests.integration.test_pipeline import crisis_posts, wait_ready

pytestmark = pytest.mark.kafka

PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/ack/{token}"}
INGEST = {("POST", "/v1/posts"), ("POST", "/v1/platforms/{platform}/posts")}
TOKENS = {"ingest": "ingest-token-5b1f", "operator": "operator-token-9c2e"}


@pytest.fixture
async def client(kafka: str, prefix: str) -> AsyncIterator[TestClient]:
    settings = IngestSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=1,
        read_model=False,
        ingest_tokens=(TOKENS["ingest"],),
        operator_tokens=(TOKENS["operator"],),
    )
    await ensure_topics(settings)
    with TestClient(create_app(settings)) as c:
        yield c


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, path) in the OpenAPI document that is not public."""
    paths = app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p not in PUBLIC for m in ops]


def test_every_protected_route_refuses_missing_wrong_and_other_scope_tokens(client):
    routes = _routes(client.app)
    assert len(routes) >= 8, routes
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x", path)
        scope = "ingest" if (method, path) in INGEST else "operator"
        other = "operator" if scope == "ingest" else "ingest"
        cases = {None: 401, "Bearer nope": 403, f"Bearer {TOKENS[other]}": 403, "Basic abc": 401}
        for header, expected in cases.items():
            headers = {"Authorization": header} if header else {}
            resp = client.request(method, url, headers=headers, json={})
            assert resp.status_code == expected, (method, path, header, resp.status_code, resp.text)
        ok = client.request(method, url, headers={"Authorization": f"Bearer {TOKENS[scope]}"}, json={})
        assert ok.status_code not in (401, 403), (method, path)


def test_public_routes_are_only_health_metrics_and_signed_links(client):
    public = {p for p in client.app.openapi()["paths"] if p in PUBLIC}
    assert public == PUBLIC
    assert client.get("/v1/ack/not-a-token").status_code in (403, 404)


async def test_secrets_never_appear_in_logs_or_metrics(kafka, stack_factory, tmp_path):
    secrets = {"hook": "hook-secret-41d8", "link": "link-secret-77aa", **TOKENS}
    with WebhookReceiver(secrets["hook"]) as receiver:
        config = write_config(
            tmp_path / "c.yaml",
            notifier={
                "channels": [
                    {"name": "h", "type": "webhook", "url": receiver.url, "secret": secrets["hook"]}
                ],
                "group_wait_seconds": 1,
            },
        )
        env = {
            "YUQING_INGEST_TOKENS": secrets["ingest"],
            "YUQING_OPERATOR_TOKENS": secrets["operator"],
            "YUQING_LINK_SECRET": secrets["link"],
            "YUQING_LOG_LEVEL": "debug",
        }
        stack = stack_factory(config, extra_env=env)
        api = f"http://127.0.0.1:{stack.api_port}"
        await wait_ready(api, stack)
        async with httpx.AsyncClient() as c:
            ok = await c.post(
                f"{api}/v1/posts",
                json=crisis_posts(__import__("datetime").datetime.now(__import__("datetime").UTC)),
                headers={"Authorization": f"Bearer {secrets['ingest']}"},
            )
            assert ok.status_code == 202
            await c.post(
                f"{api}/v1/posts", json={}, headers={"Authorization": f"Bearer {secrets['operator']}"}
            )
            for _ in range(100):
                if receiver.alerts:
                    break
                await __import__("asyncio").sleep(0.2)
            assert receiver.alerts, "no alert was delivered"
            pages = [(await c.get(f"{api}/metrics")).text]
            for service in ("scoring", "escalation", "notifier"):
                pages.append((await c.get(f"http://127.0.0.1:{stack.web_ports[service]}/metrics")).text)
    stack.stop()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert len(logs) > 1000, "debug logs were expected"
    for name, value in secrets.items():
        assert value not in logs, f"{name} secret found in logs"
        for page in pages:
            assert value not in page, f"{name} secret found in /metrics"
