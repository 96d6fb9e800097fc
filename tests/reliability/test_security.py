"""Nobody without the right token gets in, bodies stay within their limits, signed links cannot be reused or
forged, and secrets never leak into logs or metrics.

The route, link and size checks run on a fake producer, so they need no broker and run in every CI job;
the same route check runs again over real Kafka, and the secret scan runs the whole stack. The config
loader's warning for a readable secrets file is tested in tests/common/test_config.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from schemas.events import IncidentAction, IncidentState, TierOverride
from services.cli.demo import WebhookReceiver
from services.common.broker import free_port
from services.common.config import load_config
from services.common.csvfile import safe_cell
from services.common.kafka import ensure_topics
from services.common.links import sign_link
from services.desk.app import create_app as create_desk
from services.desk.console import Sessions
from services.desk.settings import DeskSettings
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import write_config
from tests.desk.test_operator import incident_event
from tests.desk.world import desk_app
from tests.factories import assert_csv_neutralised, formula_hits
from tests.ingest.test_api_limits import fake_kafka
from tests.integration.test_pipeline import crisis_posts, wait_ready

PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/ack/{token}"}
TOKENS = {"ingest": "ingest-token-5b1f-0123", "operator": "operator-token-9c2e-0123"}
# The scope each service's routes take, the other one's token, and the body limit the fake clients set.
SCOPES = {"ingest": ("ingest", "operator", 2000), "desk": ("operator", "ingest", 300)}


LINK_SECRET = b"link-secret-for-tests"


class _Nowhere:
    async def action(self, group: str, action: IncidentAction) -> None:
        pass

    async def override(self, group: str, command: TierOverride) -> None:
        pass


@pytest.fixture
def fake_ingest(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The ingest app with a producer that acks everything: auth and limits need no broker."""
    fake_kafka(monkeypatch)
    with TestClient(create_app(IngestSettings(ingest_tokens=(TOKENS["ingest"],), max_body_bytes=2000))) as c:
        yield c


@pytest.fixture
def fake_desk() -> Iterator[TestClient]:
    """The desk with a publisher that takes everything: auth, links and limits need no broker."""
    app = desk_app(
        load_config(),
        _Nowhere(),
        operator_tokens=(TOKENS["operator"],),
        link_secret=LINK_SECRET.decode(),
        max_operator_body_bytes=300,
    )
    app.state.desk.model.apply(incident_event(1, IncidentState.opened))
    with TestClient(app) as c:
        yield c


@pytest.fixture
async def real_ingest(kafka: str, prefix: str) -> AsyncIterator[TestClient]:
    settings = IngestSettings(
        kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, ingest_tokens=(TOKENS["ingest"],)
    )
    await ensure_topics(settings)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
async def real_desk(kafka: str, prefix: str) -> AsyncIterator[TestClient]:
    settings = DeskSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=1,
        read_model=False,
        operator_tokens=(TOKENS["operator"],),
    )
    await ensure_topics(settings)
    with TestClient(create_desk(settings)) as c:
        yield c


def _routes(app) -> list[tuple[str, str]]:
    """Every (method, path) in the OpenAPI document that is not public."""
    paths = app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p not in PUBLIC for m in ops]


def _check_every_route(client: TestClient, service: str) -> None:
    routes = _routes(client.app)
    assert len(routes) >= (2 if service == "ingest" else 7), routes
    scope, other, _ = SCOPES[service]
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x", path)
        cases = {None: 401, "Bearer nope": 403, f"Bearer {TOKENS[other]}": 403, "Basic abc": 401}
        for header, expected in cases.items():
            headers = {"Authorization": header} if header else {}
            resp = client.request(method, url, headers=headers, json={})
            assert resp.status_code == expected, (method, path, header, resp.status_code, resp.text)
        ok = client.request(method, url, headers={"Authorization": f"Bearer {TOKENS[scope]}"}, json={})
        assert ok.status_code not in (401, 403), (method, path)


@pytest.mark.parametrize("service", ["ingest", "desk"])
def test_every_protected_route_refuses_missing_wrong_and_other_scope_tokens(request, service):
    _check_every_route(request.getfixturevalue(f"fake_{service}"), service)


@pytest.mark.kafka
@pytest.mark.parametrize("service", ["ingest", "desk"])
def test_every_protected_route_refuses_bad_tokens_over_real_kafka(request, service):
    _check_every_route(request.getfixturevalue(f"real_{service}"), service)


@pytest.mark.parametrize("service", ["ingest", "desk"])
def test_every_post_route_refuses_a_body_over_its_limit(request, service):
    client = request.getfixturevalue(f"fake_{service}")
    posts = [(m, p) for m, p in _routes(client.app) if m == "POST"]
    assert len(posts) >= 2, posts
    scope, _, limit = SCOPES[service]
    for method, path in posts:
        url = re.sub(r"\{[^}]+\}", "weibo" if service == "ingest" else "x", path)
        headers = {"Authorization": f"Bearer {TOKENS[scope]}"}

        def chunks(n: int = limit) -> Iterator[bytes]:
            yield b'{"text": "'
            yield b"x" * n
            yield b'"}'

        declared = client.request(method, url, headers=headers, content=b"x" * (limit + 1))
        streamed = client.request(method, url, headers=headers, content=chunks())
        assert (declared.status_code, streamed.status_code) == (413, 413), (path, declared.text)
        assert f"the limit is {limit}" in declared.json()["detail"]


def _link(now: datetime, ttl: timedelta = timedelta(hours=1), incident: str = "inc1") -> str:
    return sign_link(LINK_SECRET, incident, "xinghe", "ack", now, ttl)


def test_an_ack_link_works_once_and_a_replay_is_refused(fake_desk):
    token = _link(datetime.now(UTC))
    assert fake_desk.get(f"/v1/ack/{token}").status_code == 200
    first = fake_desk.post(f"/v1/ack/{token}")
    assert first.status_code == 200, first.text
    assert "已确认" in first.text
    again = fake_desk.post(f"/v1/ack/{token}")
    assert again.status_code == 409
    assert "链接已使用" in again.text


def test_an_ack_link_does_only_the_action_it_was_signed_for(fake_desk):
    """A link signed for another action (resolve, say) is refused, not taken as an ack."""
    now = datetime.now(UTC)
    for action in ("resolve", "meeting_convened", "", "ACK"):
        token = sign_link(LINK_SECRET, "inc1", "xinghe", action, now, timedelta(hours=1))
        for method in ("GET", "POST"):
            resp = fake_desk.request(method, f"/v1/ack/{token}")
            assert resp.status_code == 403, (action, method, resp.status_code)
            assert f"this link was signed for {action!r}" in html.unescape(resp.text)
    assert fake_desk.post(f"/v1/ack/{_link(now)}").status_code == 200  # the ack it was signed for works


def test_the_link_secret_cannot_forge_a_console_session(fake_desk):
    """The console once signed sessions with a key derived from YUQING_LINK_SECRET: whoever held the link
    secret and the key id of any old cookie could make a session for any name. Its key is its own now."""
    derived = hmac.new(LINK_SECRET, b"yuqing console sessions", hashlib.sha256).digest()
    forged = Sessions([TOKENS["operator"]], derived).issue(TOKENS["operator"], "mallory", datetime.now(UTC))
    resp = fake_desk.get(
        "/console/board", headers={"Cookie": f"yuqing-console={forged}"}, follow_redirects=False
    )
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/console/login")
    real = fake_desk.post(
        "/console/login", data={"actor": "值班", "token": TOKENS["operator"]}, follow_redirects=False
    )
    assert real.status_code == 303
    assert fake_desk.get("/console/board").status_code == 200


def test_expired_and_tampered_ack_links_are_refused(fake_desk):
    expired = _link(datetime.now(UTC) - timedelta(days=2))
    body, mac = _link(datetime.now(UTC)).split(".")
    other_body = _link(datetime.now(UTC), incident="inc2").split(".")[0]
    forged = sign_link(b"not-the-secret", "inc1", "xinghe", "ack", datetime.now(UTC), timedelta(hours=1))
    for token in (expired, f"{other_body}.{mac}", f"{body}.{mac[:-2]}AA", forged, "garbage", f"{body}."):
        for method in ("GET", "POST"):
            resp = fake_desk.request(method, f"/v1/ack/{token}")
            assert resp.status_code == 403, (token, method, resp.status_code)
    assert "expired" in fake_desk.get(f"/v1/ack/{expired}").text


def test_the_ledger_csv_export_neutralises_formulas_from_post_text(fake_desk):
    for h in formula_hits():
        fake_desk.app.state.desk.model.apply(h)
    resp = fake_desk.get(
        "/v1/ledger", params={"format": "csv"}, headers={"Authorization": f"Bearer {TOKENS['operator']}"}
    )
    assert resp.status_code == 200
    assert_csv_neutralised(resp.content)
    for text in ("\t=1+1", "\r=1+1", "=1", "+1", "-1", "@A1"):
        assert safe_cell(text) == "'" + text
    assert [safe_cell(v) for v in ("星河 =1", "", None, -5, 3)] == ["星河 =1", "", None, -5, 3]


def test_public_routes_are_only_health_metrics_and_signed_links(fake_ingest, fake_desk):
    public = {p for p in fake_desk.app.openapi()["paths"] if p in PUBLIC}
    assert public == PUBLIC
    assert fake_desk.get("/v1/ack/not-a-token").status_code in (403, 404)
    assert {p for p in fake_ingest.app.openapi()["paths"] if p in PUBLIC} == PUBLIC - {"/v1/ack/{token}"}


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
            pages.append((await c.get(f"http://127.0.0.1:{stack.desk_port}/metrics")).text)
            for service in ("scoring", "escalation", "notifier"):
                pages.append((await c.get(f"http://127.0.0.1:{stack.web_ports[service]}/metrics")).text)
    stack.stop()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert len(logs) > 1000, "debug logs were expected"
    for name, value in secrets.items():
        assert value not in logs, f"{name} secret found in logs"
        for page in pages:
            assert value not in page, f"{name} secret found in /metrics"


# ---- start-up errors ---------------------------------------------------------------------------------------

_STARTUP_SECRETS = {
    "YUQING_INGEST_TOKENS": "ingest-startup-4c1d9e",
    "YUQING_OPERATOR_TOKENS": "operator-startup-7b2a5f",
    "YUQING_LINK_SECRET": "link-startup-3e8f0a1b",
    "YUQING_CONSOLE_SECRET": "console-startup-6d4c2b",
}


def _refusal(service: str, env: dict[str, str]) -> str:
    """Run `yuqing worker <service>` with `env` over the secrets; it must refuse to start. Its output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "worker", service],
        env={**base, "YUQING_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", **_STARTUP_SECRETS, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_secrets_never_appear_in_start_up_errors(tmp_path):
    """Each way the real CLI refuses bad settings, with every secret set: the refusal names the setting and
    shows none of the secrets (the first case printed the whole environment, secrets included)."""
    hook_secret = "hook-startup-9f8e7d6c"
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'notifier:\n  channels:\n    - secret: "{hook_secret}\n      url: [\n')
    broken.chmod(0o600)
    cases = [
        (
            "desk",
            {"YUQING_DESK_HOST": "0.0.0.0", "YUQING_OPERATOR_TOKENS": ""},  # noqa: S104
            "operator_tokens is empty",
        ),
        (
            "ingest",
            {"YUQING_API_HOST": "0.0.0.0", "YUQING_INGEST_TOKENS": ""},  # noqa: S104
            "ingest_tokens is empty",
        ),
        ("ingest", {"YUQING_API_PORT": "eighty"}, "YUQING_API_PORT"),
        (
            "desk",
            {"YUQING_OPERATOR_TOKENS": f"{_STARTUP_SECRETS['YUQING_OPERATOR_TOKENS']},short"},
            "token 2",
        ),
        (
            "desk",
            {"YUQING_CONSOLE_SECRET": _STARTUP_SECRETS["YUQING_LINK_SECRET"]},
            "YUQING_CONSOLE_SECRET",
        ),
        ("ingest", {"YUQING_CONFIG_FILE": str(broken)}, "not valid YAML"),
        ("desk", {"YUQING_CONFIG_FILE": str(broken)}, "not valid YAML"),
        (
            "escalation",
            {"YUQING_TICK_SECONDS": "-1", "YUQING_LINK_SECRET": "short-link"},
            "YUQING_LINK_SECRET",
        ),
    ]
    for service, env, named in cases:
        output = _refusal(service, env)
        assert named in output, (env, output)
        for name, value in {**_STARTUP_SECRETS, "hook": hook_secret, "short": "short-link"}.items():
            assert value not in output, (env, name, output)
        assert "{" not in output, output  # no settings dict in any form


# ---- the API process under hostile bodies ------------------------------------------------------------------

_MB = 1024 * 1024
_RSS_BOUND = 300 * _MB  # the acceptance bound: generous next to the ~110 MB an idle API takes
_POST_BYTES = 300 * _MB


# Each HTTP service: the variable of its port, and a POST route that reads the body (no tokens are set here).
_HTTP = {"ingest": ("YUQING_API_PORT", "/v1/posts"), "desk": ("YUQING_DESK_PORT", "/console/login")}


def _http_env(service: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a real `yuqing worker <service>` that needs no broker: its Kafka never answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        _HTTP[service][0]: str(port),
        "YUQING_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "YUQING_READ_MODEL": "false",
        "YUQING_PRODUCE_TIMEOUT_SECONDS": "1",
        **extra,
    }


@contextlib.contextmanager
def _http_process(service: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "worker", service],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{env[_HTTP[service][0]]}"
            for _ in range(150):
                assert proc.poll() is None, log.read_text(errors="replace")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise AssertionError(f"{service} never answered /healthz")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _memory(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of a process in bytes, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _stream_post(port: int, path: str, chunked: bool, stop: threading.Event) -> tuple[str, int]:
    """POST `_POST_BYTES` of form to `path`, chunk by chunk from one 64 KB buffer, reading the answer as
    soon as there is one. Returns (status line or how the connection ended, bytes sent)."""
    chunk = b"x" * 65_536
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {_POST_BYTES}\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + framing
        + b"\r\n"
    )
    piece = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") if chunked else chunk
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head + (b"%x\r\nactor=a&token=\r\n" % 14 if chunked else b"actor=a&token="))
        pending = memoryview(piece)
        try:
            while sent < _POST_BYTES and not stop.is_set():
                readable, writable, _ = select.select([sock], [sock], [], 1.0)
                if readable:
                    answer = sock.recv(4096)
                    return (answer.split(b"\r\n", 1)[0].decode() if answer else "closed"), sent
                if writable:
                    n = sock.send(pending)
                    pending = pending[n:]
                    if not pending:
                        sent += len(chunk)
                        pending = memoryview(piece)
            if stop.is_set():
                return "stopped by the memory watch", sent
            sock.settimeout(10)
            answer = sock.recv(4096)
            return (answer.split(b"\r\n", 1)[0].decode() if answer else "closed"), sent
        except (ConnectionResetError, BrokenPipeError):
            return "reset", sent


@pytest.mark.parametrize("service", ["desk", "ingest"])
def test_parallel_oversized_posts_keep_the_api_memory_bounded(tmp_path, service):
    """Four parallel 300 MB bodies (login forms on the desk, posts on ingest), two with a Content-Length and
    two chunked, streamed from a 64 KB buffer: the real process stays under 300 MB resident (it went to
    1.6 GB when the console buffered every body before checking its size) and still answers afterwards."""
    port = free_port()
    with _http_process(service, _http_env(service, port), tmp_path / f"{service}.log") as proc:
        stop = threading.Event()
        peak = {"rss": 0}

        def watch() -> None:
            while not stop.is_set():
                rss, _ = _memory(proc.pid)
                peak["rss"] = max(peak["rss"], rss)
                if rss > _RSS_BOUND:
                    stop.set()  # the bound is broken: stop feeding it rather than exhaust the machine
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with ThreadPoolExecutor(4) as pool:
            streams = [
                pool.submit(_stream_post, port, _HTTP[service][1], chunked, stop)
                for chunked in (False, True, False, True)
            ]
            results = [s.result() for s in streams]
        stop.set()
        watcher.join()
        _, high_water = _memory(proc.pid)
        assert max(peak["rss"], high_water) < _RSS_BOUND, (
            f"{service} peaked at {max(peak['rss'], high_water) / _MB:.0f} MB resident; results {results}"
        )
        for status, _sent in results:
            assert status.startswith("HTTP/1.1 413") or status == "reset", results
        assert any(status.startswith("HTTP/1.1 413") for status, _ in results), results
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
