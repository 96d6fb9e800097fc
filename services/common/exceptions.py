"""The root error of yuqing, the errors of the shared runtime and the outcomes every service shares."""

from __future__ import annotations

__all__ = [
    "BadLink",
    "BrokerError",
    "CheckpointError",
    "ConfigError",
    "DeadLetter",
    "DemoFailed",
    "KafkaSetupError",
    "OffsetsNotCommitted",
    "OutputsNotFlushed",
    "OutputsNotProduced",
    "RetryLater",
    "StateNotWritten",
    "StateRowError",
    "YuqingError",
]


class YuqingError(Exception):
    """Root of every error yuqing raises on purpose."""


class ConfigError(YuqingError):
    """A settings value or config file is wrong; the message names the field."""


class BrokerError(YuqingError):
    """The embedded Kafka broker could not be fetched, formatted, started or reached."""


class KafkaSetupError(YuqingError):
    """Topics could not be created or checked on the cluster; the message names the topic and the cause."""


class DemoFailed(YuqingError):
    """`yuqing demo` did not see everything it must show; the message says what was missing."""


class BadLink(YuqingError):
    """A signed action link is malformed, forged or expired."""


class DeadLetter(YuqingError):
    """A message that can never be processed: route it to the dead-letter topic with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RetryLater(YuqingError):
    """A transient failure (Kafka unavailable, a send timed out): process the same message again later;
    never dead-letter it, or at-least-once becomes at-most-once."""


class StateRowError(YuqingError):
    """A state table's changelog holds a row its codec cannot read: corrupt, or of a newer release."""


class CheckpointError(YuqingError):
    """A step of a batch's checkpoint failed for good (transient Kafka errors are retried first). The worker
    stops; its successor replays the batch from the last committed offsets against the state written so far,
    which never runs ahead of the output it follows from."""


class OutputsNotProduced(CheckpointError):
    """Step 1: the batch's output records could not be handed to the producer."""


class OutputsNotFlushed(CheckpointError):
    """Step 2: the broker did not acknowledge every output record."""


class StateNotWritten(CheckpointError):
    """Step 3: the changed table rows were not written to (and acknowledged on) their changelogs."""


class OffsetsNotCommitted(CheckpointError):
    """Step 4: the input offsets could not be committed (other than the group having moved on)."""
