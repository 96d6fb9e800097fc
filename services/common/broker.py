"""A single-node Apache Kafka (KRaft) from the official Maven Central jars, for dev, demo and tests.

The jars are resolved once with Maven into a cache outside the repo; each broker instance gets its own
directory with server.properties, data, a pid file and a log.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.common.exceptions import BrokerError

__all__ = ["DEFAULT_KAFKA_VERSION", "BrokerError", "EmbeddedBroker", "free_port"]

DEFAULT_KAFKA_VERSION = "4.1.2"
_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"


def _cache_root() -> Path:
    base = os.environ.get("YUQING_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "yuqing"
    )
    return Path(base)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    """True if pid is a live (not zombie) Kafka broker process; a recycled pid does not count."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and state != "Z"


@dataclass
class EmbeddedBroker:
    port: int = 9092
    home: Path | None = None
    version: str = DEFAULT_KAFKA_VERSION
    heap: str = "512m"

    def __post_init__(self) -> None:
        self.home = self.home or _cache_root() / "broker" / str(self.port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _dir(self) -> Path:
        return self.home or _cache_root() / "broker" / str(self.port)

    @property
    def libs(self) -> Path:
        return _cache_root() / f"kafka-{self.version}" / "libs"

    @property
    def log_file(self) -> Path:
        return self._dir / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self._dir / "broker.pid"

    # -- tools ---------------------------------------------------------------
    @staticmethod
    def _java() -> str:
        java = shutil.which("java")
        if not java:
            raise BrokerError(
                "java not found on PATH: install a Java 17+ runtime (e.g. openjdk-17-jre-headless)"
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
        m = re.search(r'version "(\d+)', out)
        if not m or int(m.group(1)) < 17:
            raise BrokerError(f"Kafka {DEFAULT_KAFKA_VERSION} needs Java 17+, found: {out.splitlines()[:1]}")
        return java

    def fetch(self) -> Path:
        """Resolve the broker jars with Maven into the cache (once per version)."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise BrokerError("mvn not found on PATH: install Apache Maven (e.g. apt-get install maven)")
        if not _POM.exists():
            raise BrokerError(f"broker pom not found at {_POM}: install yuqing from a source checkout")
        tmp = self.libs.with_name("libs.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(_POM),
            f"-Dkafka.version={self.version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            raise BrokerError(
                f"mvn could not resolve Kafka {self.version}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        marker.touch()
        return self.libs

    # -- lifecycle -----------------------------------------------------------
    def _write_properties(self) -> Path:
        props = self._dir / "server.properties"
        controller_port = free_port()
        data = self._dir / "data"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    # Topics are created by yuqing with the right partition count; a typo must not create one.
                    "auto.create.topics.enable=false",
                    "group.initial.rebalance.delay.ms=0",
                    "log.segment.bytes=16777216",
                    "",
                ]
            )
        )
        return props

    def status(self) -> int | None:
        """The pid of the running broker, or None."""
        try:
            pid = int(self._pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self, timeout: float = 90.0) -> int:
        """Fetch, format (first time) and start; return once the broker accepts Kafka requests."""
        pid = self.status()
        if pid is not None:
            self._wait_ready(timeout)
            return pid
        if _port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use by another process")
        java = self._java()
        libs = self.fetch()
        self._dir.mkdir(parents=True, exist_ok=True)
        classpath = f"{libs}/*"
        props = self._dir / "server.properties"
        if not (self._dir / "data" / "meta.properties").exists():
            shutil.rmtree(self._dir / "data", ignore_errors=True)
            props = self._write_properties()
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    # One token: a base64 id may start with '-', which argparse would read as an option.
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        log = self.log_file.open("ab")
        proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid_file.write_text(str(proc.pid))
        try:
            self._wait_ready(timeout, proc)
        except BrokerError:
            self.stop()
            raise
        return proc.pid

    def _wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise BrokerError(f"Kafka exited with code {proc.returncode}; log tail:\n{tail}")
            if _port_open(self.port) and self._metadata_ok():
                return
            time.sleep(0.25)
        raise BrokerError(
            f"Kafka did not become ready on {self.bootstrap} within {timeout:.0f}s; see {self.log_file}"
        )

    def _metadata_ok(self) -> bool:
        from services.common.kafka import cluster_reachable

        return cluster_reachable(self.bootstrap, timeout=2.0)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL). Returns False if it was not running."""
        pid = self.status()
        if pid is None:
            return False
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            self._reap(pid)
            time.sleep(0.2)
        if _pid_alive(pid):
            self._signal(pid, signal.SIGKILL)
            self._reap(pid)
        self._pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def _reap(pid: int) -> None:
        # A broker started by this process is our child: reap it so it does not linger as a zombie.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
