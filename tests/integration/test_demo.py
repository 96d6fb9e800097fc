"""`yuqing demo` is the foundation's acceptance: run it as a user would, on the session broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kafka


def test_demo_shows_three_tiers_an_incident_and_delivered_alerts(kafka, tmp_path):
    env = {**os.environ, "YUQING_KAFKA_BOOTSTRAP": kafka}
    proc = subprocess.run(
        [sys.executable, "-m", "services.common.cli", "demo", "--timeout", "240"],
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
    assert "opened; deadlines: ack by" in out
    assert "bad signatures: 0" in out
    assert "demo: OK" in out
