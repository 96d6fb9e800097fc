"""The crash journal: what a dead process leaves tells the next start which records to suspect, and which
one killed it twice. A "death" here is simply a journal that is not written to again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.common.journal import CrashJournal, PartitionJournal


def _journal(tmp_path: Path, first: int) -> PartitionJournal:
    return PartitionJournal(tmp_path / "y.posts.raw.0", first)


def test_a_clean_run_leaves_nothing_to_suspect(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 0)
    journal.batch(19)  # handled and committed: the next start resumes at 20
    again = _journal(tmp_path, 20)
    assert again.found is None
    assert not again.suspects(20)


def test_a_death_in_a_run_makes_each_of_its_records_a_suspect(tmp_path: Path) -> None:
    _journal(tmp_path, 10).batch(25)
    again = _journal(tmp_path, 10)
    assert again.found is not None
    assert "10-25" in again.found
    assert again.suspects(10)
    assert [o for o in range(8, 28) if again.suspect(o)] == list(range(10, 26))
    assert not any(again.poisoned(o) for o in range(8, 28))


def test_a_suspect_that_kills_again_is_poisoned_and_the_rest_stay_suspects(tmp_path: Path) -> None:
    _journal(tmp_path, 10).batch(25)
    second = _journal(tmp_path, 10)
    second.begin(10)
    second.end()
    second.begin(11)  # dies here
    third = _journal(tmp_path, 10)
    assert third.found is not None
    assert "second time on offset 11" in third.found
    assert third.poisoned(11)
    assert not third.poisoned(10)
    assert third.suspect(12)
    assert third.suspect(25)


def test_one_record_handled_alone_is_its_own_suspect(tmp_path: Path) -> None:
    """The faust shell journals every record alone: a death names the record at once."""
    journal = _journal(tmp_path, 5)
    journal.begin(5)
    journal.end()
    journal.begin(7)  # dies
    second = _journal(tmp_path, 5)  # 5 and 6 were not committed: they come again, unsuspected
    assert [o for o in range(5, 9) if second.suspect(o)] == [7]
    second.begin(5)
    second.end()
    second.begin(7)  # dies again
    third = _journal(tmp_path, 5)
    assert third.poisoned(7)
    assert not third.poisoned(5)


def test_ending_a_record_clears_the_suspicion(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 5)
    journal.begin(7)
    journal.end()  # handled: a death while idle, or in a send that follows, is not the record's doing
    assert _journal(tmp_path, 5).found is None


def test_poison_behind_the_resume_point_is_forgotten(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 5)
    journal.begin(7)
    _journal(tmp_path, 5).begin(7)
    assert _journal(tmp_path, 5).poisoned(7)
    later = _journal(tmp_path, 8)  # 7 was dead-lettered and committed
    assert not later.poisoned(7)
    assert not later.suspects(8)


def test_poison_is_forgotten_once_the_partition_is_past_it(tmp_path: Path) -> None:
    _journal(tmp_path, 5).begin(7)
    _journal(tmp_path, 5).begin(7)
    journal = _journal(tmp_path, 5)
    assert journal.suspects(5)
    assert not journal.suspects(8)  # the fast path comes back


def test_a_shorter_state_written_over_a_longer_one_reads_back(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 0)
    journal.batch(10**15)
    journal.begin(10**15)
    _journal(tmp_path, 0).batch(1)  # a new process writes less than the old one left
    assert _journal(tmp_path, 0).suspect(1)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"at": "x", "low": true, "poison": 3}', b""])
def test_an_unreadable_journal_is_no_reason_not_to_start(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "y.posts.raw.0").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        journal = _journal(tmp_path, 0)
    assert not journal.suspects(0)
    journal.batch(3)
    assert _journal(tmp_path, 0).suspect(2)


def test_the_journal_of_a_revoked_partition_is_read_afresh(tmp_path: Path) -> None:
    journals = CrashJournal(tmp_path / "journal")
    one = journals.partition("y.posts.raw", 0, 0)
    assert journals.partition("y.posts.raw", 0, 99) is one  # opened once per assignment
    one.batch(9)
    journals.forget({0})
    assert journals.get("y.posts.raw", 0) is None
    back = journals.partition("y.posts.raw", 0, 3)  # another owner committed up to 3 only
    assert back is not one
    assert back.suspect(3)
    journals.close()
