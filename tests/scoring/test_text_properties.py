"""Hypothesis over the text normaliser and the matcher: any text, no exception, and invariants hold."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.labels import DEMANDS
from services.common.config import RulesConfig
from services.scoring.matcher import RuleMatcher, _inside_longer
from services.scoring.normalize import normalize
from services.scoring.sentiment import analyse

MATCHER = RuleMatcher(
    RulesConfig.model_validate({"groups": [{"name": "g", "brands": ["星河电器", "Apple"]}]})
)
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(
    alphabet="星河电器投诉差评避雷針质量問題 　\u200b#@！，。abcAPPLE😡", max_size=80
)


@settings(max_examples=500, deadline=None)
@given(texts)
@example("@O¨")  # NFKC makes ¨ a space and a combining mark, which the nick's end kept from composing
@example("0 á")
def test_normalise_is_idempotent_and_drops_spaces(text):
    once = normalize(text)
    assert normalize(once) == once
    assert "\u200b" not in once
    for i, ch in enumerate(once):
        if ch.isspace():  # only a single space between Latin letters or digits survives
            assert ch == " "
            assert once[i - 1].isascii()
            assert once[i - 1].isalnum()
            assert once[i + 1].isascii()
            assert once[i + 1].isalnum()


@settings(max_examples=500, deadline=None)
@given(texts)
def test_matcher_and_sentiment_accept_any_text(text):
    norm = normalize(text)
    for group in MATCHER.match(text):
        for m in group.matches:
            assert norm[m.start : m.end] == m.term
        assert {m.kind for m in group.matches} >= {"brand", "negative"}
    score, demand = analyse(text)
    assert -1.0 <= score <= 1.0
    assert demand in DEMANDS


spans = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 12)).map(lambda p: (p[0], p[0] + p[1])), max_size=40
)


@settings(max_examples=500, deadline=None)
@given(spans, spans)
def test_inside_longer_agrees_with_its_definition(containers, queries):
    """The O(log n) containment test the matcher uses (so a post naming a brand thousands of times stays
    cheap) answers as the pairwise definition does: inside a span that is longer and covers it."""
    inside = _inside_longer(containers)
    for start, end in queries + containers:
        expected = any(s <= start and end <= e and e - s > end - start for s, e in containers)
        assert inside(start, end) == expected, (start, end)
