from __future__ import annotations

import pytest

from services.scoring.sentiment import DEMANDS, analyse


@pytest.mark.parametrize(
    ("text", "demand"),
    [
        ("星河电器空调漏电，太可怕了，要求退款！", "refund"),
        ("质量问题，要求退货退款，拒绝退款就投诉", "refund"),
        ("星河空调起火冒烟，差点烧伤，太吓人了", "safety"),
        ("客服态度太差，一直推诿，售后没人管", "service"),
        ("星河電器客服態度太差，投訴", "service"),
    ],
)
def test_negative_complaint(text: str, demand: str) -> None:
    score, got = analyse(text)
    assert -1.0 <= score < 0
    assert got == demand


@pytest.mark.parametrize("text", ["好评，很好，值得推荐", "服务很好，安装师傅很专业，点赞", "很满意，靠谱"])
def test_praise_scores_positive(text: str) -> None:
    score, demand = analyse(text)
    assert 0 < score <= 1.0
    assert demand in DEMANDS


def test_negation_flips() -> None:
    assert analyse("很满意")[0] > 0
    assert analyse("不满意")[0] < 0


def test_neutral_text() -> None:
    assert analyse("今天去商场看了看空调") == (0.0, "other")


@pytest.mark.parametrize("text", ["非常满意", "特别推荐", "非常满意，特别喜欢"])
def test_intensified_praise_scores_positive(text: str) -> None:
    assert analyse(text)[0] > 0
