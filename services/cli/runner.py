"""Run one service in this process, or the whole stack as child processes (dev, demo, tests)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.common.broker import EmbeddedBroker
from services.common.exceptions import ConfigError
from services.common.kafka import ensure_changelogs, ensure_topics_sync
from services.common.kafka_logs import install_kafka_log_filter
from services.common.kafka_security import check_connection
from services.common.settings import CommonSettings, load_settings
from services.common.shutdown import exit_after

__all__ = ["SERVICES", "RestartPolicy", "Stack", "run_service", "supervise"]

# The desk last: the stream workers keep the web ports after YUQING_WEB_PORT in this order.
SERVICES = ("ingest", "scoring", "escalation", "notifier", "desk")
log = logging.getLogger(__name__)


def run_service(name: str) -> None:
    """Start one service in the foreground; topics are created first so subscriptions never miss one.

    The HTTP services (ingest, desk) start even while Kafka is down (they create the topics once Kafka
    answers, and /readyz says 503 until then); a stream worker cannot do anything without Kafka and exits with
    the reason. A cluster that refuses us for good (a wrong password, an untrusted certificate) stops every
    service at once with one line naming the setting (kafka_security.check_connection), not a loop of
    retries."""
    _keep_urls_out_of_logs()
    install_kafka_log_filter()
    if name == "ingest":
        from services.ingest.settings import IngestSettings
        from services.ingest.worker import run as run_ingest

        ingest = load_settings(IngestSettings)
        asyncio.run(check_connection(ingest))
        run_ingest(ingest)
        return
    if name == "desk":
        from services.desk.settings import DeskSettings
        from services.desk.worker import run as run_desk

        desk = load_settings(DeskSettings)
        asyncio.run(check_connection(desk))
        run_desk(desk)
        return
    if name == "scoring":
        from services.scoring.settings import ScoringSettings
        from services.scoring.worker import run as run_scoring

        scoring = load_settings(ScoringSettings)
        asyncio.run(check_connection(scoring))
        ensure_topics_sync(scoring)
        run_scoring(scoring)
        return
    if name == "escalation":
        from services.escalation.settings import EscalationSettings as S
        from services.escalation.worker import build
    elif name == "notifier":
        from services.notifier.settings import NotifierSettings as S  # type: ignore[assignment]
        from services.notifier.worker import build  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown service {name!r}; expected one of: {', '.join(SERVICES)}")
    settings = load_settings(S)
    asyncio.run(check_connection(settings))
    ensure_topics_sync(settings)
    shell = build(settings)
    asyncio.run(ensure_changelogs(settings, shell.changelog_topics()))
    from faust import Worker

    # faust's Worker closes the loop it runs on; give it a fresh one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = Worker(shell.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    # faust's terminal spinner sets the root logger to DEBUG at level WARN and above so that every record
    # spins it: every aiokafka debug line is then formatted, ~12% of a scoring worker's CPU. No spinner.
    worker.spinner = None
    _bound_the_stop(worker)
    worker.execute_from_commandline()


def _bound_the_stop(worker: Any) -> None:
    """faust's stop waits on Kafka, and with the broker gone it did not end; SIGTERM or SIGINT now also arms
    the deadline of services/common/shutdown.py. Set before faust installs its signal handlers (at start)."""
    for name in ("_on_sigterm", "_on_sigint"):
        setattr(worker, name, _bounded(getattr(worker, name)))


def _bounded(handler: Callable[[], None]) -> Callable[[], None]:
    def bounded() -> None:
        exit_after()
        handler()

    return bounded


def _keep_urls_out_of_logs() -> None:
    # httpx logs every request's full URL at INFO, and a robot webhook's URL is its credential
    # (?access_token=…, /hook/<token>): tests/reliability/test_security.py found it in the notifier's log.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Stack:
    """The services as child processes on one host, optionally with the embedded broker."""

    env: dict[str, str] = field(default_factory=dict)
    # Per service, settings over `env` (each service's own Kafka user, as on a cluster with ACLs).
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    log_dir: Path = Path(".yuqing-data/logs")
    api_port: int = 8000
    desk_port: int = 8001
    base_web_port: int = 6066
    kafka_port: int = 9092  # of the embedded broker, when the stack starts one
    web_ports: dict[str, int] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_broker: bool = False  # stop() stops only a broker this stack started
    _logs: list[IO[bytes]] = field(default_factory=list)

    @classmethod
    def from_env(cls, api_port: int | None = None, kafka_port: int | None = None) -> Stack:
        """The stack `yuqing dev` runs: ingest on `api_port`, else YUQING_API_PORT, else 8000; the desk on
        YUQING_DESK_PORT, else 8001; the stream workers on the three ports after YUQING_WEB_PORT (6067-6069);
        the embedded broker, if the stack starts one (YUQING_KAFKA_BOOTSTRAP unset), on `kafka_port`, else
        9092."""
        if kafka_port is not None and os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
            raise ConfigError(
                "--kafka-port is the port of the embedded broker, but YUQING_KAFKA_BOOTSTRAP is set: "
                "yuqing dev uses that cluster and starts no broker; unset one of them"
            )
        ports = {}
        for name, default in (
            ("YUQING_API_PORT", 8000),
            ("YUQING_DESK_PORT", 8001),
            ("YUQING_WEB_PORT", 6066),
        ):
            raw = str(api_port) if name == "YUQING_API_PORT" and api_port is not None else None
            raw = raw or os.environ.get(name, str(default))
            try:
                ports[name] = int(raw)
            except ValueError:
                raise ConfigError(f"{name}: expected a TCP port number, got {raw!r}") from None
            if not 0 < ports[name] < 65533:
                raise ConfigError(f"{name}: expected a TCP port number (1-65532), got {raw!r}")
        return cls(
            api_port=ports["YUQING_API_PORT"],
            desk_port=ports["YUQING_DESK_PORT"],
            base_web_port=ports["YUQING_WEB_PORT"],
            kafka_port=kafka_port or 9092,
        )

    def bootstrap(self) -> str:
        if "YUQING_KAFKA_BOOTSTRAP" in self.env:
            return self.env["YUQING_KAFKA_BOOTSTRAP"]
        if os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
            return os.environ["YUQING_KAFKA_BOOTSTRAP"]
        self.broker = self.broker or EmbeddedBroker(port=self.kafka_port)
        # A broker someone else started (`yuqing broker start`, another dev stack) is used and left running.
        running = self.broker.status() is not None
        verb = "using the embedded Kafka already running" if running else "starting embedded Kafka"
        print(f"{verb} on {self.broker.bootstrap} …", flush=True)
        self.broker.start()
        self.started_broker = not running
        # A broker started with --tls, --sasl or --nodes: its clients' settings, unless the user set them.
        for key, value in self.broker.client_env().items():
            if key != "YUQING_KAFKA_BOOTSTRAP" and key not in os.environ:
                self.env.setdefault(key, value)
        return self.broker.bootstrap

    def child_env(self, service: str, index: int, key: str | None = None) -> dict[str, str]:
        """The environment of service `service`, started under `key` (default: its name): a second instance
        under its own key gets the web port `web_ports[key]` when it has one, as two processes on one host
        cannot serve one port."""
        env = {**os.environ, **self.env, **self.service_env.get(service, {})}
        env["YUQING_KAFKA_BOOTSTRAP"] = self.bootstrap_addr
        # The stack decides the ports (one per process); `yuqing dev` takes them from the user's
        # YUQING_API_PORT, YUQING_DESK_PORT and YUQING_WEB_PORT (see from_env), so these do not override a
        # user's choice.
        env["YUQING_API_PORT"] = str(self.api_port)
        env["YUQING_DESK_PORT"] = str(self.desk_port)
        # Ack links in alerts lead to this stack's desk, unless the user says where people reach it.
        env.setdefault("YUQING_PUBLIC_URL", f"http://127.0.0.1:{self.desk_port}")
        port = self.web_ports.get(key or service) or self.web_ports.get(service, self.base_web_port + index)
        env["YUQING_WEB_PORT"] = str(port)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self, services: tuple[str, ...] = SERVICES) -> None:
        self.bootstrap_addr = self.bootstrap()
        settings = load_settings(
            CommonSettings, kafka_bootstrap=self.bootstrap_addr, **self._common_overrides()
        )
        self.settings = settings  # what the services connect with (kafka_security.client_kwargs)
        asyncio.run(check_connection(settings))
        ensure_topics_sync(settings)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(SERVICES):
            if name in services:
                self.start_one(name, i)

    def _common_overrides(self) -> dict[str, str]:
        """The stack's own YUQING_* settings (prefix, partitions, Kafka security …) over the environment's,
        as its children get them."""
        fields = {f"YUQING_{name.upper()}": name for name in CommonSettings.model_fields}
        return {fields[k]: v for k, v in self.env.items() if k in fields and k != "YUQING_KAFKA_BOOTSTRAP"}

    def start_one(
        self, name: str, index: int | None = None, key: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start service `name`, kept in `procs` under `key` (default: its name). A process still running
        under that key is never replaced: it would run on untracked, and `stop` could not end it."""
        key = key or name
        running = self.procs.get(key)
        if running is not None and running.poll() is None:
            raise RuntimeError(
                f"{key} is already running (pid {running.pid}); start another under its own key"
            )
        index = SERVICES.index(name) if index is None else index
        out = (self.log_dir / f"{key}.log").open("ab")
        self._logs.append(out)
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "worker", name],
            env=self.child_env(name, index, key),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.procs[key] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL one service, as a crash would."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def check(self) -> list[str]:
        """Names of services that have exited."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop(self, timeout: float = 20.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self.broker is not None and self.started_broker:
            self.broker.stop()
            self.started_broker = False


@dataclass
class RestartPolicy:
    """What k8s does for a worker that exits: start it again, up to `limit` times within `window_seconds`.

    Restarting matters beyond convenience: a record that kills a worker is dead-lettered on the second
    restart (services/common/journal.py), so a stack that stopped at the first exit stopped for good."""

    limit: int = 5
    window_seconds: float = 600.0
    exits: dict[str, list[float]] = field(default_factory=dict)

    def allow(self, service: str, now: float) -> bool:
        """Record an exit of `service` at `now`; whether it may be started again."""
        recent = [t for t in self.exits.get(service, []) if now - t < self.window_seconds] + [now]
        self.exits[service] = recent
        return len(recent) <= self.limit


def supervise(
    stack: Stack,
    policy: RestartPolicy,
    stopping: Callable[[], bool],
    say: Callable[[str], None],
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Keep the stack's services running until `stopping()`: 0, or 1 once a service exits too often."""
    while not stopping():
        for name in stack.check():
            code = stack.procs[name].returncode
            if not policy.allow(name, now()):
                minutes = policy.window_seconds / 60
                say(f"{name} exited (code {code}) {policy.limit + 1} times in {minutes:g} minutes; giving up")
                return 1
            say(f"{name} exited (code {code}); starting it again, as k8s would")
            stack.start_one(name)
        sleep(0.5)
    return 0
