"""Apache Kafka (KRaft) from the official Maven Central jars, for dev, demo and tests: one node, or a
cluster of several on one host, with a plaintext listener for clients or a TLS and/or SASL one.

The jars are resolved once with Maven into a cache outside the repo. Each node gets its own directory with
server.properties, data, a pid file and a log (a single node uses the broker's home itself, as before
clusters existed); broker.json in the home records the layout it was formatted with.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.common.broker_tls import TlsFiles, make_tls_files
from services.common.exceptions import BrokerError

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "Acl",
    "BrokerError",
    "BrokerSecurity",
    "EmbeddedBroker",
    "free_port",
    "free_ports",
]

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


def free_ports(count: int) -> int:
    """A port p such that p, p+1, … p+count-1 are free on 127.0.0.1 right now."""
    for _ in range(100):
        base = free_port()
        if base + count < 65535 and not any(_port_open(base + i) for i in range(1, count)):
            return base
    raise BrokerError(f"found no {count} consecutive free ports on 127.0.0.1")


def _distinct_free_ports(count: int, avoid: set[int]) -> list[int]:
    """`count` different free ports, none in `avoid`: held open together while chosen, so that two calls
    cannot hand out the same port (free_port() twice in a row may)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in avoid:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


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


_USER = "yuqing"
_SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_PROTOCOLS = {
    (False, False): "PLAINTEXT",
    (True, False): "SSL",
    (False, True): "SASL_PLAINTEXT",
    (True, True): "SASL_SSL",
}


@dataclass(frozen=True)
class BrokerSecurity:
    """The client listener's security. TLS uses certificates from a CA made in memory for this broker
    (broker_tls); SASL SCRAM users are created when the storage is formatted, PLAIN users are listed in the
    listener's JAAS config. `client_auth` "requested" checks a client certificate when one is offered,
    "required" is mutual TLS. Brokers and controllers talk to each other in plaintext on loopback."""

    tls: bool = False
    sasl: Literal["scram", "plain"] | None = None
    client_auth: Literal["none", "requested", "required"] = "none"
    # Authorization: Kafka's StandardAuthorizer, the admin user (yuqing) a super user, every other user only
    # what `EmbeddedBroker.grant` allows. `users`: further SCRAM users, created at format time.
    acls: bool = False
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", tuple(self.users))  # a list when read back from broker.json
        if self.client_auth != "none" and not self.tls:
            raise BrokerError("a client certificate needs a TLS listener: add --tls")
        if (self.acls or self.users) and self.sasl != "scram":
            raise BrokerError("ACLs and further users need SASL SCRAM users: add --sasl scram")
        bad = [u for u in self.users if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", u) or u == _USER]
        if bad:
            raise BrokerError(f"user names must be [A-Za-z0-9._-], not {_USER!r}: {bad}")

    @property
    def enabled(self) -> bool:
        return self.tls or self.sasl is not None

    @property
    def protocol(self) -> str:
        return _PROTOCOLS[self.tls, self.sasl is not None]

    @property
    def mechanism(self) -> str | None:
        """The mechanism clients are told to use (a SCRAM broker accepts both SHA-256 and SHA-512)."""
        return {"scram": "SCRAM-SHA-512", "plain": "PLAIN", None: None}[self.sasl]


@dataclass(frozen=True)
class Acl:
    """One allow rule, as a Strimzi KafkaUser lists them: a resource (a topic, a consumer group or the
    cluster), literal or by prefix, and the operations allowed on it."""

    resource: Literal["topic", "group", "cluster"]
    name: str
    operations: tuple[str, ...]
    pattern: Literal["literal", "prefix"] = "literal"


@dataclass(frozen=True)
class _Node:
    node_id: int
    dir: Path
    port: int

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def formatted(self) -> bool:
        return (self.dir / "data" / "meta.properties").exists()

    def status(self) -> int | None:
        """The pid of this node's running broker, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None


@dataclass
class EmbeddedBroker:
    """One node (the default) or a cluster of `nodes` on one host: node i serves clients on port + i - 1.

    `nodes` and `security` left None take what the broker's home was formatted with (so `yuqing broker
    stop` needs no options), else one plaintext node. A cluster runs a combined controller quorum: every
    node is a broker and a controller, so it keeps working while any one node is down."""

    port: int = 9092
    home: Path | None = None
    version: str = DEFAULT_KAFKA_VERSION
    heap: str | None = None  # per node: 512m for one node, 384m each in a cluster
    nodes: int | None = None
    security: BrokerSecurity | None = None
    _asked: tuple[int | None, BrokerSecurity | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.home = self.home or _cache_root() / "broker" / str(self.port)
        self._asked = (self.nodes, self.security)
        recorded = self._recorded()
        if self.nodes is None:
            self.nodes = int(recorded.get("nodes", 1))
        if self.security is None:
            saved = recorded.get("security")
            self.security = BrokerSecurity(**saved) if saved else BrokerSecurity()
        if not 1 <= self.nodes <= 9:
            raise BrokerError(f"--nodes must be between 1 and 9, got {self.nodes}")

    # -- layout ---------------------------------------------------------------
    @property
    def _home(self) -> Path:
        return self.home or _cache_root() / "broker" / str(self.port)

    @property
    def _count(self) -> int:
        return self.nodes or 1

    @property
    def _security(self) -> BrokerSecurity:
        return self.security or BrokerSecurity()

    @property
    def node_list(self) -> list[_Node]:
        if self._count == 1:  # the layout of a single broker, as it always was
            return [_Node(1, self._home, self.port)]
        return [_Node(i, self._home / f"node-{i}", self.port + i - 1) for i in range(1, self._count + 1)]

    def node(self, node_id: int) -> _Node:
        return self.node_list[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.node_list)

    @property
    def replication_factor(self) -> int:
        """What yuqing's topics should have on this cluster (YUQING_REPLICATION_FACTOR)."""
        return min(3, self._count)

    @property
    def libs(self) -> Path:
        return _cache_root() / f"kafka-{self.version}" / "libs"

    @property
    def log_file(self) -> Path:
        return self.node_list[0].log_file

    @property
    def tls_files(self) -> TlsFiles:
        return TlsFiles.at(self._home / "tls")

    @property
    def client_env_file(self) -> Path:
        return self._home / "client.env"

    def _recorded(self) -> dict[str, Any]:
        try:
            data = json.loads((self._home / "broker.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _credentials(self) -> dict[str, str]:
        try:
            data = json.loads((self._home / "credentials.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def client_env(self, mtls: bool | None = None, user: str | None = None) -> dict[str, str]:
        """The YUQING_* settings of a client of this broker: as the admin user, or as `user` (one of
        `security.users`). The client certificate is included when the broker requires one, or when `mtls`
        asks for it."""
        env = {"YUQING_KAFKA_BOOTSTRAP": self.bootstrap}
        if self._count > 1:
            env["YUQING_REPLICATION_FACTOR"] = str(self.replication_factor)
        security = self._security
        if not security.enabled:
            return env
        credentials = self._credentials()
        env["YUQING_KAFKA_SECURITY_PROTOCOL"] = security.protocol
        if security.sasl is not None:
            if user is not None and user not in security.users:
                raise BrokerError(f"no user {user!r} on this broker; it has {list(security.users)}")
            env["YUQING_KAFKA_SASL_MECHANISM"] = security.mechanism or ""
            env["YUQING_KAFKA_SASL_USERNAME"] = user or _USER
            env["YUQING_KAFKA_SASL_PASSWORD"] = credentials.get(f"user:{user}" if user else "password", "")
        if security.tls:
            tls = self.tls_files
            env["YUQING_KAFKA_SSL_CA_FILE"] = str(tls.ca)
            if mtls or (mtls is None and security.client_auth == "required"):
                env["YUQING_KAFKA_SSL_CERT_FILE"] = str(tls.client_cert)
                env["YUQING_KAFKA_SSL_KEY_FILE"] = str(tls.client_key)
                env["YUQING_KAFKA_SSL_KEY_PASSWORD"] = credentials.get("key_password", "")
        return env

    def client_kwargs(self, mtls: bool | None = None, user: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments of a client of this broker (client_env, through kafka_security);
        settings of the caller's environment do not leak in."""
        from services.common.kafka_security import client_kwargs
        from services.common.settings import CommonSettings

        env = self.client_env(mtls=mtls, user=user)
        fields: dict[str, str | None] = {
            name: None
            for name in CommonSettings.model_fields
            if name.startswith(("kafka_sasl_", "kafka_ssl_")) and name != "kafka_ssl_check_hostname"
        }
        fields |= {k.removeprefix("YUQING_").lower(): v for k, v in env.items()}
        return client_kwargs(CommonSettings(**fields))  # type: ignore[arg-type]

    def grant(self, user: str, acls: list[Acl]) -> None:
        """Allow `user` what `acls` list, with Kafka's own AclCommand run as the admin user: one run per set
        of operations and pattern type (each run starts a JVM)."""
        security = self._security
        if not security.acls:
            raise BrokerError("this broker was started without --acls: every user may do everything")
        if user not in security.users:
            raise BrokerError(f"no user {user!r} on this broker; it has {list(security.users)}")
        config = self._home / "admin.properties"
        env = self.client_env()
        lines = [
            f"security.protocol={security.protocol}",
            f"sasl.mechanism={security.mechanism}",
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{_USER}" password="{env["YUQING_KAFKA_SASL_PASSWORD"]}";',
        ]
        if security.tls:
            lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={self.tls_files.ca}"]
        _write_private(config, "\n".join([*lines, ""]))
        runs: dict[tuple[str, tuple[str, ...]], list[Acl]] = {}
        for acl in acls:
            runs.setdefault((acl.pattern, tuple(sorted(acl.operations))), []).append(acl)
        java, classpath = self._java(), f"{self.fetch()}/*"
        for (pattern, operations), resources in runs.items():
            args = [
                f"--{a.resource}" if a.resource == "cluster" else f"--{a.resource}={a.name}"
                for a in resources
            ]
            ops = [f"--operation={op}" for op in operations]
            kind = "prefixed" if pattern == "prefix" else "literal"
            proc = subprocess.run(
                [
                    java,
                    "-cp",
                    classpath,
                    "org.apache.kafka.tools.AclCommand",
                    f"--bootstrap-server={self.bootstrap}",
                    f"--command-config={config}",
                    "--add",
                    f"--allow-principal=User:{user}",
                    f"--resource-pattern-type={kind}",
                    *ops,
                    *args,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if proc.returncode != 0:
                raise BrokerError(
                    f"granting {user} {operations} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
                )

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
        # A cache resolved before the tools joined the pom is resolved again.
        if marker.exists() and (self.libs / f"kafka-tools-{self.version}.jar").exists():
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

    # -- formatting ------------------------------------------------------------
    def _check_layout(self) -> None:
        """A home formatted as one layout is not silently started as another."""
        recorded = self._recorded()
        if not recorded and (self._home / "data" / "meta.properties").exists():
            recorded = {"nodes": 1}  # formatted before broker.json existed: one plaintext node
        if not recorded:
            return
        nodes, security = self._asked
        saved = BrokerSecurity(**recorded["security"]) if recorded.get("security") else BrokerSecurity()
        if (nodes is not None and nodes != recorded.get("nodes", 1)) or (
            security is not None and security != saved
        ):
            raise BrokerError(
                f"the broker in {self._home} was formatted with {recorded.get('nodes', 1)} node(s) and "
                f"{saved}; stop it and delete {self._home} to start it differently, or use another --port"
            )

    def _format(self, java: str, classpath: str) -> None:
        """Write every node's server.properties and format its storage, with one cluster id; make the
        certificates and the client's credentials first if the listener needs them."""
        security = self._security
        for node in self.node_list:
            shutil.rmtree(node.dir / "data", ignore_errors=True)
            node.dir.mkdir(parents=True, exist_ok=True)
        credentials = {"password": secrets.token_urlsafe(18), "key_password": secrets.token_urlsafe(18)}
        if security.tls:
            make_tls_files(self._home / "tls", credentials["key_password"])
        ports = _distinct_free_ports(2 * self._count, avoid={n.port for n in self.node_list})
        controllers, internals = ports[: self._count], ports[self._count :]
        voters = ",".join(
            f"{n.node_id}@127.0.0.1:{c}" for n, c in zip(self.node_list, controllers, strict=True)
        )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        users = []
        if security.sasl == "scram":
            passwords = {_USER: credentials["password"]}
            for name in security.users:
                passwords[name] = credentials[f"user:{name}"] = secrets.token_urlsafe(18)
            for name, password in passwords.items():
                for mechanism in _SCRAM:
                    users += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        _write_private(self._home / "credentials.json", json.dumps(credentials))
        for node, controller, internal in zip(self.node_list, controllers, internals, strict=True):
            text = self._properties(node, voters, controller, internal, credentials["password"])
            _write_private(node.properties, text)
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
                    str(node.properties),
                    *users,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(
                    f"formatting KRaft storage of node {node.node_id} failed:\n{fmt.stdout}{fmt.stderr}"
                )
        layout = {"nodes": self._count, "port": self.port, "security": asdict(security)}
        (self._home / "broker.json").write_text(json.dumps(layout, indent=2), encoding="utf-8")
        if security.enabled:
            env = self.client_env()
            lines = [f"{k}={v}\n" for k, v in env.items()]
            optional = {k: v for k, v in self.client_env(mtls=True).items() if k not in env}
            if optional:
                lines.append(
                    "# mutual TLS, optional on this broker (a certificate offered must be from its CA):\n"
                )
                lines += [f"# {k}={v}\n" for k, v in optional.items()]
            _write_private(self.client_env_file, "".join(lines))

    def _properties(self, node: _Node, voters: str, controller: int, internal: int, password: str) -> str:
        security = self._security
        client = f"CLIENT://127.0.0.1:{node.port}"
        listeners = [client, f"CONTROLLER://127.0.0.1:{controller}"]
        advertised = [client]
        protocols = [f"CLIENT:{security.protocol}", "CONTROLLER:PLAINTEXT"]
        inter_broker = "CLIENT"
        if security.enabled:  # brokers replicate over a plaintext listener of their own, on loopback
            listeners.append(f"INTERNAL://127.0.0.1:{internal}")
            advertised.append(f"INTERNAL://127.0.0.1:{internal}")
            protocols.append("INTERNAL:PLAINTEXT")
            inter_broker = "INTERNAL"
        replicas = self.replication_factor
        min_isr = 2 if replicas >= 3 else 1
        lines = [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={inter_broker}",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"log.dirs={node.dir / 'data'}",
            "num.partitions=1",
            f"default.replication.factor={replicas}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=3",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            # Topics are created by yuqing with the right partition count; a typo must not create one.
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.segment.bytes=16777216",
        ]
        if security.tls:
            tls = self.tls_files
            lines += [
                "listener.name.client.ssl.keystore.type=PEM",
                f"listener.name.client.ssl.keystore.location={tls.keystore}",
                "listener.name.client.ssl.truststore.type=PEM",
                f"listener.name.client.ssl.truststore.location={tls.ca}",
                f"listener.name.client.ssl.client.auth={security.client_auth}",
            ]
        if security.sasl == "scram":
            lines.append(f"listener.name.client.sasl.enabled.mechanisms={','.join(_SCRAM)}")
            for mechanism in _SCRAM:
                lines.append(
                    f"listener.name.client.{mechanism.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        if security.acls:
            lines += [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                # The admin user, and the brokers and controllers on their loopback plaintext listeners.
                f"super.users=User:{_USER};User:ANONYMOUS",
            ]
        if security.sasl == "plain":
            lines += [
                "listener.name.client.sasl.enabled.mechanisms=PLAIN",
                "listener.name.client.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{_USER}="{password}";',
            ]
        return "\n".join([*lines, ""])

    # -- lifecycle -----------------------------------------------------------
    def status(self) -> int | None:
        """The pid of the first node when every node runs, else None."""
        pids = [n.status() for n in self.node_list]
        return pids[0] if all(pids) else None

    def start(self, timeout: float = 90.0) -> int:
        """Fetch, format (first time) and start every node not running; return (the pid of the first node)
        once the cluster accepts Kafka requests and shows every broker."""
        self._check_layout()
        down = [n for n in self.node_list if n.status() is None]
        if not down:
            self._wait_ready(timeout, {})
            return self.node_list[0].status() or 0
        for node in down:
            if _port_open(node.port):
                raise BrokerError(f"port {node.port} is already in use by another process")
        java = self._java()
        classpath = f"{self.fetch()}/*"
        if not all(n.formatted for n in self.node_list):
            if len(down) < len(self.node_list):
                raise BrokerError(f"some nodes of {self._home} run but others were never formatted; stop it")
            self._format(java, classpath)
        launched = {node: self._launch(java, classpath, node) for node in down}
        try:
            self._wait_ready(timeout, launched)
        except BrokerError:
            for node in launched:
                self.kill(node.node_id)
            raise
        return self.node_list[0].status() or 0

    def _launch(self, java: str, classpath: str, node: _Node) -> subprocess.Popen[bytes]:
        heap = self.heap or ("512m" if self._count == 1 else "384m")
        with node.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    f"-Xmx{heap}",
                    f"-Xms{heap}",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Djava.awt.headless=true",
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(node.properties),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node.pid_file.write_text(str(proc.pid))
        return proc

    def _wait_ready(self, timeout: float, procs: dict[_Node, subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node, proc in procs.items():
                if proc.poll() is not None:
                    tail = node.log_file.read_text(errors="replace")[-3000:]
                    raise BrokerError(
                        f"Kafka node {node.node_id} exited with code {proc.returncode}; log tail:\n{tail}"
                    )
            if all(_port_open(n.port) for n in self.node_list) and self._brokers() >= self._count:
                return
            time.sleep(0.25)
        raise BrokerError(
            f"Kafka did not become ready on {self.bootstrap} within {timeout:.0f}s; see {self.log_file}"
        )

    def _brokers(self) -> int:
        from services.common.kafka import cluster_brokers

        return cluster_brokers(
            self.bootstrap, timeout=2.0, **self.client_kwargs(mtls=self._security.client_auth != "none")
        )

    def kill(self, node_id: int) -> bool:
        """SIGKILL one node, as a crash would. Returns False if it was not running."""
        node = self.node(node_id)
        pid = node.status()
        if pid is None:
            return False
        self._signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        # The JVM's main thread shows as a zombie while its other threads still hold the sockets.
        while (_pid_alive(pid) or _port_open(node.port)) and time.monotonic() < deadline:
            self._reap(pid)
            time.sleep(0.05)
        node.pid_file.unlink(missing_ok=True)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node (SIGTERM to all at once, then SIGKILL). Returns False if none was running."""
        running = [(n, pid) for n in self.node_list if (pid := n.status()) is not None]
        if not running:
            return False
        for _, pid in running:
            self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            _pid_alive(pid) or _port_open(node.port) for node, pid in running
        ):
            for _, pid in running:
                self._reap(pid)
            time.sleep(0.2)
        for node, pid in running:
            if _pid_alive(pid):
                self._signal(pid, signal.SIGKILL)
                self._reap(pid)
            node.pid_file.unlink(missing_ok=True)
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


def _write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only: it holds passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
