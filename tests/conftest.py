"""One real Kafka broker per test session (and, for the tests that need them, one secured broker and one
three-node cluster), and factories for topics, stacks and consumers."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import Topics
from services.cli.runner import Stack
from services.common.broker import EmbeddedBroker, free_port, free_ports
from services.common.config import bundled_config_path
from tests.pg import PgCluster, find_bindir

# tests.processes marks the processes a longer-lived fixture owns: its hook must see session fixtures, which a
# conftest's hooks do not. pytester runs the leak checks on tests made to leak (tests/test_processes.py).
pytest_plugins = ["pytester", "tests.processes"]
_counter = itertools.count()
YUQING = (sys.executable, "-m", "services.cli.main")  # the `yuqing` command of this checkout

# A teardown may signal a process and not wait for it: after this long it has leaked (a worker takes at most
# 8 s to stop, services/common/shutdown.py). tests/test_processes.py shortens it for its leaking tests.
_GRACE_SECONDS = float(os.environ.get("YUQING_TEST_LEAK_GRACE_SECONDS", "10"))


@pytest.fixture(scope="session", autouse=True)
def _no_process_outlives_the_suite() -> Iterator[None]:
    """Fails the suite when a process it started still runs once every fixture is torn down (this one
    is set up first, so it is torn down last); the processes are killed, so that none outlives pytest."""
    from tests import processes  # imported as a plugin first (pytest_plugins), so its asserts are rewritten

    before = processes.running()
    yield
    left = processes.outliving(before, _GRACE_SECONDS)
    if left:
        processes.end(left)
        pytest.fail(f"processes of this test session outlived it (now killed): {_listed(left)}")


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test whose processes still run after its teardown (a process a longer-lived fixture
    started belongs to that fixture), and kills them."""
    from tests import processes

    before = processes.running()
    yield
    left = processes.outliving(before, _GRACE_SECONDS) - processes.OWNED
    if left:
        processes.end(left)
        pytest.fail(f"{request.node.nodeid} left processes running (now killed): {_listed(left)}")


def _listed(procs: set[Any]) -> str:
    return "; ".join(f"pid {p.pid}: {p.command}" for p in sorted(procs))


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's desk gets its own SQLite store: the default one sits in YUQING_DATA_DIR."""
    monkeypatch.setenv("YUQING_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for the session (tests/pg.py); `pg_url` gives each test a database."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            "no PostgreSQL binaries on PATH nor in /usr/lib/postgresql/*/bin: apt-get install postgresql"
        )
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(postgres: PgCluster) -> str:
    """The URL of a fresh, empty PostgreSQL database."""
    return postgres.new_database()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real single-node Kafka (KRaft) started for this session."""
    if os.environ.get("YUQING_TEST_BOOTSTRAP"):
        yield os.environ["YUQING_TEST_BOOTSTRAP"]
        return
    broker = EmbeddedBroker(port=free_port(), home=tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka_started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedBroker, str]]:
    """A broker with a SASL_SSL listener (SCRAM users, certificates from an in-memory CA; a client
    certificate is checked when offered), started once per session through the CLI as an operator would,
    with what the CLI printed."""
    home = tmp_path_factory.mktemp("secure-kafka")
    port = free_port()
    started = subprocess.run(
        [*YUQING, "broker", "start", "--tls", "--sasl", "scram", "--port", str(port), "--dir", str(home)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    broker = EmbeddedBroker(port=port, home=home)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield broker, started.stdout
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(secure_kafka_started: tuple[EmbeddedBroker, str]) -> EmbeddedBroker:
    """The session's SASL_SSL broker; `client_env()` are the settings of its clients."""
    return secure_kafka_started[0]


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Three combined broker+controller nodes, shared by the tests that need replication; a test that
    stops a node starts it again before it ends."""
    cluster = EmbeddedBroker(port=free_ports(3), home=tmp_path_factory.mktemp("cluster"), nodes=3)
    cluster.start(timeout=240)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test uses, so tests never see each other's messages."""
    return f"t{os.getpid()}-{int(time.time())}-{next(_counter)}."


def write_config(path: Path, **sections: Any) -> Path:
    config = yaml.safe_load(bundled_config_path().read_text(encoding="utf-8"))
    for key, value in sections.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def stack_factory(kafka: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start the services as child processes against the session broker; `stack.api_port` is ingest's,
    `stack.desk_port` the desk's."""
    stacks: list[Stack] = []

    def start(
        config: Path,
        services: tuple[str, ...] = ("ingest", "scoring", "escalation", "notifier", "desk"),
        partitions: int = 2,
        extra_env: dict[str, str] | None = None,
        service_env: dict[str, dict[str, str]] | None = None,
    ) -> Stack:
        env = {
            "YUQING_KAFKA_BOOTSTRAP": kafka,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_CONFIG_FILE": str(config),
            "YUQING_DATA_DIR": str(tmp_path / "data"),
            "YUQING_PARTITIONS": str(partitions),
            "YUQING_LOG_LEVEL": "warn",
            "YUQING_SESSION_TIMEOUT_SECONDS": "6",
            # A briefing at 09:00, 14:00 or 20:00 Shanghai would land among a test's alerts; a test of
            # briefings turns them on.
            "YUQING_BRIEFINGS": "false",
            **(extra_env or {}),
        }
        stack = Stack(
            env=env,
            service_env=service_env or {},
            log_dir=tmp_path / "logs",
            api_port=free_port(),
            desk_port=free_port(),
            web_ports={s: free_port() for s in ("scoring", "escalation", "notifier")},
        )
        stacks.append(stack)
        # start() creates topics with asyncio.run; async tests call this from a running loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(stack.start, services).result()
        return stack

    yield start
    for stack in stacks:
        stack.stop()
        for log in sorted((tmp_path / "logs").glob("*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name} ---\n{text[-4000:]}")


@pytest.fixture
def topics(prefix: str) -> Topics:
    return Topics.with_prefix(prefix)


async def collect(
    bootstrap: str,
    topic: str,
    until: Callable[[list[bytes]], bool],
    within: float = 60.0,
    **client: Any,
) -> list[bytes]:
    """Read `topic` from the beginning until `until(values)` holds or `within` seconds pass. `client`:
    security arguments (EmbeddedBroker.client_kwargs)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, **client
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline and not until(values):
            batch = await consumer.getmany(timeout_ms=250)
            for records in batch.values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]], **client: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **client)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, key=k, value=v) for k, v in items])
    finally:
        await producer.stop()


async def create_topic(bootstrap: str, name: str, partitions: int = 1, **client: Any) -> None:
    """A topic of the test's own, with `partitions` partitions (the broker does not auto-create)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
