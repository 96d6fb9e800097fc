"""Nobody without the right token gets in, bodies stay within their limits, signed links cannot be reused or
forged, and secrets never leak into logs or metrics.

The route, link and size checks run on a fake producer, so they need no broker and run in every CI job;
the same route check runs again over real Kafka, and the secret scan runs the whole stack. The config
loader's warning for a readable secrets file is tested in tests/common/test_config.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from schemas.events import IncidentState
from services.common.demo import WebhookReceiver
from services.common.kafka import ensure_topics
from services.common.links import sign_link
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import write_config
from tests.ingest.test_api_limits import fake_kafka
from tests.ingest.test_operator import incident_event
from tests.integration.test_pipeline import crisis_posts, wait_ready

PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/ack/{token}"}
INGEST = {("POST", "/v1/posts"), ("POST", "/v1/platforms/{platform}/posts")}
TOKENS = {"ingest": "ingest-token-5b1f", "operator": "operator-token-9c2e"}


LINK_SECRET = b"link-secret-for-tests"


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The ingest app with a producer that acks everything: auth, links and limits need no broker."""
    fake_kafka(monkeypatch)
    settings = IngestSettings(
        read_model=False,
        ingest_tokens=(TOKENS["ingest"],),
        operator_tokens=(TOKENS["operator"],),
        link_secret=LINK_SECRET.decode(),
        max_body_bytes=2000,
        max_operator_body_bytes=300,
    )
    app = create_app(settings)
    app.state.read_model.apply(incident_event(1, IncidentState.opened))
    with TestClient(app) as c:
        yield c


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


def _check_every_route(client: TestClient) -> None:
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


def test_every_protected_route_refuses_missing_wrong_and_other_scope_tokens(fake_client):
    _check_every_route(fake_client)


@pytest.mark.kafka
def test_every_protected_route_refuses_bad_tokens_over_real_kafka(client):
    _check_every_route(client)


def test_every_post_route_refuses_a_body_over_its_limit(fake_client):
    posts = [(m, p) for m, p in _routes(fake_client.app) if m == "POST"]
    assert len(posts) >= 4, posts
    for method, path in posts:
        scope = "ingest" if (method, path) in INGEST else "operator"
        url = re.sub(r"\{[^}]+\}", "weibo" if scope == "ingest" else "x", path)
        headers = {"Authorization": f"Bearer {TOKENS[scope]}"}
        limit = 2000 if scope == "ingest" else 300

        def chunks(n: int = limit) -> Iterator[bytes]:
            yield b'{"text": "'
            yield b"x" * n
            yield b'"}'

        declared = fake_client.request(method, url, headers=headers, content=b"x" * (limit + 1))
        streamed = fake_client.request(method, url, headers=headers, content=chunks())
        assert (declared.status_code, streamed.status_code) == (413, 413), (path, declared.text)
        assert f"the limit is {limit}" in declared.json()["detail"]


def _link(now: datetime, ttl: timedelta = timedelta(hours=1), incident: str = "inc1") -> str:
    return sign_link(LINK_SECRET, incident, "xinghe", "ack", now, ttl)


def test_an_ack_link_works_once_and_a_replay_is_refused(fake_client):
    token = _link(datetime.now(UTC))
    assert fake_client.get(f"/v1/ack/{token}").status_code == 200
    first = fake_client.post(f"/v1/ack/{token}")
    assert first.status_code == 200, first.text
    assert "已确认" in first.text
    again = fake_client.post(f"/v1/ack/{token}")
    assert again.status_code == 409
    assert "链接已使用" in again.text


def test_expired_and_tampered_ack_links_are_refused(fake_client):
    expired = _link(datetime.now(UTC) - timedelta(days=2))
    body, mac = _link(datetime.now(UTC)).split(".")
    other_body = _link(datetime.now(UTC), incident="inc2").split(".")[0]
    forged = sign_link(b"not-the-secret", "inc1", "xinghe", "ack", datetime.now(UTC), timedelta(hours=1))
    for token in (expired, f"{other_body}.{mac}", f"{body}.{mac[:-2]}AA", forged, "garbage", f"{body}."):
        for method in ("GET", "POST"):
            resp = fake_client.request(method, f"/v1/ack/{token}")
            assert resp.status_code == 403, (token, method, resp.status_code)
    assert "expired" in fake_client.get(f"/v1/ack/{expired}").text


def test_public_routes_are_only_health_metrics_and_signed_links(fake_client):
    client = fake_client
    public = {p for p in client.app.openapi()["paths"] if p in PUBLIC}
    assert public == PUBLIC
    assert client.get("/v1/ack/not-a-token").status_code in (403, 404)


@pytest.mark.kafka
async def test_secrets_never_appear_in_logs_or_metrics(secure_kafka, stack_factory, tmp_path):
    # The stack logs in to a SASL_SSL listener with a client certificate whose key is encrypted: the Kafka
    # password and the key password are secrets too.
    kafka_env = secure_kafka.client_env(mtls=True)
    secrets = {
        "hook": "hook-secret-41d8",
        "link": "link-secret-77aa",
        "robot": "robot-token-3f9a",
        **TOKENS,
        "kafka password": kafka_env["YUQING_KAFKA_SASL_PASSWORD"],
        "kafka key password": kafka_env["YUQING_KAFKA_SSL_KEY_PASSWORD"],
    }
    with WebhookReceiver(secrets["hook"]) as receiver:
        # A robot-style URL whose query string is the credential, as DingTalk and WeCom robots have.
        robot = f"{receiver.url}?access_token={secrets['robot']}"
        config = write_config(
            tmp_path / "c.yaml",
            notifier={
                "channels": [{"name": "h", "type": "webhook", "url": robot, "secret": secrets["hook"]}],
                "group_wait_seconds": 1,
            },
        )
        env = {
            "YUQING_INGEST_TOKENS": secrets["ingest"],
            "YUQING_OPERATOR_TOKENS": secrets["operator"],
            "YUQING_LINK_SECRET": secrets["link"],
            "YUQING_LOG_LEVEL": "debug",
            **kafka_env,
        }
        stack = stack_factory(config, extra_env=env)
        api = f"http://127.0.0.1:{stack.api_port}"
        await wait_ready(api, stack)
        async with httpx.AsyncClient() as c:
            ok = await c.post(
                f"{api}/v1/posts",
                json=crisis_posts(datetime.now(UTC)),
                headers={"Authorization": f"Bearer {secrets['ingest']}"},
            )
            assert ok.status_code == 202
            await c.post(
                f"{api}/v1/posts", json={}, headers={"Authorization": f"Bearer {secrets['operator']}"}
            )
            # Debug logging of every Kafka request over TLS is slow on a busy machine: wait up to a minute.
            for _ in range(300):
                if receiver.alerts:
                    break
                await asyncio.sleep(0.2)
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
