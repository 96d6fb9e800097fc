"""The Aho-Corasick wrapper: every occurrence, in character offsets, in the order the matcher reads them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.automaton import Automaton


def test_overlapping_occurrences_by_end_then_longest_first() -> None:
    a = Automaton({"维权": 1, "集体维权": 2, "体维": 3, "权": 4})
    assert a.find("消费者集体维权") == [(4, 6, 3), (3, 7, 2), (5, 7, 1), (6, 7, 4)]


def test_offsets_count_characters_not_bytes_even_past_emoji() -> None:
    text = "😡🙄星河电器😡差评"
    a = Automaton({"星河电器": "brand", "差评": "tag"})
    assert [(text[s:e], v) for s, e, v in a.find(text)] == [("星河电器", "brand"), ("差评", "tag")]


def test_an_empty_word_matches_nothing_and_an_empty_automaton_finds_nothing() -> None:
    assert Automaton({"": 0, "好": 1}).find("很好") == [(1, 2, 1)]
    assert len(Automaton({"": 0})) == 0
    assert Automaton({}).find("很好") == []


WORDS = st.lists(st.text(alphabet="星河电器差评好坏😡a", min_size=1, max_size=4), max_size=12, unique=True)


@given(WORDS, st.text(alphabet="星河电器差评好坏😡ab，", max_size=40))
def test_it_finds_exactly_what_a_scan_of_every_span_finds(words: list[str], text: str) -> None:
    a = Automaton({w: w for w in words})
    expected = sorted(
        ((s, s + len(w), w) for w in words for s in range(len(text)) if text.startswith(w, s)),
        key=lambda m: (m[1], m[0]),
    )
    assert a.find(text) == expected
