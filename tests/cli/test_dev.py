"""`yuqing dev`: the user's ports are kept, a broker the stack did not start is left running, a worker that
exits is started again (within limits), Ctrl-C stops everything cleanly; the HTTP services (ingest, desk)
start while Kafka is down and are ready once Kafka answers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.cli.runner import RestartPolicy, Stack, supervise
from services.common.broker import EmbeddedBroker, free_port
from services.common.exceptions import ConfigError
from services.desk.app import create_app as create_desk
from services.desk.settings import DeskSettings
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import YUQING, write_config

ROOT = Path(__file__).resolve().parents[2]


class _FakeBroker:
    def __init__(self, running: bool) -> None:
        self.running = running
        self.stops = 0
        self.bootstrap = "127.0.0.1:19092"

    def status(self) -> int | None:
        return 4242 if self.running else None

    def start(self) -> int:
        self.running = True
        return 4242

    def stop(self) -> bool:
        self.stops += 1
        self.running = False
        return True

    def client_env(self) -> dict[str, str]:
        return {"YUQING_KAFKA_BOOTSTRAP": self.bootstrap}


@pytest.mark.parametrize(("already_running", "stops"), [(True, 0), (False, 1)])
def test_stack_stops_only_a_broker_it_started(
    monkeypatch: pytest.MonkeyPatch, already_running: bool, stops: int
) -> None:
    monkeypatch.delenv("YUQING_KAFKA_BOOTSTRAP", raising=False)
    broker = _FakeBroker(running=already_running)
    stack = Stack(broker=broker)  # type: ignore[arg-type]
    assert stack.bootstrap() == "127.0.0.1:19092"
    stack.stop()
    assert broker.stops == stops
    assert broker.running is already_running


def test_a_second_instance_under_its_own_key_gets_its_own_web_port() -> None:
    # Two workers of one service on one host: the second on the port of its key, not the first's.
    stack = Stack(web_ports={"notifier": 7003, "notifier-2": 7010})
    stack.bootstrap_addr = "127.0.0.1:9092"
    assert stack.child_env("notifier", 3)["YUQING_WEB_PORT"] == "7003"
    assert stack.child_env("notifier", 3, key="notifier-2")["YUQING_WEB_PORT"] == "7010"


def test_dev_keeps_the_users_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_API_PORT", "9100")
    monkeypatch.setenv("YUQING_DESK_PORT", "9101")
    monkeypatch.setenv("YUQING_WEB_PORT", "7000")
    monkeypatch.delenv("YUQING_PUBLIC_URL", raising=False)
    stack = Stack.from_env()
    stack.bootstrap_addr = "127.0.0.1:9092"
    assert stack.child_env("ingest", 0)["YUQING_API_PORT"] == "9100"
    assert stack.child_env("desk", 4)["YUQING_DESK_PORT"] == "9101"
    # Ack links in the escalation worker's alerts lead to this stack's desk.
    assert stack.child_env("escalation", 2)["YUQING_PUBLIC_URL"] == "http://127.0.0.1:9101"
    assert [stack.child_env(s, i)["YUQING_WEB_PORT"] for i, s in enumerate(("ingest", "scoring"))] == [
        "7000",
        "7001",
    ]
    monkeypatch.setenv("YUQING_PUBLIC_URL", "https://desk.example.cn")
    assert stack.child_env("escalation", 2)["YUQING_PUBLIC_URL"] == "https://desk.example.cn"
    for name in ("YUQING_API_PORT", "YUQING_DESK_PORT", "YUQING_WEB_PORT"):
        monkeypatch.delenv(name)
    defaults = Stack.from_env()
    assert (defaults.api_port, defaults.desk_port, defaults.base_web_port) == (8000, 8001, 6066)
    monkeypatch.setenv("YUQING_API_PORT", "eighty")
    with pytest.raises(ConfigError, match="YUQING_API_PORT: expected a TCP port number, got 'eighty'"):
        Stack.from_env()


def test_dev_options_choose_the_api_and_kafka_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YUQING_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("YUQING_API_PORT", "9100")
    stack = Stack.from_env(api_port=9300, kafka_port=9400)
    assert (stack.api_port, stack.kafka_port) == (9300, 9400)  # the option wins over YUQING_API_PORT
    assert Stack.from_env().kafka_port == 9092
    monkeypatch.setenv("YUQING_KAFKA_BOOTSTRAP", "kafka:9092")
    with pytest.raises(ConfigError, match="--kafka-port is the port of the embedded broker"):
        Stack.from_env(kafka_port=9400)
    bad = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "dev", "--kafka-port", "ninety"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--kafka-port: expected a TCP port number, got 'ninety'" in bad.stderr


def _closed_port() -> int:
    return free_port()  # nothing listens on it once free_port has closed its socket


def _ingest(bootstrap: str, prefix: str = "t-ready.") -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        partitions=1,
        ingest_tokens=("tok-1-for-dev-tests",),
        produce_timeout_seconds=2,
    )


POST = {
    "platform": "weibo",
    "post_id": "p1",
    "text": "星河 投诉",
    "published_at": "2026-11-21T10:00:00+08:00",
    "event_time": "2026-11-21T10:00:00+08:00",
}


def test_ingest_starts_and_answers_503_while_kafka_is_unreachable() -> None:
    app = create_app(_ingest(f"127.0.0.1:{_closed_port()}"))
    with TestClient(app, headers={"Authorization": "Bearer tok-1-for-dev-tests"}) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "not connected to Kafka" in ready.json()["kafka"]
        refused = client.post("/v1/posts", json=POST)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"


def test_the_desk_starts_and_answers_503_while_kafka_is_unreachable() -> None:
    settings = DeskSettings(
        kafka_bootstrap=f"127.0.0.1:{_closed_port()}",
        operator_tokens=("tok-1-for-dev-tests",),
        read_model=False,
        produce_timeout_seconds=2,
    )
    with TestClient(create_desk(settings), headers={"Authorization": "Bearer tok-1-for-dev-tests"}) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "not connected to Kafka" in ready.json()["kafka"]
        assert client.get("/v1/tiers").status_code == 200  # reads need no Kafka
        refused = client.post("/v1/tiers/xinghe/override", json={"tier": 2, "actor": "张三"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert "nothing was published" in refused.json()["detail"]


@contextmanager
def _tcp_forwarder(listen_port: int, target: str) -> Iterator[None]:
    """Forward 127.0.0.1:listen_port to target: Kafka 'comes up' on a port ingest already tried."""
    host, port = target.rsplit(":", 1)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: list[asyncio.base_events.Server] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    async def main() -> None:
        server.append(await asyncio.start_server(handle, "127.0.0.1", listen_port))
        started.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(main()), loop.run_forever()), daemon=True
    )
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(server[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.mark.kafka
def test_ingest_becomes_ready_when_kafka_comes_up(kafka: str, prefix: str) -> None:
    port = _closed_port()
    app = create_app(_ingest(f"127.0.0.1:{port}", prefix))
    with TestClient(app, headers={"Authorization": "Bearer tok-1-for-dev-tests"}) as client:
        assert client.get("/readyz").status_code == 503
        with _tcp_forwarder(port, kafka):
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "ingest never became ready after Kafka came up"
                time.sleep(0.5)
            accepted = client.post("/v1/posts", json=POST)
            assert accepted.status_code == 202, accepted.text


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_block(size: int) -> int:
    """A base port with `size` consecutive free ports (the stream workers take base+1..base+3)."""
    for _ in range(50):
        base = free_port()
        if base + size < 65535 and all(_port_free(base + i) for i in range(size)):
            return base
    raise AssertionError("no block of free ports")


@pytest.mark.kafka
def test_yuqing_dev_runs_and_stops_cleanly_on_sigint(kafka: str, prefix: str, tmp_path: Path) -> None:
    # One block: ports picked one by one may coincide, as none is bound until the stack starts.
    web_base = _free_block(6)
    api_port, desk_port = web_base + 4, web_base + 5
    env = {
        **os.environ,
        "YUQING_KAFKA_BOOTSTRAP": kafka,
        "YUQING_TOPIC_PREFIX": prefix,
        "YUQING_PARTITIONS": "1",
        "YUQING_API_PORT": str(api_port),
        "YUQING_DESK_PORT": str(desk_port),
        "YUQING_WEB_PORT": str(web_base),
        "YUQING_DATA_DIR": str(tmp_path / "data"),
        "YUQING_CONFIG_FILE": str(write_config(tmp_path / "c.yaml")),
        "YUQING_SESSION_TIMEOUT_SECONDS": "6",
        "YUQING_LOG_LEVEL": "warn",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "dev"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "yuqing dev never became ready"
            try:
                ready = [httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2) for p in (api_port, desk_port)]
                if all(r.status_code == 200 for r in ready):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        # The console is on the desk's port, and no longer on the ingest API's.
        assert httpx.get(f"http://127.0.0.1:{desk_port}/console/login", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{api_port}/console/login", timeout=5).status_code == 404
        # The user's YUQING_WEB_PORT was kept: scoring serves on the next port.
        healthz = f"http://127.0.0.1:{web_base + 1}/healthz"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(healthz, timeout=2).json()["service"] == "scoring":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "scoring never served /healthz on YUQING_WEB_PORT + 1"
            time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=45)
        assert proc.returncode == 0, out
        assert time.monotonic() - started < 45
        assert "stopping" in out
        assert f"console http://127.0.0.1:{desk_port}/console" in out
        assert "Traceback" not in out
        assert _port_free(api_port)
        assert _port_free(desk_port)
        assert all(_port_free(web_base + i) for i in (1, 2, 3))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_restart_policy_allows_so_many_exits_per_window() -> None:
    policy = RestartPolicy(limit=2, window_seconds=60)
    assert policy.allow("scoring", 0)
    assert policy.allow("scoring", 10)
    assert not policy.allow("scoring", 20)  # a third exit within a minute
    assert policy.allow("notifier", 20)  # counted per service
    assert policy.allow("scoring", 75)  # the first two are out of the window
    # ...but the one at 20 is not: 20 and 75 are two, 76 a third.
    assert not policy.allow("scoring", 76)


class _Exited:
    def __init__(self, code: int | None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def test_dev_starts_an_exited_worker_again_and_gives_up_on_a_crash_loop() -> None:
    """A worker killed by a record needs two restarts before it dead-letters it: the stack must restart it,
    as k8s does, instead of stopping at the first exit (which left the record in the way for good)."""
    stack = Stack()
    stack.procs = {"scoring": _Exited(70), "ingest": _Exited(None)}  # type: ignore[dict-item]
    started: list[str] = []

    def start_one(name: str, index: int | None = None, key: str | None = None) -> Any:
        started.append(name)
        proc = stack.procs[name] = _Exited(70 if len(started) < 2 else None)  # type: ignore[assignment]
        return proc

    stack.start_one = start_one  # type: ignore[method-assign]
    said: list[str] = []
    ticks = iter(range(100))
    rounds = iter(range(5))
    code = supervise(
        stack,
        RestartPolicy(limit=5, window_seconds=600),
        stopping=lambda: next(rounds, None) is None,
        say=said.append,
        now=lambda: float(next(ticks)),
        sleep=lambda _: None,
    )
    assert code == 0
    assert started == ["scoring", "scoring"]  # died once more after the first restart, then lived
    assert said == ["scoring exited (code 70); starting it again, as k8s would"] * 2

    stack.procs = {"scoring": _Exited(70)}  # type: ignore[dict-item]
    started.clear()

    def always_dies(name: str, index: int | None = None, key: str | None = None) -> Any:
        started.append(name)
        proc = stack.procs[name] = _Exited(70)  # type: ignore[assignment]
        return proc

    stack.start_one = always_dies  # type: ignore[method-assign]
    code = supervise(stack, RestartPolicy(limit=3), lambda: False, said.append, sleep=lambda _: None)
    assert code == 1
    assert len(started) == 3
    assert said[-1] == "scoring exited (code 70) 4 times in 10 minutes; giving up"


@pytest.mark.kafka
def test_a_clean_dev_start_logs_no_error(tmp_path: Path) -> None:
    """`yuqing dev --kafka-port --api-port` on a fresh embedded broker: every topic and the group coordinator
    are new, which used to log aiokafka ERRORs (NotLeaderForPartitionError, GroupCoordinatorNotAvailable)
    an operator reads as broken. Nothing at ERROR, and the services log at their default level (info)."""
    kafka_port, api_port, desk_port, web_base = free_port(), free_port(), free_port(), _free_block(4)
    cache = tmp_path / "cache"  # the broker's home under it; the jars are the machine's
    cache.mkdir()
    jars = EmbeddedBroker(port=kafka_port).fetch().parent  # resolved once per machine
    (cache / jars.name).symlink_to(jars)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env |= {
        "YUQING_CACHE_DIR": str(cache),
        "YUQING_WEB_PORT": str(web_base),
        "YUQING_DESK_PORT": str(desk_port),
        "YUQING_CONFIG_FILE": str(write_config(tmp_path / "c.yaml")),
        "YUQING_SESSION_TIMEOUT_SECONDS": "6",
    }
    proc = subprocess.Popen(
        [*YUQING, "dev", "--kafka-port", str(kafka_port), "--api-port", str(api_port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        pending = {f"http://127.0.0.1:{api_port}/readyz", f"http://127.0.0.1:{desk_port}/readyz"} | {
            f"http://127.0.0.1:{web_base + i}/healthz" for i in (1, 2, 3)
        }
        while pending:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, f"never ready: {pending}"
            for url in list(pending):
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        pending.discard(url)
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        time.sleep(5)  # the workers' first rounds of fetches, commits and lag measurements
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert f"starting embedded Kafka on 127.0.0.1:{kafka_port}" in out
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / ".yuqing-data" / "logs").glob("*.log")}
    assert set(logs) == {"ingest.log", "desk.log", "scoring.log", "escalation.log", "notifier.log"}
    assert "Starting..." in logs["escalation.log"], "the workers log at info: the test would see an ERROR"
    errors = [
        f"{name}: {line}"
        for name, text in [("dev", out), *logs.items()]
        for line in text.splitlines()
        if re.search(r"\bERROR\b|\bCRITICAL\b|Traceback", line)
    ]
    assert errors == []
    assert _port_free(kafka_port), "the broker the stack started was not stopped with it"
