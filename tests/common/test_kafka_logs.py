"""aiokafka's transient leader errors: one INFO line per run of them, an ERROR again once they last."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from services.common.kafka_logs import TransientKafkaFilter, install_kafka_log_filter

FETCH = "aiokafka.consumer.fetcher"
NOT_LEADER = "[Error 6] NotLeaderForPartitionError: TopicPartition(topic='t', partition=0)"
NO_COORDINATOR = "[Error 15] CoordinatorNotAvailableError: GroupCoordinatorNotAvailableError"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in self.records]


@pytest.fixture
def capture() -> Iterator[tuple[Capture, Clock]]:
    """aiokafka's loggers behind the filter, at INFO, into a handler of the root logger (as in a worker)."""
    clock = Clock()
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_kafka_log_filter(TransientKafkaFilter(grace=60, gap=30, now=clock))
    try:
        yield handler, clock
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        install_kafka_log_filter()  # a fresh filter for whoever logs next


def test_a_run_of_leader_errors_is_one_info_line(capture: tuple[Capture, Clock]) -> None:
    handler, clock = capture
    log = logging.getLogger(FETCH)
    for _ in range(5):
        log.error("Failed fetch offsets from %s: %s", 1, NOT_LEADER)
        clock.t += 1
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s", NO_COORDINATOR
    )
    logging.getLogger("aiokafka.cluster").error("Topic %s not found in cluster metadata", "t")
    assert handler.lines() == [
        (
            "INFO",
            "waiting for the topic leaders (normal while topics are new or a broker is down): "
            f"Failed fetch offsets from 1: {NOT_LEADER}",
        )
    ]


def test_errors_that_outlast_the_grace_are_errors_with_their_cause(capture: tuple[Capture, Clock]) -> None:
    handler, clock = capture
    log = logging.getLogger(FETCH)
    for _ in range(8):  # one every 10 s: one run, never quiet for 30 s
        log.error("Failed fetch offsets from %s: %s", 1, NOT_LEADER)
        clock.t += 10
    levels = [level for level, _ in handler.lines()]
    assert levels == ["INFO", "ERROR", "ERROR"]  # at 60 s and 70 s
    assert handler.lines()[1][1] == f"Failed fetch offsets from 1: {NOT_LEADER} (failing for 60 s)"


def test_a_new_run_after_a_quiet_gap_gets_its_own_line(capture: tuple[Capture, Clock]) -> None:
    handler, clock = capture
    log = logging.getLogger(FETCH)
    log.error("Failed fetch offsets from %s: %s", 1, NOT_LEADER)
    clock.t += 31
    log.error("Failed fetch offsets from %s: %s", 2, NOT_LEADER)
    assert [level for level, _ in handler.lines()] == ["INFO", "INFO"]


def test_other_errors_pass_untouched(capture: tuple[Capture, Clock]) -> None:
    handler, _ = capture
    logging.getLogger(FETCH).error(
        "Failed fetch offsets from %s: %s", 1, "[Error 29] TopicAuthorizationFailed"
    )
    logging.getLogger("aiokafka.client").error('Unable connect to "%s:%s": %s', "h", 9092, "SSL error")
    assert [level for level, _ in handler.lines()] == ["ERROR", "ERROR"]


def test_a_worker_logging_at_warning_shows_nothing_of_a_short_run(capture: tuple[Capture, Clock]) -> None:
    handler, _ = capture
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger(FETCH).error("Failed fetch offsets from %s: %s", 1, NOT_LEADER)
    assert handler.lines() == []
