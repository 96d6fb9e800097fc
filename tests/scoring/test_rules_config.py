"""Rule-group validation: bad rules fail at start-up with the field and what was expected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.common.config import RuleGroup, RulesConfig
from services.scoring.matcher import RuleMatcher, default_negatives


@pytest.mark.parametrize(
    ("group", "message"),
    [
        ({"brands": ["小米"], "negatives": []}, "negatives is an empty list; omit it"),
        ({"brands": ["！！"]}, "brands term '！！' has no letter, digit or CJK character"),
        ({"brands": ["小米"], "negatives": ["投诉", " \u200b"]}, "negatives term"),
        ({"brands": ["小米"], "excluded": ["——"]}, "excluded term '——'"),
        ({"brands": ["小米"], "default_negatives": False}, "default_negatives is false, so negatives must"),
        ({"brands": ["小米"], "ambiguous": ["苹果"]}, "ambiguous terms ['苹果'] are not among its brands"),
    ],
)
def test_bad_group_refused(group: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RuleGroup.model_validate({"name": "g", **group})


def _matcher(**group: Any) -> RuleMatcher:
    return RuleMatcher(
        RulesConfig.model_validate({"groups": [{"name": "g", "brands": ["星河电器"], **group}]})
    )


def test_own_negatives_extend_the_bundled_lexicon() -> None:
    m = _matcher(negatives=["断轴"])
    assert m.negatives_of("g") == {*default_negatives(), "断轴"}
    assert [g.group for g in m.match("星河电器的车断轴了")] == ["g"]
    assert [g.group for g in m.match("星河电器被投诉")] == ["g"]  # a bundled tag still counts


def test_default_negatives_false_leaves_only_own() -> None:
    m = _matcher(negatives=["断轴"], default_negatives=False, negative_posts=False)
    assert m.negatives_of("g") == {"断轴"}
    assert m.match("星河电器被投诉") == []
    assert [g.group for g in m.match("星河电器的车断轴了")] == ["g"]


def test_negative_posts_switch() -> None:
    text = "星河电器的冰箱用了一周就趴窝了，踢皮球，离谱"
    assert [g.group for g in _matcher().match("星河电器的冰箱用了一周就漏水，客服踢皮球，离谱")] == ["g"]
    assert _matcher(negative_posts=False, negatives=["断轴"], default_negatives=False).match(text) == []
