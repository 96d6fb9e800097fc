"""`yuqing demo`: the whole stack on a bundled sample crisis, checked end to end."""

from __future__ import annotations

import asyncio
import hmac
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer

from schemas.events import Alert, Delivery, IncidentEvent, TierChange
from schemas.topics import Topics
from services.cli.runner import Stack
from services.common import json
from services.common.broker import EmbeddedBroker, free_port
from services.common.config import bundled_config_path
from services.common.exceptions import DemoFailed, YuqingError
from services.common.kafka_security import client_kwargs
from services.notifier.channels import sign

__all__ = ["WebhookReceiver", "load_sample", "run_demo"]

_SECRET = "demo-secret"  # noqa: S105 - a throwaway secret for the local receiver


class WebhookReceiver:
    """A local HTTP receiver that checks the HMAC signature of every alert it gets."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.alerts: list[dict[str, Any]] = []
        self.bad_signatures = 0
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ts = self.headers.get("X-Yuqing-Timestamp", "")
                expected = "sha256=" + sign(receiver.secret, ts, body)
                if not hmac.compare_digest(expected, self.headers.get("X-Yuqing-Signature", "")):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.alerts.append({"received_at": datetime.now(UTC), **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def load_sample(now: datetime | None = None) -> list[dict[str, Any]]:
    """The bundled crisis, sorted by event time and shifted so that it ends a minute ago."""
    raw = (resources.files("services.common") / "data" / "sample_crisis.jsonl").read_text(encoding="utf-8")
    posts = [json.loads(line) for line in raw.splitlines() if line.strip()]
    posts.sort(key=lambda p: datetime.fromisoformat(p["event_time"]))
    last = max(datetime.fromisoformat(p["event_time"]) for p in posts)
    shift = (now or datetime.now(UTC)) - timedelta(minutes=1) - last
    for p in posts:
        for field in ("event_time", "published_at"):
            p[field] = (datetime.fromisoformat(p[field]) + shift).isoformat()
    return posts


def write_config(path: Path, webhook_url: str, data_dir: Path) -> Path:
    config = yaml.safe_load(bundled_config_path().read_text(encoding="utf-8"))
    config["notifier"] = {
        "channels": [
            {"name": "demo-webhook", "type": "webhook", "url": webhook_url, "secret": _SECRET},
            {"name": "demo-file", "type": "file", "path": str(data_dir / "alerts.jsonl")},
        ],
        "group_wait_seconds": 2,
        "group_interval_seconds": 10,
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return path


class _Collector:
    def __init__(self, bootstrap: str, topics: Topics, client: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.client = client or {}  # security arguments, as the stack's services have them
        self.tier_changes: list[TierChange] = []
        self.incidents: list[IncidentEvent] = []
        self.alerts: list[Alert] = []
        self.deliveries: list[Delivery] = []

    async def run(self, stop: asyncio.Event) -> None:
        t = self.topics
        consumer = AIOKafkaConsumer(
            t.tier_changes,
            t.incidents,
            t.alerts,
            t.deliveries,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **self.client,
        )
        await consumer.start()
        kinds = {
            t.tier_changes: (TierChange, self.tier_changes),
            t.incidents: (IncidentEvent, self.incidents),
            t.alerts: (Alert, self.alerts),
            t.deliveries: (Delivery, self.deliveries),
        }
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    model, sink = kinds[tp.topic]
                    sink.extend(model.model_validate_json(r.value) for r in records)  # type: ignore[attr-defined]
        finally:
            await consumer.stop()


def _stack_for_demo(workdir: Path, config: Path, prefix: str) -> Stack:
    env = {
        "YUQING_TOPIC_PREFIX": prefix,
        "YUQING_CONFIG_FILE": str(config),
        "YUQING_DATA_DIR": str(workdir),
        "YUQING_PARTITIONS": "3",
        "YUQING_LOG_LEVEL": "warn",
    }
    stack = Stack(
        env=env,
        log_dir=workdir / "logs",
        api_port=free_port(),
        desk_port=free_port(),
        web_ports={s: free_port() for s in ("scoring", "escalation", "notifier")},
    )
    if not os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
        running = EmbeddedBroker()
        if running.status():  # a `yuqing dev` broker is up: share it (our topics have their own prefix)
            stack.env.update(running.client_env())  # its address, and its TLS/SASL settings if it has them
        else:
            stack.broker = EmbeddedBroker(port=free_port(), home=workdir / "broker")
    return stack


async def _feed(api: str, posts: list[dict[str, Any]], stack: Stack, deadline: float, speed: float) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            try:
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or stack.check():
                raise DemoFailed("the ingest API never answered /readyz 200; expected it within the budget")
            await asyncio.sleep(0.3)
        # Pace the crisis at compressed real time, as a live feed arrives. In a burst of three hours of posts
        # the partitions run ahead of one another: every hit still counts, but a tier can be reported at a
        # later minute than a live feed shows.
        first = datetime.fromisoformat(posts[0]["event_time"])
        t0 = time.monotonic()
        batch: list[dict[str, Any]] = []
        for post in posts:
            due = (datetime.fromisoformat(post["event_time"]) - first).total_seconds() / speed
            if batch and time.monotonic() - t0 < due:
                await _send(client, api, batch)
                batch = []
                await asyncio.sleep(max(0.0, due - (time.monotonic() - t0)))
            batch.append(post)
        await _send(client, api, batch)


async def _send(client: httpx.AsyncClient, api: str, batch: list[dict[str, Any]]) -> None:
    try:
        resp = await client.post(f"{api}/v1/posts", content=json.dumps(batch))
    except httpx.HTTPError as exc:
        raise DemoFailed(f"sending sample posts to {api} failed: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 202:
        raise DemoFailed(
            f"ingest answered {resp.status_code} to a batch of sample posts, expected 202: {resp.text[:500]}"
        )


def _latencies(c: _Collector) -> list[float]:
    """Keyword hit -> alert delivered, as the notifier measured it for each delivered alert."""
    return sorted(
        d.latency_seconds
        for d in c.deliveries
        if d.outcome.value == "delivered" and d.latency_seconds is not None
    )


def _missing(c: _Collector, r: WebhookReceiver) -> list[str]:
    """What the demo has not seen yet; empty when it has shown everything it must."""
    ups = [int(tc.tier) for tc in c.tier_changes if tc.direction == "up"]
    checks = {
        "tier changes up to level 3, then 2, then 1": ups[:3] == [3, 2, 1],
        "an opened incident with its SLA deadlines": any(
            e.kind.value == "opened" and e.deadlines for e in c.incidents
        ),
        "a delivered alert with its measured hit-to-alert latency": bool(_latencies(c)),
        "a keyword-hit alert at the webhook": any(a["kind"] == "keyword_hits" for a in r.alerts),
        "an incident-opened alert at the webhook": any(a["kind"] == "incident_opened" for a in r.alerts),
    }
    missing = [what for what, ok in checks.items() if not ok]
    if r.bad_signatures:
        missing.append(f"valid webhook signatures ({r.bad_signatures} bad)")
    return missing


async def _run(budget: float, speed: float) -> int:
    started = time.monotonic()
    deadline = started + budget
    prefix = f"yuqing-demo-{int(time.time())}."
    with tempfile.TemporaryDirectory(prefix="yuqing-demo-") as tmp, WebhookReceiver(_SECRET) as receiver:
        workdir = Path(tmp)
        config = write_config(workdir / "config.yaml", receiver.url, workdir)
        posts = load_sample()
        span = datetime.fromisoformat(posts[-1]["event_time"]) - datetime.fromisoformat(
            posts[0]["event_time"]
        )
        print(
            f"demo: {len(posts)} sample posts over {span}, replayed {speed:.0f}x faster than real time "
            f"({span.total_seconds() / speed:.0f}s); topics {prefix}*, webhook {receiver.url}"
        )
        stack = _stack_for_demo(workdir, config, prefix)
        collector: _Collector | None = None
        failure: str | None = None
        crashed: list[str] = []
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        try:
            # Starting the broker and creating topics block: keep them off the event loop.
            await asyncio.to_thread(stack.start)
            collector = _Collector(
                stack.bootstrap_addr, Topics.with_prefix(prefix), client_kwargs(stack.settings)
            )
            task = asyncio.create_task(collector.run(stop))
            api = f"http://127.0.0.1:{stack.api_port}"
            await _feed(api, posts, stack, deadline, speed)
            print(f"demo: {len(posts)} posts accepted by {api} in {time.monotonic() - started:.1f}s")
            while time.monotonic() < deadline and not stack.check():  # state from three sources: poll it
                if not _missing(collector, receiver):
                    break
                await asyncio.sleep(0.5)
        except YuqingError as exc:
            failure = str(exc)
        finally:
            stop.set()
            if task is not None:
                await task
            crashed = stack.check()
            await asyncio.to_thread(stack.stop)
        collector = collector or _Collector("", Topics.with_prefix(prefix))
        missing = _missing(collector, receiver)
        _summary(collector, receiver, time.monotonic() - started, crashed)
        if failure is None and not missing:
            print("demo: OK")
            return 0
        reasons = ([failure] if failure else []) + ([f"not seen: {'; '.join(missing)}"] if missing else [])
        if crashed:
            reasons.append(f"services exited early: {', '.join(crashed)}")
        print(f"demo: FAILED: {' | '.join(reasons)} (logs were in {workdir / 'logs'})")
        return 1


def _summary(c: _Collector, r: WebhookReceiver, elapsed: float, crashed: list[str]) -> None:
    print("\n== tier changes ==")
    for tc in c.tier_changes:
        print(
            f"  {tc.group}: {int(tc.previous)} -> {int(tc.tier)} ({tc.direction}, {tc.reason})"
            f" counts {tc.counts}"
        )
    print("== incidents ==")
    for e in c.incidents:
        if e.kind.value == "opened":
            dl = ", ".join(f"{d.name} by {d.due_at.isoformat(timespec='minutes')}" for d in e.deadlines)
            print(f"  {e.incident_id} {e.group} tier {int(e.tier)} opened; deadlines: {dl or 'NONE'}")
    delivered = [d for d in c.deliveries if d.outcome.value == "delivered"]
    latencies = _latencies(c)
    print("== alerts ==")
    print(
        f"  {len(c.alerts)} alerts, {len(delivered)} deliveries, {len(r.alerts)} received by the webhook "
        f"(bad signatures: {r.bad_signatures})"
    )
    if latencies:
        median = latencies[len(latencies) // 2]
        print(
            f"  keyword hit -> alert delivered: min {latencies[0]:.1f}s, median {median:.1f}s, "
            f"max {latencies[-1]:.1f}s over {len(latencies)} deliveries (plan: within 600s)"
        )
    else:
        print("  keyword hit -> alert delivered: NOT MEASURED (no delivered alert carried a hit time)")
    if crashed:
        print(f"  services that exited early: {', '.join(crashed)}")
    print(f"  total time {elapsed:.1f}s")


def run_demo(timeout: float = 180.0, speed: float = 270.0) -> int:
    return asyncio.run(_run(timeout, speed))
