"""Metrics shared by every worker. Names carry a yuqing_ prefix and a unit; labels are fixed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["CommonMetrics"]


class CommonMetrics:
    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.messages = Counter(
            "yuqing_messages_processed_total",
            "Messages consumed and processed, per service and input topic.",
            ["service", "topic"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "yuqing_dead_letters_total",
            "Messages sent to the dead-letter topic, per service and reason.",
            ["service", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            "yuqing_processing_retries_total",
            "Transient failures (Kafka unreachable, timeouts) retried in place, per service.",
            ["service"],
            registry=registry,
        )
        self.processing = Histogram(
            "yuqing_processing_seconds",
            "Time to process one message, per service.",
            ["service"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
