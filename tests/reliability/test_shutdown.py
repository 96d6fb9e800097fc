"""Every worker exits within 10 s of SIGTERM, with its broker up and with the broker gone.

Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds before SIGKILL; `yuqing dev` and the tests
wait too. A worker that ignored SIGTERM while its broker was away (issue 16: still running 13 minutes after
the suite, pointed at a broker that no longer existed) holds a rollout, a dev stack's Ctrl-C and CI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.cli.runner import Stack
from services.common.broker import EmbeddedBroker, free_port
from tests.conftest import write_config

pytestmark = pytest.mark.kafka

WORKERS = ("ingest", "desk", "scoring", "escalation", "notifier")
BOUND = 10.0  # seconds from SIGTERM to exit


def _url(stack: Stack, name: str) -> str:
    port = {"ingest": stack.api_port, "desk": stack.desk_port}.get(name) or stack.web_ports[name]
    return f"http://127.0.0.1:{port}"


async def _running(stack: Stack, within: float = 120.0) -> None:
    """Every worker serves /healthz; the stream workers have joined their group (partitions assigned: their
    lag gauge has rows), so SIGTERM meets each in its steady state, consumer and producer connected."""
    deadline = time.monotonic() + within
    waiting = set(WORKERS)
    async with httpx.AsyncClient(timeout=2) as client:
        while waiting:
            assert not stack.check(), f"exited early: {stack.check()}"
            assert time.monotonic() < deadline, f"never running: {sorted(waiting)}"
            for name in sorted(waiting):
                try:
                    if (await client.get(f"{_url(stack, name)}/healthz")).status_code != 200:
                        continue
                    if name in ("ingest", "desk"):
                        waiting.discard(name)
                    elif (
                        "yuqing_consumer_lag_messages{"
                        in (await client.get(f"{_url(stack, name)}/metrics")).text
                    ):
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(0.5)


def _terminate_all(stack: Stack) -> dict[str, float | None]:
    """SIGTERM every worker at once; the seconds each took to exit (None: still running after 2 x BOUND)."""
    procs = {name: stack.procs[name] for name in WORKERS}
    sent = time.monotonic()
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    took: dict[str, float | None] = dict.fromkeys(procs)
    while time.monotonic() - sent < 2 * BOUND and any(t is None for t in took.values()):
        for name, proc in procs.items():
            if took[name] is None and proc.poll() is not None:
                took[name] = time.monotonic() - sent
        time.sleep(0.05)
    return took


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, which it kills."""
    broker = EmbeddedBroker(port=free_port(), home=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _kill(broker: EmbeddedBroker) -> None:
    pid = broker.status()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    broker.stop()  # reaps it and forgets its pid file
    assert broker.status() is None


def _assert_quick(took: dict[str, float | None], stack: Stack) -> None:
    slow = {name: t for name, t in took.items() if t is None or t > BOUND}
    logs = {name: (stack.log_dir / f"{name}.log").read_text(errors="replace")[-1500:] for name in slow}
    assert not slow, f"not gone within {BOUND:g} s of SIGTERM: {slow}\n{logs}"


async def _watch_the_console(desk: str, streaming: asyncio.Event) -> None:
    """An operator's open board: its event stream is a response that lasts 15 s (the desk must not wait)."""
    async with httpx.AsyncClient(base_url=desk, timeout=30) as client:
        login = await client.post(
            "/console/login", data={"actor": "值班", "token": "dev-stack-has-no-tokens"}
        )
        assert login.status_code == 303, login.text
        async with client.stream("GET", "/console/events", params={"view": "board"}) as events:
            assert events.status_code == 200
            streaming.set()
            async for _ in events.aiter_bytes():
                pass


async def test_every_worker_exits_within_10_s_of_sigterm_with_the_broker_up(stack_factory, tmp_path):
    stack = stack_factory(
        write_config(tmp_path / "c.yaml"), services=WORKERS, extra_env={"YUQING_BRIEFINGS": "true"}
    )
    await _running(stack)
    streaming = asyncio.Event()
    console = asyncio.create_task(_watch_the_console(_url(stack, "desk"), streaming))
    await asyncio.wait_for(streaming.wait(), 10)
    took = await asyncio.to_thread(_terminate_all, stack)
    console.cancel()
    await asyncio.gather(console, return_exceptions=True)
    _assert_quick(took, stack)
    print("exit after SIGTERM, broker up:", {k: round(v or -1, 1) for k, v in took.items()})


async def test_every_worker_exits_within_10_s_of_sigterm_with_the_broker_gone(
    own_broker, stack_factory, tmp_path
):
    env = {"YUQING_KAFKA_BOOTSTRAP": own_broker.bootstrap, "YUQING_BRIEFINGS": "true"}
    stack = stack_factory(write_config(tmp_path / "c.yaml"), services=WORKERS, extra_env=env)
    await _running(stack)
    await asyncio.to_thread(_kill, own_broker)
    await asyncio.sleep(3)  # the clients notice: connections reset, metadata requests fail
    assert not stack.check(), f"a worker exited when the broker went: {stack.check()}"
    took = await asyncio.to_thread(_terminate_all, stack)
    _assert_quick(took, stack)
    print("exit after SIGTERM, broker gone:", {k: round(v or -1, 1) for k, v in took.items()})
