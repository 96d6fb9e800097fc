from __future__ import annotations

from typing import Any

import pytest

from services.common.config import RulesConfig
from services.scoring.matcher import GroupMatch, RuleMatcher, default_negatives
from services.scoring.normalize import normalize


def build(*groups: dict[str, Any]) -> RuleMatcher:
    return RuleMatcher(RulesConfig.model_validate({"groups": list(groups)}))


@pytest.fixture(scope="module")
def matcher() -> RuleMatcher:
    return build(
        {"name": "xinghe", "brands": ["星河电器", "星河空调"]},
        {"name": "xiaomi", "brands": ["小米", "Xiaomi"], "negatives": ["避雷", "起火", "投诉"]},
    )


def groups_of(result: list[GroupMatch]) -> list[str]:
    return sorted(g.group for g in result)


def test_default_negatives_loaded() -> None:
    negs = default_negatives()
    assert "投诉" in negs
    assert "避雷" in negs
    assert not any(t.startswith("#") for t in negs)


def test_brand_and_negative_hit(matcher: RuleMatcher) -> None:
    result = matcher.match("星河电器空调起火了")
    assert groups_of(result) == ["xinghe"]
    kinds = {(m.term, m.kind) for m in result[0].matches}
    assert ("星河电器", "brand") in kinds
    assert ("起火", "negative") in kinds


@pytest.mark.parametrize("text", ["星河电器新品发布会", "小米", "今天天气不错"])
def test_brand_alone_no_hit(matcher: RuleMatcher, text: str) -> None:
    assert matcher.match(text) == []


@pytest.mark.parametrize("text", ["我要投诉", "起火", "避雷"])
def test_negative_alone_no_hit(matcher: RuleMatcher, text: str) -> None:
    assert matcher.match(text) == []


def test_brand_inside_longer_word_not_matched(matcher: RuleMatcher) -> None:
    assert matcher.match("小米粥起火") == []
    assert matcher.match("今天喝小米粥，我要投诉") == []
    # The same brand as its own word does hit.
    assert groups_of(matcher.match("小米手机起火")) == ["xiaomi"]


def test_negative_inside_longer_word_not_matched(matcher: RuleMatcher) -> None:
    assert matcher.match("小米的避雷针很高") == []
    assert groups_of(matcher.match("大家避雷小米")) == ["xiaomi"]


def test_traditional_post_matches_simplified_rules(matcher: RuleMatcher) -> None:
    result = matcher.match("星河電器，我要投訴")
    assert groups_of(result) == ["xinghe"]
    assert {m.term for m in result[0].matches} == {"星河电器", "投诉"}


def test_full_width_latin_brand_matches(matcher: RuleMatcher) -> None:
    result = matcher.match("ＸＩＡＯＭＩ手机起火")
    assert groups_of(result) == ["xiaomi"]
    assert any(m.term == "xiaomi" and m.kind == "brand" for m in result[0].matches)


@pytest.mark.parametrize(
    "text", ["星 河 电 器 投诉", "星\u200b河\u200b电\u200b器投诉", "星河\u200d电器 投\u200b诉"]
)
def test_spaced_or_zero_width_split_brand_matches(matcher: RuleMatcher, text: str) -> None:
    assert groups_of(matcher.match(text)) == ["xinghe"]


def test_excluded_words_suppress() -> None:
    m = build({"name": "exc", "brands": ["星河电器"], "negatives": ["起火"], "excluded": ["演练"]})
    assert groups_of(m.match("星河电器起火")) == ["exc"]
    assert m.match("星河电器起火演练") == []
    assert m.match("星河电器消防演练时起火") == []


def test_required_words_needed() -> None:
    m = build({"name": "req", "brands": ["星河电器"], "negatives": ["起火"], "required": ["空调"]})
    assert m.match("星河电器起火") == []
    result = m.match("星河电器空调起火")
    assert groups_of(result) == ["req"]
    assert any(x.kind == "required" and x.term == "空调" for x in result[0].matches)


def test_proximity_respected() -> None:
    m = build({"name": "prox", "brands": ["星河电器"], "negatives": ["起火"], "proximity": 5})
    assert groups_of(m.match("星河电器空调起火")) == ["prox"]
    far = "星河电器今天发布了新款冰箱，用户说用了一个月就起火"
    assert m.match(far) == []
    # Without proximity the same far-apart text is a hit.
    loose = build({"name": "loose", "brands": ["星河电器"], "negatives": ["起火"]})
    assert groups_of(loose.match(far)) == ["loose"]


def test_proximity_counts_gap_either_order() -> None:
    m = build({"name": "prox", "brands": ["星河电器"], "negatives": ["投诉"], "proximity": 3})
    assert groups_of(m.match("投诉星河电器")) == ["prox"]
    assert groups_of(m.match("星河电器被投诉")) == ["prox"]


def test_multiple_groups_matched_independently(matcher: RuleMatcher) -> None:
    both = matcher.match("星河电器和小米都被投诉了")
    assert groups_of(both) == ["xiaomi", "xinghe"]
    by_group = {g.group: g for g in both}
    assert {m.term for m in by_group["xinghe"].matches if m.kind == "brand"} == {"星河电器"}
    assert {m.term for m in by_group["xiaomi"].matches if m.kind == "brand"} == {"小米"}
    assert groups_of(matcher.match("小米手机起火")) == ["xiaomi"]
    assert groups_of(matcher.match("星河空调漏电")) == ["xinghe"]


@pytest.mark.parametrize(
    "text",
    [
        "星 河電器，投訴！",
        "ＸＩＡＯＭＩ手机起火",
        "大家避雷小米",
        "星河电器和小米都被投诉了",
        "星\u200b河电器 空调 漏电",
    ],
)
def test_spans_index_into_normalised_text(matcher: RuleMatcher, text: str) -> None:
    norm = normalize(text)
    result = matcher.match(text)
    assert result
    for group in result:
        for m in group.matches:
            assert 0 <= m.start < m.end <= len(norm)
            assert norm[m.start : m.end] == m.term


def test_span_positions_exact(matcher: RuleMatcher) -> None:
    (group,) = matcher.match("星 河電器，投訴！")
    spans = sorted((m.term, m.start, m.end) for m in group.matches)
    assert spans == [("投诉", 5, 7), ("星河电器", 0, 4)]


def test_version_depends_on_rules() -> None:
    a = build({"name": "a", "brands": ["星河电器"]})
    b = build({"name": "a", "brands": ["星河电器"]})
    c = build({"name": "a", "brands": ["星河空调"]})
    assert a.version == b.version
    assert a.version != c.version


def test_latin_brand_as_own_word_matches() -> None:
    m = build({"name": "latin", "brands": ["Apple", "NIO"], "negatives": ["投诉"]})
    assert groups_of(m.match("Apple投诉")) == ["latin"]
    assert groups_of(m.match("NIO 投诉")) == ["latin"]


@pytest.mark.parametrize("text", ["pineapple投诉", "union投诉", "metal投诉"])
def test_latin_brand_inside_longer_word_not_matched(text: str) -> None:
    m = build({"name": "latin", "brands": ["Apple", "NIO", "Meta"], "negatives": ["投诉"]})
    assert m.match(text) == []


def test_complaint_compound_in_jieba_dictionary_still_matches() -> None:
    """jieba keeps 投诉无门 as one word, so the compound itself is in the negative lexicon."""
    matcher = RuleMatcher(
        RulesConfig.model_validate({"groups": [{"name": "xinghe", "brands": ["星河电器"]}]})
    )
    assert [g.group for g in matcher.match("星河电器投诉无门，气死了")] == ["xinghe"]
