from __future__ import annotations

from services.common.sequence import Arrival, InputSequence


def _begun(generation: int = 1, at: int = 7) -> InputSequence:
    seq = InputSequence()
    seq.adopt(generation)
    seq.begin("hits", 0, at)
    return seq


def test_a_record_is_the_next_one_a_repeat_or_after_a_gap() -> None:
    seq = _begun(at=7)
    assert seq.place("hits", 0, 7) is Arrival.next
    assert seq.place("hits", 0, 3) is Arrival.again
    assert seq.place("hits", 0, 9) is Arrival.gap


def test_processing_moves_the_position_forward_only() -> None:
    seq = _begun(at=7)
    seq.done("hits", 0, 7, 1)
    assert seq.expects("hits", 0) == 8
    assert seq.place("hits", 0, 7) is Arrival.again  # faust delivering it again after its seek
    seq.done("hits", 0, 5, 1)  # a late copy never moves it back
    assert seq.expects("hits", 0) == 8
    seq.advance("hits", 0, 12, 1)  # offsets without a record (transaction markers, compaction)
    assert seq.place("hits", 0, 12) is Arrival.next


def test_partitions_are_apart_and_begin_only_once() -> None:
    seq = _begun(at=7)
    seq.begin("hits", 1, 100)
    seq.begin("alerts", 0, 0)
    seq.done("hits", 0, 7, 1)
    seq.begin("hits", 0, 3)  # a second start (the seek after the rebalance) keeps what was processed
    assert (seq.expects("hits", 0), seq.expects("hits", 1), seq.expects("alerts", 0)) == (8, 100, 0)
    assert seq.expects("tier-changes", 0) is None


def test_a_new_assignment_starts_over_and_an_old_one_cannot_move_it() -> None:
    seq = _begun(generation=1, at=7)
    seq.done("hits", 0, 7, 1)
    seq.adopt(1)  # the same assignment: nothing forgotten
    assert seq.expects("hits", 0) == 8
    seq.adopt(2)  # another worker may have processed the partition since
    assert seq.expects("hits", 0) is None
    seq.begin("hits", 0, 20)
    seq.done("hits", 0, 30, 1)  # a record of assignment 1 finished late
    seq.advance("hits", 0, 40, 1)
    assert seq.expects("hits", 0) == 20
    seq.done("hits", 5, 1, 2)  # never begun in this assignment: no position made up for it
    assert seq.expects("hits", 5) is None


def test_a_position_that_stays_behind_the_end_for_a_while_is_stalled() -> None:
    seq = _begun(at=7)
    assert not seq.stalled("hits", 0, 7, now=0.0, patience=2)  # nothing to read
    assert not seq.stalled("hits", 0, 9, now=0.0, patience=2)  # first look: records may be on their way
    assert not seq.stalled("hits", 0, 9, now=1.9, patience=2)  # ticks that piled up, in a rush
    assert seq.stalled("hits", 0, 9, now=2.0, patience=2)  # still there after a while
    seq.done("hits", 0, 7, 1)
    assert not seq.stalled("hits", 0, 12, now=5.0, patience=2)  # it moved: records are arriving
    assert not seq.stalled("hits", 0, 12, now=6.0, patience=2)
    assert seq.stalled("hits", 0, 12, now=7.0, patience=2)
    seq.advance("hits", 0, 12, 1)
    assert not seq.stalled("hits", 0, 12, now=9.0, patience=2)
    assert not seq.stalled("alerts", 0, 5, now=9.0, patience=0)  # no position yet in this assignment
    seq.adopt(2)
    seq.begin("hits", 0, 7)
    assert not seq.stalled("hits", 0, 9, now=20.0, patience=2)  # a new assignment looks afresh
