"""Inputs in order, each once: the next offset a faust worker must process on each of its input partitions.

faust-streaming 0.15 drops input records when a worker is assigned its partitions (traced in the notifier:
it handled offset 0, then 41; offsets 1-40 never reached it). At the end of table recovery it resumes the
stream partitions, awaits the seek to the committed offsets, then resumes flow, which clears the agents'
queues:
- records fetched while the seek is awaited are put on the agent's queue and cleared with it, but faust's
  read offset has moved past them;
- with a committed offset they are fetched again after the seek and dropped as already read ("DROPPED
  MESSAGE ROFF"); without one (aiokafka seeks only to a committed offset) they are never fetched again.
faust never commits past them (its commit stops at the hole), so the next worker to start reads them again.
But the notifier's covered_to had moved past them with the next record it handled, so it then skipped them
as covered: first hits never alerted. Escalation's tier changes and operator actions waited for a restart.

So a worker keeps, per input partition, the next offset it must process, starting where its consumer group
resumes (the committed offset, else the log start). A record above it means the records in between never
reached the worker: they are read directly from Kafka and processed first. A record below it was processed
already in this assignment. Dropped records with nothing after them show as a partition whose position stops
while Kafka holds more (`stalled`, asked on each tick), and are read the same way. The shell does the reading
(`StreamShell.in_order`); this module only decides.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Arrival", "InputSequence"]


class Arrival(StrEnum):
    """Where a record stands against the next offset its partition expects."""

    next = "next"  # the one expected: process it
    again = "again"  # below it: processed before in this assignment, skip it
    gap = "gap"  # above it: the records in between never arrived, process them first


class InputSequence:
    """The next offset to process per (topic, partition), for one assignment (consumer generation).

    A new generation forgets everything: another worker may have processed the partition meanwhile, and
    where the group resumes (its committed offset) is the only safe start. Offsets only move forward."""

    def __init__(self) -> None:
        self.generation: int | None = None
        self._next: dict[tuple[str, int], int] = {}
        self._still: dict[tuple[str, int], tuple[int, float]] = {}  # position, and since when

    def adopt(self, generation: int | None) -> None:
        """Start over for a new assignment; nothing changes for the current one."""
        if generation != self.generation:
            self.generation = generation
            self._next.clear()
            self._still.clear()

    def expects(self, topic: str, partition: int) -> int | None:
        """The next offset to process, or None before `begin` in this assignment."""
        return self._next.get((topic, partition))

    def begin(self, topic: str, partition: int, offset: int) -> None:
        """Where the partition resumes; ignored once the partition has a position in this assignment."""
        self._next.setdefault((topic, partition), offset)

    def stalled(self, topic: str, partition: int, end: int, now: float, patience: float) -> bool:
        """Asked on each tick, with the end of the partition in Kafka and a monotonic `now`: True when
        records before `end` are still to be processed and the position has not moved for `patience`
        seconds, so faust is not delivering them (it dropped them, and nothing after them has come to show
        the gap). Time, not a count of ticks: ticks that piled up while the worker was down come in a rush."""
        key = (topic, partition)
        at = self._next.get(key)
        if at is None or at >= end:
            self._still.pop(key, None)
            return False
        was, since = self._still.get(key, (None, now))
        if was != at:
            self._still[key] = (at, now)
            return False
        return now - since >= patience

    def place(self, topic: str, partition: int, offset: int) -> Arrival:
        expected = self._next[(topic, partition)]
        if offset == expected:
            return Arrival.next
        return Arrival.again if offset < expected else Arrival.gap

    def advance(self, topic: str, partition: int, to: int, generation: int | None) -> None:
        """Everything below `to` is processed (or holds no record), in `generation`. Only forward, and only
        within the assignment the processing began in: a record of an ended assignment finished late must
        not move the start of the next one."""
        key = (topic, partition)
        if generation == self.generation and key in self._next and to > self._next[key]:
            self._next[key] = to

    def done(self, topic: str, partition: int, offset: int, generation: int | None) -> None:
        """The record at `offset` is processed, in `generation`."""
        self.advance(topic, partition, offset + 1, generation)
