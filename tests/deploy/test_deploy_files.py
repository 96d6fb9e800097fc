"""Deployment files: docker compose, Kubernetes manifests, Dockerfile, Prometheus and Grafana provisioning.

There is no Docker engine or cluster here, so the files are checked by parsers, the Kubernetes JSON schemas
(bundled with kubernetes-validate, no network) and the app's own config loader.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, cast

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from schemas.topics import Topics
from services.cli.runner import SERVICES as APP_SERVICES
from services.common.config import load_config
from services.common.kafka import SPREAD_SNAPSHOT_CONFIG, topic_configs
from services.common.settings import CommonSettings, load_settings
from services.desk.settings import DeskSettings
from services.ingest.settings import IngestSettings
from tests.desk.test_console import TOKEN as CONSOLE_TOKEN
from tests.desk.test_console import Console

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = ("ingest", "scoring", "escalation", "notifier", "desk")
WORKERS = ("scoring", "escalation", "notifier")
HTTP = ("ingest", "desk")  # an HTTP port of their own, /readyz, a host setting of their own
PORTS = {"ingest": 8000, "desk": 8001, "scoring": 6066, "escalation": 6066, "notifier": 6066}
HOSTS = {"ingest": "YUQING_API_HOST", "desk": "YUQING_DESK_HOST"}
UID = 10001
ANY_HOST = "0.0.0.0"  # noqa: S104  (what the containers must listen on)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_every_service_of_the_app_is_deployed() -> None:
    assert tuple(APP_SERVICES) == SERVICES


# ---- docker compose ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(DEPLOY / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """The environment as compose gives it when no variable is set: each ${NAME:-default} is its default."""
    return {k: re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", v) for k, v in raw_env_of(service).items()}


def raw_env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts.append((source, target))
    return mounts


def mount_sources(service: dict[str, Any]) -> dict[str, str]:
    """target -> source."""
    return {target: source for source, target in mounts_of(service)}


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "topics", *SERVICES, "postgres", "prometheus", "grafana"}


def test_the_desk_stores_into_the_compose_postgres(compose: dict[str, Any]) -> None:
    postgres, desk = compose["services"]["postgres"], compose["services"]["desk"]
    url = make_url(env_of(desk)["YUQING_DATABASE_URL"])
    pg_env = env_of(postgres)
    assert (url.host, url.port, url.database) == ("postgres", 5432, pg_env["POSTGRES_DB"])
    assert (url.username, url.password) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"])
    assert desk["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert desk["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert ("postgres-data", "/var/lib/postgresql/data") in mounts_of(postgres)


@pytest.mark.parametrize("name", [*SERVICES, "topics"])
def test_yuqing_services_are_built_from_the_repo_dockerfile(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    service = services[name]
    build = service["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
    # One image for all of them: the command picks the service.
    assert service["image"] == services["ingest"]["image"]
    assert service["command"] == (["topics", "create"] if name == "topics" else ["worker", name])


@pytest.mark.parametrize("name", SERVICES)
def test_services_start_after_the_topics_exist(compose: dict[str, Any], name: str) -> None:
    depends = compose["services"][name]["depends_on"]
    assert depends["topics"]["condition"] == "service_completed_successfully"


def test_topics_job_waits_for_a_healthy_kafka(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert topics["restart"] == "no"


def listeners(value: str) -> dict[str, str]:
    """'NAME://host:port,…' -> {NAME: 'host:port'}."""
    out = {}
    for item in value.split(","):
        name, address = item.strip().split("://")
        out[name] = address
    return out


def test_kafka_runs_kraft_combined_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.2"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1
    voter_id, voter_address = voters[0].split("@")
    assert voter_id == node_id

    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(bound) <= set(protocols)
    assert controller in bound
    assert controller not in advertised  # clients never get the controller listener
    assert set(advertised) <= set(bound)
    assert voter_address.split(":")[1] == bound[controller].split(":")[-1]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    # A single node: internal topics with one replica, and no topic created by accident.
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The data directory is a volume.
    assert env["KAFKA_LOG_DIRS"] in {target for _, target in mounts_of(kafka)}


def test_kafka_healthcheck_asks_the_broker(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    test = kafka["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    command = " ".join(test[1:])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in command
    port = re.search(r"--bootstrap-server \S+:(\d+)", command)
    assert port is not None
    bound_ports = {a.split(":")[-1] for a in listeners(env_of(kafka)["KAFKA_LISTENERS"]).values()}
    assert port.group(1) in bound_ports


@pytest.mark.parametrize("name", [*SERVICES, "topics"])
def test_yuqing_services_reach_kafka_and_their_config(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    env = env_of(services[name])
    advertised = listeners(env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]).values()
    assert env["YUQING_KAFKA_BOOTSTRAP"] in advertised
    assert env["YUQING_REPLICATION_FACTOR"] == "1"  # one broker
    if name == "topics":
        return
    mounts = mount_sources(services[name])
    assert (DEPLOY / mounts[env["YUQING_CONFIG_FILE"]]).resolve() == DEPLOY / "config" / "yuqing.yaml"
    # Reachable from Prometheus and the port mapping, not only from inside the container.
    assert env["YUQING_WEB_HOST"] == ANY_HOST
    if name in HTTP:
        assert env[HOSTS[name]] == ANY_HOST
        assert env["YUQING_INGEST_TOKENS" if name == "ingest" else "YUQING_OPERATOR_TOKENS"]
        assert any(str(p).endswith(f":{PORTS[name]}") for p in services[name]["ports"])


def test_compose_ack_links_lead_to_the_desk(compose: dict[str, Any]) -> None:
    """The escalation worker signs the links; people open them on the desk's published port."""
    services = compose["services"]
    public = raw_env_of(services["escalation"])["YUQING_PUBLIC_URL"]
    default = re.fullmatch(r"\$\{YUQING_PUBLIC_URL:-(.*)\}", public)
    assert default is not None, public
    published = {str(p).split(":")[0] for p in services["desk"]["ports"]}
    assert default.group(1).rsplit(":", 1)[1] in published
    assert (
        env_of(services["escalation"])["YUQING_LINK_SECRET"] == env_of(services["desk"])["YUQING_LINK_SECRET"]
    )


def test_compose_volumes_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    seen = 0
    for name, service in compose["services"].items():
        for source, _ in mounts_of(service):
            if source.startswith((".", "/")):
                if not source.startswith("/"):
                    assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repo"
                    seen += 1
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    assert seen >= 4  # config, prometheus.yml, grafana provisioning and dashboards


@pytest.mark.filterwarnings("ignore:config file .* world-readable")
def test_compose_config_file_is_valid() -> None:
    config = load_config(DEPLOY / "config" / "yuqing.yaml")
    assert [(c.name, c.type) for c in config.notifier.channels] == [("oncall-webhook", "webhook")]
    assert config.notifier.channels[0].secret is not None
    example = load_yaml(ROOT / "services" / "common" / "data" / "example.yaml")
    assert load_yaml(DEPLOY / "config" / "yuqing.yaml")["rules"] == example["rules"]


# ---- Prometheus and Grafana --------------------------------------------------------------------------------


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = prom["scrape_configs"]
    names = [job["job_name"] for job in jobs]
    assert len(names) == len(set(names))
    scraped: dict[str, str] = {}
    for job in jobs:
        for static in job["static_configs"]:
            for target in static["targets"]:
                scraped[target] = job.get("metrics_path", "/metrics")
    for name in SERVICES:
        assert name in compose["services"]
        assert scraped.get(f"{name}:{PORTS[name]}") == "/metrics", name
    for key in ("scrape_interval", "evaluation_interval"):
        assert re.fullmatch(r"\d+[smh]", prom["global"][key])
    config = DEPLOY / mount_sources(compose["services"]["prometheus"])["/etc/prometheus/prometheus.yml"]
    assert config.resolve() == DEPLOY / "prometheus" / "prometheus.yml"


def test_prometheus_rule_files_are_mounted(compose: dict[str, Any]) -> None:
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    mounts = mount_sources(compose["services"]["prometheus"])
    for pattern in prom.get("rule_files", []):
        directory, glob = PurePosixPath(pattern).parent, PurePosixPath(pattern).name
        matched = sorted((DEPLOY / mounts[str(directory)]).glob(glob))
        assert matched, f"{pattern} matches no file"
        for path in matched:
            groups = load_yaml(path)["groups"]
            assert all(rule.get("alert") or rule.get("record") for g in groups for rule in g["rules"]), path


def test_grafana_datasource_is_the_compose_prometheus(compose: dict[str, Any]) -> None:
    provisioning = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert provisioning["apiVersion"] == 1
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus"
    assert source["access"] == "proxy"
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]


def test_grafana_loads_dashboards_from_the_mounted_folder(compose: dict[str, Any]) -> None:
    provisioning = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "yuqing.yml")
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    mounts = mount_sources(compose["services"]["grafana"])
    assert (DEPLOY / mounts["/etc/grafana/provisioning"]).resolve() == DEPLOY / "grafana" / "provisioning"
    folder = DEPLOY / mounts[path]
    assert folder.is_dir()
    # Dashboards name their datasource by uid: only the provisioned one exists.
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {source["uid"] for source in provisioned["datasources"]}
    for dashboard in folder.glob("*.json"):
        used = datasource_uids(json.loads(dashboard.read_text(encoding="utf-8")))
        assert used <= uids, dashboard.name


def datasource_uids(node: Any) -> set[str]:
    """Every datasource uid a dashboard names, template variables (${…}) aside."""
    found: set[str] = set()
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and not str(source.get("uid", "$")).startswith("$"):
            found.add(str(source["uid"]))
        for value in node.values():
            found |= datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= datasource_uids(value)
    return found


# ---- Kubernetes --------------------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load_manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


MANIFESTS = load_manifests()
SCHEMA_CHECKED = [(ident, doc) for ident, doc in MANIFESTS if doc["kind"] != "ServiceMonitor"]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == kind}


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("doc", [doc for _, doc in SCHEMA_CHECKED], ids=[i for i, _ in SCHEMA_CHECKED])
def test_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    validate(doc)


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    deployment = json.loads(json.dumps(of_kind("Deployment")["yuqing-ingest"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = json.loads(json.dumps(of_kind("Deployment")["yuqing-ingest"]))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())
    (namespace,) = of_kind("Namespace")
    assert kustomization["namespace"] == namespace


def test_every_resource_lives_in_the_namespace() -> None:
    (namespace,) = of_kind("Namespace")
    for ident, doc in MANIFESTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, ident


def pod_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = of_kind("Deployment")[f"yuqing-{name}"]["spec"]["template"]["spec"]
    return spec


def container_of(name: str) -> dict[str, Any]:
    (container,) = pod_spec(name)["containers"]
    assert isinstance(container, dict)
    return container


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_one_deployment_per_service() -> None:
    assert set(of_kind("Deployment")) == {f"yuqing-{name}" for name in SERVICES}


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_has_probes_resources_and_runs_as_non_root(name: str) -> None:
    spec = pod_spec(name)
    container = container_of(name)
    assert container["args"] == ["worker", name]

    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert port_number(container, get["port"]) == PORTS[name], probe
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert live["path"] == "/healthz"
    assert ready["path"] == ("/readyz" if name in HTTP else "/healthz")

    resources = container["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) >= {"cpu", "memory"}, bound

    pod_security = spec.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", UID) != 0
    assert security["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_gets_its_settings_and_config_file(name: str) -> None:
    spec = pod_spec(name)
    container = container_of(name)
    configmaps = of_kind("ConfigMap")
    secrets = of_kind("Secret")

    refs = [ref["configMapRef"]["name"] for ref in container["envFrom"]]
    assert refs
    assert all(ref in configmaps for ref in refs)
    settings = {k: v for ref in refs for k, v in configmaps[ref]["data"].items()}
    for env in container.get("env", []):
        if re.search(r"TOKEN|SECRET|PASSWORD", env["name"]):
            assert "value" not in env, f"{env['name']} is written inline; it belongs in a Secret"
        if "valueFrom" in env:
            key = env["valueFrom"]["secretKeyRef"]
            assert key["key"] in secrets[key["name"]]["stringData"], env["name"]
    names = {env["name"] for env in container.get("env", [])}
    if name == "ingest":
        assert "YUQING_INGEST_TOKENS" in names
        assert not names & {"YUQING_OPERATOR_TOKENS", "YUQING_LINK_SECRET", "YUQING_CONSOLE_SECRET"}
    if name == "desk":
        assert {"YUQING_OPERATOR_TOKENS", "YUQING_LINK_SECRET", "YUQING_CONSOLE_SECRET"} <= names
        # The store's URL holds its password: from the Secret, and accepted by the desk's settings.
        url = secrets["yuqing-secrets"]["stringData"]["YUQING_DATABASE_URL"]
        assert make_url(url).get_backend_name() == "postgresql"
        assert DeskSettings(database_url=url).database_url is not None
        assert "YUQING_INGEST_TOKENS" not in names
    assert settings["YUQING_WEB_HOST"] == ANY_HOST
    assert settings.get("YUQING_API_HOST", ANY_HOST) == ANY_HOST
    assert settings.get("YUQING_DESK_HOST", ANY_HOST) == ANY_HOST
    if name in HTTP:
        port = "YUQING_API_PORT" if name == "ingest" else "YUQING_DESK_PORT"
        assert int(settings[port]) == PORTS[name]

    # The config file is the Secret's yuqing.yaml, mounted where YUQING_CONFIG_FILE says, not world-readable.
    config_file = PurePosixPath(settings["YUQING_CONFIG_FILE"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = volumes[mounts[str(config_file.parent)]]["secret"]
    assert secret["secretName"] in secrets
    assert {"key": "yuqing.yaml", "path": config_file.name} in secret["items"]
    assert secret["defaultMode"] & 0o004 == 0
    # Writable places on a read-only root file system.
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert {settings["YUQING_DATA_DIR"], "/tmp"} <= set(mounts)


def test_the_desk_trusts_proxy_headers_from_the_cluster_only_and_has_its_own_console_key() -> None:
    """Behind an ingress, uvicorn needs FORWARDED_ALLOW_IPS to see https (the console cookie's Secure flag)
    and the client's address (login throttling); "*" would let a client name its own address."""
    env = {e["name"]: e for e in container_of("desk")["env"]}
    trusted = env["FORWARDED_ALLOW_IPS"]["value"].split(",")
    networks = [ipaddress.ip_network(t.strip()) for t in trusted]
    assert all(n.is_private for n in networks), networks
    refs = {
        name: env[name]["valueFrom"]["secretKeyRef"]["key"]
        for name in ("YUQING_LINK_SECRET", "YUQING_CONSOLE_SECRET")
    }
    assert refs == {
        "YUQING_LINK_SECRET": "YUQING_LINK_SECRET",
        "YUQING_CONSOLE_SECRET": "YUQING_CONSOLE_SECRET",
    }


@pytest.mark.parametrize(
    ("peer", "secure"), [("10.42.0.7", True), ("172.20.3.4", True), ("203.0.113.50", False)]
)
def test_with_the_manifests_trusted_proxies_a_login_via_https_ingress_gets_a_secure_cookie(
    peer: str, secure: bool
) -> None:
    """uvicorn's proxy-header middleware with the Deployment's FORWARDED_ALLOW_IPS, in front of the console:
    an ingress pod's X-Forwarded-Proto makes the session cookie Secure; from outside the header is ignored."""
    env = {e["name"]: e for e in container_of("desk")["env"]}
    console = Console()
    # uvicorn's and Starlette's ASGI type aliases differ in spelling, not in meaning.
    app: Any = ProxyHeadersMiddleware(
        cast(Any, console.app), trusted_hosts=env["FORWARDED_ALLOW_IPS"]["value"]
    )
    with TestClient(app, client=(peer, 40000), follow_redirects=False) as client:
        resp = client.post(
            "/console/login",
            data={"actor": "值班", "token": CONSOLE_TOKEN},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6, 198.51.100.9"},
        )
    assert resp.status_code == 303
    assert ("Secure" in resp.headers["set-cookie"]) is secure


def test_compose_http_settings_are_accepted(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """With every ${VAR:-default} at its default, the ingest and desk settings pass yuqing's own checks
    (token length, a console key apart from the link key, tokens on 0.0.0.0), so that `docker compose up`
    starts."""
    for service in HTTP:
        for name, value in env_of(compose["services"][service]).items():
            default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
            monkeypatch.setenv(name, default.group(1) if default else value)
    assert load_settings(IngestSettings).ingest_tokens
    desk = load_settings(DeskSettings)
    assert desk.operator_tokens
    assert desk.console_secret is not None
    assert desk.console_secret != desk.link_secret


@pytest.mark.parametrize("name", ["scoring", "escalation", "notifier"])
def test_a_stream_workers_data_dir_outlives_a_container_restart(name: str) -> None:
    """The crash journal lives there: after a worker died on a record, the restarted container must find
    what the dead one wrote, or the record kills it forever (docs/operations.md, crash loops)."""
    settings = {
        k: v
        for ref in container_of(name)["envFrom"]
        for k, v in of_kind("ConfigMap")[ref["configMapRef"]["name"]]["data"].items()
    }
    mounts = {m["mountPath"]: m["name"] for m in container_of(name)["volumeMounts"]}
    volume = {v["name"]: v for v in pod_spec(name)["volumes"]}[mounts[settings["YUQING_DATA_DIR"]]]
    assert {"emptyDir", "persistentVolumeClaim"} & set(volume), volume


@pytest.mark.parametrize("name", SERVICES)
def test_service_exposes_the_deployment_port(name: str) -> None:
    service = of_kind("Service")[f"yuqing-{name}"]
    labels = of_kind("Deployment")[f"yuqing-{name}"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == PORTS[name]
    assert port_number(container_of(name), port["targetPort"]) == PORTS[name]


def test_servicemonitor_selects_every_service() -> None:
    (monitor,) = of_kind("ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector
    endpoints = {e["port"]: e.get("path", "/metrics") for e in monitor["spec"]["endpoints"]}
    (namespace,) = of_kind("Namespace")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [namespace]
    for name in SERVICES:
        service = of_kind("Service")[f"yuqing-{name}"]
        assert selector.items() <= service["metadata"]["labels"].items(), name
        (port,) = service["spec"]["ports"]
        assert endpoints.get(port["name"]) == "/metrics", name


SERVICEMONITOR_SCHEMA = Path(__file__).with_name("servicemonitor.schema.json")
# Target labels the Prometheus Operator sets on every ServiceMonitor target.
OPERATOR_TARGET_LABELS = {"service", "namespace", "pod", "container", "endpoint", "job", "instance"}


def validate_servicemonitor(doc: dict[str, Any]) -> None:
    schema = json.loads(SERVICEMONITOR_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)


def test_servicemonitor_matches_the_crd_fields_it_uses() -> None:
    (monitor,) = of_kind("ServiceMonitor").values()
    validate_servicemonitor(monitor)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["honorLabel"] = True  # a typo the API server would prune silently
    with pytest.raises(jsonschema.ValidationError):
        validate_servicemonitor(broken)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate_servicemonitor(broken)


def selected_labels(expr: str) -> set[str]:
    """Label names used in {…} selectors and by (…) clauses of a PromQL expression."""
    names = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"", expr))
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in clause.split(",") if n.strip()}
    return names


def test_servicemonitor_keeps_the_labels_the_rules_select_on() -> None:
    """The Operator sets a `service` target label; without honorLabels the workers' own `service` label is
    renamed exported_service and every {service="scoring"} rule and panel matches nothing."""
    rules = load_yaml(DEPLOY / "prometheus" / "rules" / "yuqing.rules.yml")
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "yuqing.json").read_text(encoding="utf-8"))
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    clashing = set().union(*(selected_labels(e) for e in exprs)) & OPERATOR_TARGET_LABELS - {
        "job",
        "instance",
    }
    assert "service" in clashing  # the rules do select on it: the test guards something real
    (monitor,) = of_kind("ServiceMonitor").values()
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint.get("honorLabels") is True, endpoint["port"]
    # The compose Prometheus adds a `service` target label too.
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    for job in prom["scrape_configs"]:
        if job["job_name"].startswith("yuqing-"):
            assert job.get("honor_labels") is True, job["job_name"]


def test_scrape_jobs_are_named_as_the_absence_rules_expect() -> None:
    """YuqingServiceAbsent names each job: compose's job names and the k8s Services' names must match."""
    rules = load_yaml(DEPLOY / "prometheus" / "rules" / "yuqing.rules.yml")
    (absent,) = [
        r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "YuqingServiceAbsent"
    ]
    expected = {f"yuqing-{name}" for name in SERVICES}
    assert set(re.findall(r'absent\(up\{job="([^"]+)"\}\)', absent)) == expected
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert {j["job_name"] for j in prom["scrape_configs"]} - {"prometheus"} == expected
    (monitor,) = of_kind("ServiceMonitor").values()
    assert "jobLabel" not in monitor["spec"]  # the job is then the Service's name
    assert set(of_kind("Service")) == expected


def test_topics_job_creates_the_topics() -> None:
    (job,) = of_kind("Job").values()
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    (container,) = spec["containers"]
    assert container["args"] == ["topics", "create"]
    assert container["image"] == container_of("ingest")["image"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert set(container["resources"]) == {"requests", "limits"}


@pytest.mark.filterwarnings("ignore:config file .* world-readable")
def test_secret_holds_a_valid_config_and_the_configmap_no_secret(tmp_path: Path) -> None:
    data = of_kind("Secret")["yuqing-secrets"]["stringData"]
    assert data["YUQING_INGEST_TOKENS"]
    config_path = tmp_path / "yuqing.yaml"
    config_path.write_text(data["yuqing.yaml"], encoding="utf-8")
    config = load_config(config_path)
    assert {c.name for c in config.notifier.channels} == {"oncall-webhook"}
    # The same example as the compose stack's.
    assert yaml.safe_load(data["yuqing.yaml"]) == load_yaml(DEPLOY / "config" / "yuqing.yaml")
    for configmap in of_kind("ConfigMap").values():
        for key in configmap["data"]:
            assert not re.search(r"TOKEN|SECRET|PASSWORD", key), key


# ---- Dockerfile --------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments, and also comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = []
    for keyword, args in dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"base": words[0], "name": name, "instructions": []})
        elif keyword != "ARG" or stages:
            assert stages, f"{keyword} before the first FROM"
            stages[-1]["instructions"].append((keyword, args))
    return stages


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert all(stage["base"] == "python:3.11-slim" for stage in stages)
    builder, final = stages[0], stages[-1]
    assert builder["name"]
    runs = " ".join(args for keyword, args in builder["instructions"] if keyword == "RUN")
    assert re.search(r"pip (install|wheel)", runs)
    copies = [args for keyword, args in final["instructions"] if keyword == "COPY"]
    assert any(f"--from={builder['name']}" in args for args in copies)
    assert not any(keyword == "RUN" and "pip install" in args for keyword, args in final["instructions"])


def test_dockerfile_final_stage_runs_as_non_root() -> None:
    final = dockerfile_stages()[-1]
    users = [args for keyword, args in final["instructions"] if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user in {"yuqing", str(UID)}
    runs = " ".join(args for keyword, args in final["instructions"] if keyword == "RUN")
    assert re.search(rf"useradd .*--uid {UID}\b.* yuqing\b", runs)


def test_dockerfile_entrypoint_and_ports() -> None:
    final = dict(dockerfile_stages()[-1]["instructions"])
    assert json.loads(final["ENTRYPOINT"]) == ["yuqing"]
    assert json.loads(final["CMD"]) == ["worker", "ingest"]
    assert {"8000", "8001", "6066"} <= set(final["EXPOSE"].split())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "yuqing" in scripts


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    builder = dockerfile_stages()[0]
    for keyword, args in builder["instructions"]:
        if keyword != "COPY" or "--from=" in args:
            continue
        sources = [w for w in args.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, f"{source} is copied but .dockerignore drops it"


# ---- Kafka security: compose, Kubernetes, Strimzi ----------------------------------------------------------

KAFKA_SETTINGS = (
    "YUQING_KAFKA_SECURITY_PROTOCOL",
    "YUQING_KAFKA_SASL_MECHANISM",
    "YUQING_KAFKA_SASL_USERNAME",
    "YUQING_KAFKA_SASL_PASSWORD",
    "YUQING_KAFKA_SSL_CA_FILE",
    "YUQING_KAFKA_SSL_CERT_FILE",
    "YUQING_KAFKA_SSL_KEY_FILE",
    "YUQING_KAFKA_SSL_KEY_PASSWORD",
)


def _settings_from(env: dict[str, str], files: dict[str, Path]) -> CommonSettings:
    """CommonSettings from a deploy file's YUQING_* values, each mounted file path replaced by a real one."""
    fields: dict[str, Any] = {
        k.removeprefix("YUQING_").lower(): v for k, v in env.items() if k.startswith("YUQING_")
    }
    for key, path in files.items():
        fields[key.removeprefix("YUQING_").lower()] = path
    return load_settings(CommonSettings, **fields)


@pytest.mark.parametrize("name", [*SERVICES, "topics"])
def test_compose_passes_every_kafka_security_setting_from_the_environment(
    compose: dict[str, Any], name: str
) -> None:
    raw = raw_env_of(compose["services"][name])
    for key in ("YUQING_KAFKA_BOOTSTRAP", *KAFKA_SETTINGS):
        assert re.fullmatch(rf"\$\{{{key}:-[^}}]*\}}", raw[key]), f"{key}: {raw[key]!r}"
    # No secret is ever written in the file: each is a ${VARIABLE} from the shell or .env.
    for key, value in raw.items():
        if re.search(r"TOKEN|SECRET|PASSWORD", key):
            assert value.startswith("${"), key
    # As shipped (nothing set), the settings are valid and plaintext, for the bundled broker.
    settings = _settings_from(env_of(compose["services"][name]), {})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert (DEPLOY / mount_sources(compose["services"][name])["/etc/yuqing/kafka-tls"]).is_dir()


K8S_KAFKA_USERS = {**{f"yuqing-{name}": name for name in SERVICES}, "yuqing-topics": "topics"}


def kafka_pod(user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, container) of a service's Deployment, or of the topics Job."""
    if user == "topics":
        (job,) = of_kind("Job").values()
        spec: dict[str, Any] = job["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        return spec, container
    return pod_spec(user), container_of(user)


@pytest.mark.parametrize("user", [*SERVICES, "topics"])
def test_each_pod_logs_in_to_kafka_as_its_own_user_with_a_password_from_a_secret(
    user: str, tmp_path: Path
) -> None:
    spec, container = kafka_pod(user)
    env = {e["name"]: e for e in container["env"]}
    assert env["YUQING_KAFKA_SASL_USERNAME"]["value"] == f"yuqing-{user}"
    ref = env["YUQING_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in of_kind("Secret")[ref["name"]]["stringData"]
    settings = {
        k: v
        for ref in container["envFrom"]
        for k, v in of_kind("ConfigMap")[ref["configMapRef"]["name"]]["data"].items()
    }
    # The CA file the settings name is a Secret's key, mounted where they say.
    ca = PurePosixPath(settings["YUQING_KAFKA_SSL_CA_FILE"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in spec["volumes"]}[mounts[str(ca.parent)]]["secret"]
    assert {"key": "ca.crt", "path": ca.name} in volume["items"]
    assert "ca.crt" in of_kind("Secret")[volume["secretName"]]["stringData"]
    # Together they are settings a service starts with.
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    pod_env = {**settings, "YUQING_KAFKA_SASL_USERNAME": f"yuqing-{user}", "YUQING_KAFKA_SASL_PASSWORD": "p"}
    loaded = _settings_from(pod_env, {"YUQING_KAFKA_SSL_CA_FILE": ca_file})
    assert (loaded.kafka_security_protocol, loaded.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    # Strimzi's bootstrap Service of the cluster the KafkaTopics and KafkaUsers name.
    (cluster,) = {doc["metadata"]["labels"]["strimzi.io/cluster"] for doc in STRIMZI}
    assert settings["YUQING_KAFKA_BOOTSTRAP"].startswith(f"{cluster}-kafka-bootstrap.")


STRIMZI_DIR = K8S / "strimzi"
STRIMZI = [
    doc
    for path in sorted(STRIMZI_DIR.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    if doc
]
STRIMZI_SCHEMA = Path(__file__).with_name("strimzi.schema.json")


def validate_strimzi(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, json.loads(STRIMZI_SCHEMA.read_text(encoding="utf-8")))


@pytest.mark.parametrize("doc", STRIMZI, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in STRIMZI])
def test_strimzi_resources_match_the_crd_fields_they_use(doc: dict[str, Any]) -> None:
    validate_strimzi(doc)


def test_the_strimzi_check_rejects_a_typo() -> None:
    user = json.loads(json.dumps(next(d for d in STRIMZI if d["kind"] == "KafkaUser")))
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "prefixed"
    with pytest.raises(jsonschema.ValidationError):
        validate_strimzi(user)
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "prefix"
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    with pytest.raises(jsonschema.ValidationError):
        validate_strimzi(user)
    topic = json.loads(json.dumps(next(d for d in STRIMZI if d["kind"] == "KafkaTopic")))
    topic["spec"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_strimzi(topic)


def test_strimzi_kustomization_lists_its_files_in_the_kafka_namespace() -> None:
    kustomization = load_yaml(STRIMZI_DIR / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in STRIMZI_DIR.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert {doc["metadata"]["namespace"] for doc in STRIMZI} == {kustomization["namespace"]}


def test_strimzi_topics_are_every_shared_topic_with_the_configured_layout() -> None:
    settings = of_kind("ConfigMap")["yuqing-env"]["data"]
    topics = {d["spec"]["topicName"]: d["spec"] for d in STRIMZI if d["kind"] == "KafkaTopic"}
    assert set(topics) == set(Topics.with_prefix(settings["YUQING_TOPIC_PREFIX"]).all())
    for name, spec in topics.items():
        assert spec["partitions"] == int(settings["YUQING_PARTITIONS"]), name
        assert spec["replicas"] == int(settings["YUQING_REPLICATION_FACTOR"]), name
        # What `yuqing topics create` sets for the same replication factor (services/common/kafka.py).
        fake = CommonSettings(replication_factor=spec["replicas"])
        assert spec["config"]["min.insync.replicas"] == topic_configs(fake, {})["min.insync.replicas"], name
        if name.endswith(".ticks"):
            assert spec["config"]["retention.ms"] == "3600000", name
        if name.endswith("spread-snapshots"):
            for key, value in SPREAD_SNAPSHOT_CONFIG.items():
                assert spec["config"][key] == value, name


def _code_needs(data_dir: Path) -> dict[str, dict[str, set[str]]]:
    """What each service's code reads, writes, creates and joins, with the default prefix: consumed topics,
    groups and changelogs from the workers themselves (built offline); what faust workers send, from the
    topics their build asks for that they do not consume; the rest from the code it names."""
    from unittest import mock

    from services.common import stream
    from services.escalation import worker as escalation
    from services.escalation.settings import EscalationSettings
    from services.notifier import worker as notifier
    from services.notifier.settings import NotifierSettings
    from services.scoring import worker as scoring
    from services.scoring.settings import ScoringSettings

    t = Topics.with_prefix("yuqing.")
    needs: dict[str, dict[str, set[str]]] = {}
    for name, module, settings_class in (
        ("escalation", escalation, EscalationSettings),
        ("notifier", notifier, NotifierSettings),
    ):
        asked: list[str] = []
        real = stream.StreamShell.raw_topic

        def record(self: Any, *names: str, _asked: list[str] = asked, _real: Any = real) -> Any:
            _asked.extend(names)
            return _real(self, *names)

        with mock.patch.object(stream.StreamShell, "raw_topic", record):
            shell = module.build(load_settings(settings_class, data_dir=data_dir))
        consumed = {topic for agent in shell.app.agents.values() for topic in agent.channel.topics}
        internal = {*shell.changelog_topics(), f"{shell.app.conf.id}-__assignor-__leader"}
        needs[name] = {
            "read": consumed | internal,
            "write": (set(asked) - (consumed - {shell.ticks_name})) | internal,
            "create": internal,
            "group": {shell.app.conf.id},
        }
    worker = scoring.build(load_settings(ScoringSettings, data_dir=data_dir)).worker
    changelogs = set(worker.changelogs.values())
    needs["scoring"] = {
        "read": set(worker.handlers) | changelogs,  # changelogs: restored at start
        # services/scoring/worker.py: batch.send(...) of threads, hits, tier changes, forecasts and snapshots.
        "write": {
            t.scoring_threads,
            t.keyword_hits,
            t.tier_changes,
            t.tier_forecasts,
            t.spread_snapshots,
            worker.dead_letter_topic,
        }
        | changelogs,
        "create": changelogs,
        "group": {worker.group_id},
    }
    # services/notifier/briefer.py: follows three event topics (no group) and publishes 简报 on alerts.
    needs["notifier"]["read"] |= {t.keyword_hits, t.tier_changes, t.incidents}
    needs["notifier"]["write"] |= {t.alerts}
    # services/ingest/api.py: posts are produced, nothing is read.
    needs["ingest"] = {"read": set(), "write": {t.posts_raw}, "create": set(), "group": set()}
    # services/desk: overrides and operator actions are produced; its sink (desk/sink.py) stores three event
    # topics with group_id=None (offsets in the store) and dead-letters what it cannot store; the live spread
    # and the forecasts are followed with group_id=None (services/common/follow.py).
    needs["desk"] = {
        "read": {t.keyword_hits, t.tier_changes, t.incidents, t.spread_snapshots, t.tier_forecasts},
        "write": {t.tier_overrides, t.incident_actions, t.dead_letter},
        "create": set(),
        "group": set(),
    }
    needs["topics"] = {"read": set(), "write": set(), "create": set(t.all()), "group": set()}
    return needs


def _allowed(acls: list[dict[str, Any]], kind: str, name: str, operation: str) -> bool:
    implied = {"Describe": {"Describe", "Read", "Write", "Delete", "Alter", "All"}}.get(
        operation, {operation}
    )
    for acl in acls:
        resource = acl["resource"]
        matches = resource["name"] == name or (
            resource.get("patternType") == "prefix" and name.startswith(resource["name"])
        )
        if resource["type"] == kind and matches and implied & set(acl["operations"]):
            return True
    return False


def test_each_kafka_user_may_do_what_its_service_does_and_nothing_more(tmp_path: Path) -> None:
    users = {d["metadata"]["name"]: d for d in STRIMZI if d["kind"] == "KafkaUser"}
    assert set(users) == set(K8S_KAFKA_USERS)
    needs = _code_needs(tmp_path)
    every = Topics.with_prefix("yuqing.").all()
    for user, service in K8S_KAFKA_USERS.items():
        acls = users[user]["spec"]["authorization"]["acls"]
        need = needs[service]
        for operation, kind in (
            ("read", "topic"),
            ("write", "topic"),
            ("create", "topic"),
            ("group", "group"),
        ):
            for name in need[operation]:
                op = {"group": "Read"}.get(operation, operation.capitalize())
                assert _allowed(acls, kind, name, op), f"{user} may not {op} {kind} {name}"
        for topic in every:  # every service checks at start-up that all topics exist (ensure_topics)
            assert _allowed(acls, "topic", topic, "Describe"), f"{user} may not Describe {topic}"
        # Nothing more: no literal grant beyond what the code does, and no deny rules to reason about.
        for acl in acls:
            resource = acl["resource"]
            assert acl.get("type", "allow") == "allow"
            if resource.get("patternType", "literal") != "literal":
                continue
            kind, name = resource["type"], resource["name"]
            for op in acl["operations"]:
                key = {("topic", "Read"): "read", ("topic", "Write"): "write", ("group", "Read"): "group"}
                assert name in need[key[kind, op]], f"{user} is granted {op} on {kind} {name} it never uses"
