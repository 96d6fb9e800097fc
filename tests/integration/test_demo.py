"""`yuqing demo` is the foundation's acceptance: run it as a user would, on the session broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("listener", ["plaintext", "SASL_SSL"])
def test_demo_shows_three_tiers_an_incident_and_delivered_alerts(listener, request, tmp_path):
    """Also against a SASL_SSL cluster: the demo's own consumer connects as the services do."""
    if listener == "plaintext":
        env = {**os.environ, "YUQING_KAFKA_BOOTSTRAP": request.getfixturevalue("kafka")}
    else:
        env = {**os.environ, **request.getfixturevalue("secure_kafka").client_env()}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "demo", "--timeout", "240"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "xinghe: 0 -> 3 (up, threshold)" in out
    assert "xinghe: 3 -> 2 (up, threshold)" in out
    assert "xinghe: 2 -> 1 (up, threshold)" in out
    assert re.search(r"opened; deadlines: ack by \d{4}-\d\d-\d\dT\d\d:\d\d", out), out
    latency = re.search(
        r"keyword hit -> alert delivered: "
        r"min ([\d.]+)s, median ([\d.]+)s, max ([\d.]+)s over (\d+) deliveries",
        out,
    )
    assert latency, out
    low, median, high = (float(latency.group(i)) for i in (1, 2, 3))
    assert 0 <= low <= median <= high <= 600  # the plans' 10 minutes
    assert int(latency.group(4)) >= 1
    assert "bad signatures: 0" in out
    assert "demo: OK" in out
