"""Kafka clients' expected transient errors, logged as what they are.

On fresh topics (and while a broker is down) aiokafka logs ERROR lines such as `Failed fetch offsets …
NotLeaderForPartitionError` or `Group Coordinator Request failed: … GroupCoordinatorNotAvailableError`
while leaders are elected, and retries until they are. An operator reads ERROR as broken. The filter
folds each run of them into one INFO line, "waiting for the topic leaders", and lets them through as the
ERROR they are, with their cause, once they have lasted longer than a leader election can explain.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

__all__ = ["TransientKafkaFilter", "install_kafka_log_filter"]

# Loggers of aiokafka that report leader and coordinator moves as errors.
_LOGGERS = (
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.cluster",
    "aiokafka.client",
    "aiokafka.producer.sender",
)
# What a leader election or a coordinator move looks like in their messages.
_TRANSIENT = re.compile(
    r"NotLeaderForPartitionError|NotLeaderOrFollowerError|LeaderNotAvailableError"
    r"|GroupCoordinatorNotAvailableError|CoordinatorNotAvailableError|NotCoordinatorForGroupError"
    r"|NotCoordinatorError|CoordinatorLoadInProgressError|GroupLoadInProgressError"
    r"|not found in cluster metadata"  # aiokafka.cluster: "Topic %s not found …", a topic just created
)


class TransientKafkaFilter(logging.Filter):
    """A logging filter with an injected clock. A transient error that starts a run (none in the last
    `gap` seconds) becomes one INFO line; the rest of the run is DEBUG; once the run has lasted `grace`
    seconds, each record passes unchanged (an ERROR with its cause) and says for how long it has failed."""

    def __init__(
        self, grace: float = 60.0, gap: float = 30.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.grace = grace
        self.gap = gap
        self.now = now
        self._since: float | None = None
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not _TRANSIENT.search(message):
            return True
        now = self.now()
        if self._since is None or now - self._last > self.gap:
            self._since = now
            self._last = now
            return _as(
                record,
                logging.INFO,
                "waiting for the topic leaders (normal while topics are new or a broker is down): %s",
                message,
            )
        self._last = now
        if now - self._since >= self.grace:
            record.msg, record.args = "%s (failing for %.0f s)", (message, now - self._since)
            return True
        return _as(record, logging.DEBUG, "still waiting for the topic leaders: %s", message)


def _as(record: logging.LogRecord, level: int, msg: str, message: str) -> bool:
    """Rewrite `record` at `level`; keep it only if its logger lets that level through (the handler of a
    process that logs at WARNING would otherwise still print a record lowered to INFO)."""
    record.levelno, record.levelname = level, logging.getLevelName(level)
    record.msg, record.args = msg, (message,)
    return logging.getLogger(record.name).isEnabledFor(level)


def install_kafka_log_filter(log_filter: TransientKafkaFilter | None = None) -> TransientKafkaFilter:
    """Attach one shared filter to aiokafka's loggers (a logger's filters see only its own records)."""
    log_filter = log_filter or TransientKafkaFilter()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, TransientKafkaFilter)]:
            logger.removeFilter(old)
        logger.addFilter(log_filter)
    return log_filter
