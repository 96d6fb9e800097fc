"""The dispatcher around a crash: the attempt is on record before the send, and a send that may have
reached its channel before the crash is repeated as it was where the receiver drops the copy by id, and
marked where people read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.events import Alert, AlertKind, Tier
from services.common.clock import FakeClock
from services.common.config import ChannelConfig
from services.notifier.channels import Outcome, build_channel
from services.notifier.core import Dispatcher
from services.notifier.render import REPEAT
from tests.notifier.robots import HookServer, RobotServer
from tests.notifier.test_routing import FakeChannel

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def alert(key: str = "hits|xinghe|0:5-9") -> Alert:
    return Alert(
        event_time=T0,
        dedup_key=key,
        kind=AlertKind.keyword_hits,
        group="xinghe",
        tier=Tier.level3,
        title="舆情命中: xinghe 新增 5 条",
        body="规则组 `xinghe` 新增 5 条负面内容命中",
    )


class _Log(dict[str, dict[str, Any]]):
    """A delivery log that knows what was durable when: `settle` copies it, as Kafka acknowledging would."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: dict[str, dict[str, Any]] = {}

    async def settle(self) -> None:
        self.durable = {k: dict(v) for k, v in self.items()}


class _Crashing(FakeChannel):
    """A channel that got the request, then the worker died before the answer was recorded."""

    async def send(self, a: Alert, repeat: bool = False) -> Outcome:
        await super().send(a, repeat)
        raise _Killed


class _Killed(BaseException):
    pass


async def test_the_attempt_is_durable_before_the_request_leaves():
    log = _Log()
    seen_at_send: list[dict[str, Any]] = []

    class _Watching(FakeChannel):
        async def send(self, a: Alert, repeat: bool = False) -> Outcome:
            seen_at_send.append(dict(log.durable))
            return await super().send(a, repeat)

    d = Dispatcher([_Watching("hook")], clock=FakeClock(T0), settle=log.settle)
    await d.dispatch(alert(), log)
    assert seen_at_send == [{"hits|xinghe|0:5-9|hook": {"outcome": "attempted", "at": T0.isoformat()}}]
    assert log["hits|xinghe|0:5-9|hook"]["outcome"] == "delivered"


async def _crash_then_restart(channel: FakeChannel) -> tuple[FakeChannel, list[tuple[str, str]]]:
    """Send, die while the request is out, and dispatch again from what was durable."""
    log = _Log()
    with pytest.raises(_Killed):
        await Dispatcher([_Crashing(channel.name)], clock=FakeClock(T0), settle=log.settle).dispatch(
            alert(), log
        )
    restarted, seen = _Log(), []
    restarted.update(log.durable)  # the table as recovered from its changelog
    d = Dispatcher(
        [channel], clock=FakeClock(T0), settle=restarted.settle, observe=lambda e, c: seen.append((e, c))
    )
    out = await d.dispatch(alert(), restarted)
    assert [(x.channel, x.outcome.value) for x in out] == [(channel.name, "delivered")]
    return channel, seen


async def test_after_a_crash_a_webhook_gets_the_same_request_again():
    hook, seen = await _crash_then_restart(FakeChannel("hook", dedups_by_id=True))
    assert hook.repeats == [False]  # as it was: the receiver drops it by X-Yuqing-Event-Id
    assert seen == [("resent", "hook")]


async def test_after_a_crash_a_robot_gets_it_once_more_marked_as_a_possible_repeat():
    robot, seen = await _crash_then_restart(FakeChannel("wecom"))
    assert robot.repeats == [True]
    assert seen == [("possible_repeat", "wecom")]


async def test_a_failed_attempt_may_have_landed_too_and_a_delivered_one_is_never_sent_again():
    log = _Log()
    log["hits|xinghe|0:5-9|wecom"] = {"outcome": "failed", "at": T0.isoformat(), "error": "ReadTimeout"}
    log["hits|xinghe|0:5-9|mail"] = {"outcome": "delivered", "at": T0.isoformat()}
    robot, mail = FakeChannel("wecom"), FakeChannel("mail")
    await Dispatcher([robot, mail], clock=FakeClock(T0), settle=log.settle).dispatch(alert(), log)
    assert robot.repeats == [True]
    assert mail.sent == []


@pytest.fixture
def robots() -> Iterator[RobotServer]:
    with RobotServer() as server:
        yield server


async def test_the_possible_repeat_mark_reaches_the_robot_and_the_webhook_copy_is_byte_identical(
    robots: RobotServer,
):
    with HookServer("s") as receiver:
        chans = {
            "hook": build_channel(ChannelConfig(name="hook", type="webhook", url=receiver.url, secret="s")),
            "wecom": build_channel(ChannelConfig(name="wecom", type="wecom", url=robots.wecom_url())),
        }
        log = _Log()
        for name in chans:  # both had the alert when the worker died
            log[f"hits|xinghe|0:5-9|{name}"] = {"outcome": "attempted", "at": T0.isoformat()}
        first = alert()
        assert await chans["hook"].send(first) == Outcome(False, None)
        assert await chans["wecom"].send(first) == Outcome(False, None)
        await Dispatcher(chans, clock=FakeClock(T0), settle=log.settle).dispatch(first, log)
        for ch in chans.values():
            await ch.close()
    (key1, body1), (key2, body2) = receiver.receipts
    assert key1 == key2 == first.event_id
    assert body1 == body2
    assert receiver.repeats() == 1
    assert len(receiver.alerts) == 1
    plain, marked = robots.raw["wecom"]
    assert REPEAT.encode() not in plain
    assert marked.startswith(f'{{"msgtype":"markdown","markdown":{{"content":"### [{REPEAT}] '.encode())
    assert f"**{REPEAT}**".encode() in marked
