"""Replay a JSONL file of posts onto a Kafka topic, as fast as possible or at the pace they were observed.

A line is a normalised Post, a native payload of `platform`, or {"platform": …, "payload": {…}} with an
optional "event_time". Bad lines are reported and counted; they never stop the replay.

With `event_time`, a line without an observation time takes its publish time instead of the time it is sent:
history keeps its own times, for a stack whose windows follow event time (YUQING_WINDOW_CLOCK=event).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from schemas.events import Platform, Post
from services.common import json
from services.common.clock import Clock, system_clock
from services.common.progress import ProgressBar
from services.ingest.adapters import AdapterError, adapt
from services.ingest.exceptions import ReplayError
from services.ingest.timeparse import parse_time

__all__ = ["ReplayResult", "parse_line", "replay"]

_READ_HINT = 1 << 20  # bytes of lines read per trip to the worker thread
_ACK_WINDOW = 1000  # sends in flight before waiting for their acks: bounds memory, surfaces errors early
_RAW_EXCERPT = 200


@dataclass(frozen=True)
class ReplayResult:
    sent: int
    bad: int
    seconds: float
    published: int = 0  # lines sent with their publish time for want of an observation time (event_time)


class _BadLine(Exception):
    """A line that cannot become a Post; the message is the reason written to the report."""


async def replay(
    path: Path,
    bootstrap: str,
    topic: str,
    *,
    speed: float | None,
    platform: str | None,
    report: Path | None,
    progress: bool,
    clock: Clock = system_clock,
    event_time: bool = False,
    kafka_client: dict[str, Any] | None = None,
) -> ReplayResult:
    """Send every good line of `path` to `topic`, keyed platform:post_id.

    speed None sends as fast as Kafka takes them; speed 1.0 keeps the gaps between event times, 10 makes
    them ten times shorter. Native lines of `platform` are paced by their publish times and stamped with
    clock() when sent; other lines without an event_time get clock() and do not move the pace. With
    `event_time`, every line without an event_time takes its publish time instead, and paces by it.
    `kafka_client` are the producer's security arguments (kafka_security.client_kwargs).
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ReplayError(f"speed must be a positive number, or None for as fast as possible; got {speed!r}")
    native = _platform(platform)
    sent = bad = read_bytes = published = 0
    async with contextlib.AsyncExitStack() as stack:
        # Files first: a missing input fails before any connection to Kafka is made.
        source = stack.enter_context(await asyncio.to_thread(path.open, "rb"))
        sink = stack.enter_context(await asyncio.to_thread(report.open, "wb")) if report is not None else None
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **(kafka_client or {}),
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        started = time.monotonic()
        pacer = _Pacer(speed)
        bar = _Progress(os.fstat(source.fileno()).st_size, sys.stderr if progress else None, started)
        pending: list[asyncio.Future[Any]] = []
        number = 0
        while lines := await asyncio.to_thread(source.readlines, _READ_HINT):
            for raw in lines:
                number += 1
                read_bytes += len(raw)
                line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                if not line.strip():
                    continue
                try:
                    post, explicit = _decode(line, native, clock())
                    if event_time and not explicit:
                        post, explicit = _at_publication(post), True
                        published += 1
                except _BadLine as exc:
                    bad += 1
                    _write_bad(sink, number, str(exc), line)
                    bar.show(read_bytes, sent + len(pending), bad)
                    continue
                # A native payload has no observation time: its publish time sets the pace, and it is
                # observed when it is sent, so it is stamped again after the wait.
                pace = post.event_time if explicit else post.published_at if native else None
                if pace is not None and (wait := pacer.wait(pace, time.monotonic())) > 0:
                    await asyncio.sleep(wait)
                    if not explicit:
                        post = _observed(post, clock())
                key = post.thread_key.encode()  # a post and its reposts share a partition (scoring)
                pending.append(await producer.send(topic, key=key, value=json.dumps(post)))
                if len(pending) >= _ACK_WINDOW:
                    sent += await _acked(pending)
                bar.show(read_bytes, sent + len(pending), bad)
        sent += await _acked(pending)
    seconds = time.monotonic() - started
    bar.show(read_bytes, sent, bad, final=True)
    return ReplayResult(sent=sent, bad=bad, seconds=seconds, published=published)


def _platform(name: str | None) -> str | None:
    if name is None:
        return None
    key = name.strip().lower()
    if key not in {p.value for p in Platform}:
        allowed = ", ".join(p.value for p in Platform)
        raise ReplayError(f"platform {name!r} is not one of: {allowed}")
    return key


def parse_line(
    line: bytes, platform: str | None, now: datetime, *, publish_time: bool = False
) -> tuple[Post, bool]:
    """The Post one line of a replay file holds, and whether its event time came from the line. A line
    without an observation time gets `now`, or with `publish_time` its publish time. ReplayError says why
    a line holds no post."""
    try:
        post, explicit = _decode(line, _platform(platform), now)
        if publish_time and not explicit:
            post = _at_publication(post)
    except _BadLine as exc:
        raise ReplayError(str(exc)) from None
    return post, explicit


def _decode(line: bytes, platform: str | None, now: datetime) -> tuple[Post, bool]:
    """The Post a line holds, and whether its event time came from the line (and so may pace)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _BadLine(f"expected a JSON object, got {type(data).__name__}")
    if "payload" in data:  # a Post has no such field, so this is an envelope around a native payload
        return _envelope(data, now)
    if platform is not None:
        try:
            return adapt(platform, data, now), False
        except AdapterError as exc:
            raise _BadLine(f"{platform} payload: {exc}") from None
    explicit = data.get("event_time") is not None
    try:
        return Post.model_validate(data if explicit else {**data, "event_time": now}), explicit
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise _BadLine("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)) from None


def _envelope(data: dict[str, Any], now: datetime) -> tuple[Post, bool]:
    name = data.get("platform")
    if not isinstance(name, str):
        raise _BadLine("platform: expected the name of the payload's platform")
    observed = data.get("event_time")
    if observed is not None:
        try:
            now = parse_time(observed)
        except ValueError as exc:
            raise _BadLine(f"event_time: {exc}") from None
    try:
        return adapt(name, data["payload"], now), observed is not None
    except AdapterError as exc:
        where = "" if exc.field in ("platform", "payload") else "payload."
        raise _BadLine(f"{where}{exc}") from None


def _at_publication(post: Post) -> Post:
    """The post observed when it was published (replaying history by publish time)."""
    if post.published_at is None:
        raise _BadLine("event_time: the line has neither an observation time nor a publication time")
    return _observed(post, post.published_at)


def _observed(post: Post, now: datetime) -> Post:
    # Validated again rather than model_copy'd: the event id derives from event_time.
    return Post.model_validate({**post.model_dump(exclude={"event_id"}), "event_time": now})


def _write_bad(sink: IO[bytes] | None, number: int, reason: str, line: bytes) -> None:
    if sink is None:
        return
    raw = line.decode("utf-8", errors="replace").rstrip("\r\n")
    sink.write(json.dumps({"line": number, "reason": reason, "raw": raw[:_RAW_EXCERPT]}) + b"\n")


async def _acked(pending: list[asyncio.Future[Any]]) -> int:
    """Wait for Kafka's acks; a failed send is fatal, since the rest of the file would be out of order."""
    done = len(pending)
    await asyncio.gather(*pending)
    pending.clear()
    return done


class _Pacer:
    """Keeps event-time gaps, divided by speed, between sends, measured from the first paced line.

    Measuring from the first line rather than the previous one keeps sleep overshoot from adding up.
    """

    def __init__(self, speed: float | None) -> None:
        self._speed = speed
        self._start = 0.0
        self._first: datetime | None = None

    def wait(self, event_time: datetime, now: float) -> float:
        """Seconds to sleep before sending a post with `event_time`, given monotonic `now`."""
        if self._speed is None:
            return 0.0
        if self._first is None:
            self._first, self._start = event_time, now
            return 0.0
        due = self._start + (event_time - self._first).total_seconds() / self._speed
        return max(0.0, due - now)


class _Progress(ProgressBar):
    """One carriage-return line on stderr: bar, percent of the file, counts and send rate."""

    label = "replay"

    def __init__(self, total_bytes: int, stream: TextIO | None, start: float) -> None:
        super().__init__(total_bytes, stream)
        self._start = start

    def detail(self, now: float, *counts: int) -> str:
        sent, bad = counts
        return f"{sent:,} sent  {bad:,} bad  {sent / max(now - self._start, 1e-9):,.1f}/s"
