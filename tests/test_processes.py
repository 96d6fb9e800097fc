"""The leak checks of tests/conftest.py: a test that leaves a process running fails (its process is killed),
also when the process was orphaned; a fixture that does fails the suite; a test that stops what it starts
passes. Each case runs in a pytest of its own (pytester), whose processes are ours too: if the inner check
did not kill them, this test's own check would fail."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = (
    "from tests.conftest import _no_process_outlives_its_test, _no_process_outlives_the_suite  # noqa: F401\n"
    "pytest_plugins = ['tests.processes']\n"
)


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("YUQING_TEST_LEAK_GRACE_SECONDS", "1")
    pytester.makeconftest(CHECKS)
    return pytester


def test_a_test_that_leaves_a_process_running_fails(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_leaks="""
        import subprocess

        def test_leaves_its_child():
            subprocess.Popen(["sleep", "600"])

        def test_orphans_a_grandchild():
            # sh exits at once: sleep is re-parented to init, as the worker of issue 16 was.
            subprocess.run(["sh", "-c", "sleep 601 &"], check=True)

        def test_stops_what_it_starts():
            child = subprocess.Popen(["sleep", "602"])
            child.terminate()
            child.wait()
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_its_child left processes running (now killed): pid * sleep 600*",
            "*test_orphans_a_grandchild left processes running (now killed): pid * sleep 601*",
        ]
    )
    assert "sleep 602" not in result.stdout.str()


def test_a_longer_lived_fixture_may_keep_a_process_until_its_own_teardown(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_fixtures="""
        import subprocess
        import pytest

        @pytest.fixture(scope="module")
        def server():
            child = subprocess.Popen(["sleep", "603"])
            yield child
            child.kill()
            child.wait()

        @pytest.fixture(scope="session")
        def forgotten():
            subprocess.Popen(["sleep", "604"])

        def test_one(server):
            assert server.poll() is None

        def test_two(server, forgotten):
            assert server.poll() is None
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider")
    # Both tests pass: the processes belong to their fixtures. The session fixture never stopped its own,
    # which fails the suite once every fixture is torn down.
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*processes of this test session outlived it (now killed): pid * sleep 604*"]
    )
    assert "sleep 603" not in result.stdout.str()
