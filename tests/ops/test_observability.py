"""The metrics catalogue, the code, the Grafana dashboard and the alert rules agree; a real Prometheus
scrapes a running stack and sees the key series move."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.common import json
from tests.conftest import free_port, write_config
from tests.integration.test_pipeline import crisis_posts, wait_ready

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
METRIC = re.compile(r"\byuqing_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def catalogue() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(yuqing_[a-z_]+)` \|", text, flags=re.M))


def in_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        names |= set(re.findall(r'"(yuqing_[a-z_]+)"', path.read_text(encoding="utf-8")))
    return names


def dashboard_queries() -> list[str]:
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "yuqing.json").read_bytes())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def rule_queries() -> list[str]:
    doc = yaml.safe_load((RULES / "yuqing.rules.yml").read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_catalogue_matches_the_code():
    assert catalogue() == in_code()


def test_dashboard_and_rules_query_only_catalogued_metrics():
    known = catalogue()
    for expr in dashboard_queries() + rule_queries():
        used = {_base(m) for m in METRIC.findall(expr)}
        # `up` is Prometheus' own series for every target.
        assert used or expr.startswith("vector(") or re.search(r"\bup\{", expr), expr
        assert used <= known, f"{expr}: {used - known} not in docs/metrics.md"


def test_dashboard_covers_the_operations_panels():
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "yuqing.json").read_bytes())
    assert dash["uid"] == "yuqing-overview"
    exprs = " ".join(dashboard_queries())
    for metric in (
        "yuqing_tier_level",
        "yuqing_posts_accepted_total",
        "yuqing_platform_last_post_timestamp_seconds",
        "yuqing_alert_latency_seconds_bucket",
        "yuqing_incidents_open",
        "yuqing_sla_breaches_total",
        "yuqing_consumer_lag_messages",
        "yuqing_dead_letters_total",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"])


def rule_tests() -> list[dict[str, Any]]:
    doc = yaml.safe_load((RULES / "yuqing.rules.test.yml").read_text(encoding="utf-8"))
    return list(doc["tests"])


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    alerts = {
        r["alert"]
        for g in yaml.safe_load((RULES / "yuqing.rules.yml").read_text())["groups"]
        for r in g["rules"]
    }
    cases = [c for t in rule_tests() for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    assert fired == alerts
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    # Channel failing and dead letters are plain thresholds on one counter; the others can misfire.
    assert alerts - quiet <= {"YuqingNotifierChannelFailing", "YuqingDeadLettersRising"}


def test_every_runbook_link_names_a_runbook_section():
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }
    doc = yaml.safe_load((RULES / "yuqing.rules.yml").read_text(encoding="utf-8"))
    links = {r["annotations"]["runbook"] for g in doc["groups"] for r in g["rules"]}
    assert {link.split("#", 1)[1] for link in links} <= anchors
    assert all(link.startswith("docs/operations.md#") for link in links)


def test_pipeline_stalled_is_tested_with_internal_topics_moving_and_with_scoring_down():
    stalled = [
        t
        for t in rule_tests()
        if any(
            c["alertname"] == "YuqingPipelineStalled" and c["exp_alerts"]
            for c in t.get("alert_rule_test", [])
        )
    ]
    series = [[s["series"] for s in t["input_series"]] for t in stalled]
    assert any(any("scoring.threads" in name for name in names) for names in series)
    assert any(not any("yuqing_messages_processed_total" in name for name in names) for names in series)


def test_tier_board_uses_the_expression_the_rule_tests_check():
    """Lower tier numbers are more severe (1 = major): the board must not show max(), and promtool checks
    the expression on series where a stale replica reports 0 and two replicas disagree."""
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "yuqing.json").read_bytes())
    (board,) = [p for p in dash["panels"] if p["id"] == 1]
    (target,) = board["targets"]
    tested = [e["expr"] for t in rule_tests() for e in t.get("promql_expr_test", [])]
    assert target["expr"] in tested
    mapping = board["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert mapping["1"]["text"].startswith("一级")
    assert mapping["0"]["text"].startswith("无")


def _start_prometheus(
    server: str, config: Path, tmp_path: Path, port: int
) -> tuple[subprocess.Popen[bytes], Any]:
    log = (tmp_path / "prometheus.log").open("wb")
    args = [
        server,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), log


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return tool


def test_promtool_checks_the_rules_and_their_unit_tests():
    tool = _promtool()
    check = subprocess.run(
        [tool, "check", "rules", str(RULES / "yuqing.rules.yml")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [tool, "test", "rules", "yuqing.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


@pytest.mark.kafka
async def test_real_prometheus_scrapes_a_running_stack(kafka, stack_factory, tmp_path):
    _promtool()
    server = shutil.which("prometheus")
    assert server, "Debian's prometheus package provides the server"
    stack = stack_factory(
        write_config(
            tmp_path / "c.yaml",
            notifier={"channels": [{"name": "c", "type": "console"}], "group_wait_seconds": 1},
        )
    )
    api = f"http://127.0.0.1:{stack.api_port}"
    await wait_ready(api, stack)
    # The job names of deploy/prometheus/prometheus.yml, so the absence and target-down rules see them.
    jobs = {"ingest": stack.api_port, "desk": stack.desk_port, **stack.web_ports}
    targets = [f"127.0.0.1:{port}" for port in jobs.values()]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES / "yuqing.rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": f"yuqing-{name}",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}],
                    }
                    for name, port in jobs.items()
                ],
            }
        )
    )
    port = free_port()
    proc, log = _start_prometheus(server, config, tmp_path, port)
    try:
        prom = f"http://127.0.0.1:{port}/api/v1/query"
        async with httpx.AsyncClient(timeout=10) as client:

            async def value(query: str) -> float:
                data = (await client.get(prom, params={"query": query})).json()["data"]["result"]
                return float(data[0]["value"][1]) if data else -1.0

            async def wait_for(query: str, ok, within: float = 40) -> float:
                deadline = time.monotonic() + within
                got = -1.0
                while time.monotonic() < deadline:
                    try:
                        got = await value(query)
                    except (httpx.HTTPError, KeyError, ValueError):
                        # ValueError: a starting Prometheus answers 503 "Service Unavailable" in plain text.
                        got = -1.0
                    if ok(got):
                        return got
                    await asyncio.sleep(0.5)
                raise AssertionError(f"{query} = {got}")

            up = await wait_for('count(up{job=~"yuqing-.+"} == 1)', lambda v: v == len(targets))
            assert up == 5
            # Ticks do not count, so an idle worker may have no processed series yet (-1 here).
            before = max(0.0, await value('sum(yuqing_messages_processed_total{service="scoring"})'))
            resp = await client.post(f"{api}/v1/posts", json=crisis_posts(datetime.now(UTC)))
            assert resp.status_code == 202
            after = await wait_for(
                'sum(yuqing_messages_processed_total{service="scoring"})', lambda v: v > before
            )
            assert after > before
            await wait_for('max(yuqing_tier_level{group="xinghe"})', lambda v: v == 1)
            await wait_for("sum(yuqing_posts_accepted_total)", lambda v: v == 11)
            await wait_for(
                'count(yuqing_platform_last_post_timestamp_seconds{platform="weibo"})', lambda v: v == 1
            )
            await wait_for("count(yuqing_consumer_lag_messages)", lambda v: v >= 1)
            # Lag from the group's committed offsets: once the posts are processed and committed it is 0.
            await wait_for('max(yuqing_consumer_lag_messages{service="scoring"})', lambda v: v == 0)
            assert await value('count(yuqing_consumer_lag_messages{topic=~".*ticks"})') == -1
            await wait_for('count(ALERTS{alertname="YuqingPlatformSilent"})', lambda v: v == -1, within=3)
            # The rules' own expressions over the real series: every job is found under its expected name,
            # and posts.raw (with this test's prefix) counts as scoring's input. Pending ALERTS are not
            # asserted: one slow scrape on a busy machine makes a target briefly down.
            rules = {
                r["alert"]: r["expr"]
                for g in yaml.safe_load(RULES.joinpath("yuqing.rules.yml").read_text())["groups"]
                for r in g["rules"]
            }
            assert await value(f"count({rules['YuqingServiceAbsent']})") == -1
            await wait_for(f"count({rules['YuqingPipelineStalled']})", lambda v: v == -1, within=20)
            assert await value('count(yuqing_messages_processed_total{exported_service!=""})') == -1
            # Ticks are not counted as processed messages: only real input topics appear.
            topics = (await client.get(prom, params={"query": "yuqing_messages_processed_total"})).json()
            names = {r["metric"]["topic"] for r in topics["data"]["result"]}
            assert names
            assert not [n for n in names if n.endswith(".ticks")]
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
