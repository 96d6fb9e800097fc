from __future__ import annotations

import pytest

from services.scoring.markup import hashtags, inside, nicks
from services.scoring.normalize import normalize_marked


def _nicks(text: str) -> list[str]:
    norm, _, ends = normalize_marked(text)
    return [norm[s:e] for s, e in nicks(norm, ends)]


def _tags(text: str) -> list[str]:
    norm = normalize_marked(text)[0]
    return [norm[s:e] for s, e in hashtags(norm)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#小米差评# 充电口坏了", ["小米差评"]),
        # A 超话 and a topic back to back, as Weibo writes them.
        ("#小米[超话]##小米SU7# 提车一周", ["小米[超话]", "小米su7"]),
        ("#生命树 敢拍# 好看", ["生命树敢拍"]),
        ("没有话题", []),
        ("C# 和 F# 哪个好学", []),
        # Two stray '#' far apart are no topic.
        ("#" + "很长的一句话" * 6 + "#", []),
    ],
)
def test_hashtags(text: str, expected: list[str]) -> None:
    assert _tags(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@小米公司 我的手机坏了", ["小米公司"]),
        ("@小米公司：你们的客服呢", ["小米公司"]),
        ("转发理由：避雷//@数码博主老王:格力空调噪音大//@格力电器 :已私信", ["数码博主老王", "格力电器"]),
        ("回复@美团外卖:退款呢", ["美团外卖"]),
        ("@AppleSupport 退款", ["applesupport"]),
        ("@Apple iPhone坏了", ["apple"]),
        ("@小米公司[怒]", ["小米公司"]),
        ("投诉@京东客服 没人理", ["京东客服"]),
        # Weibo links the nick up to the space: with none, the run is the nick.
        ("@小米公司我的手机坏了", ["小米公司我的手机坏了"]),
        ("写信到 service@jd.com 投诉", []),
    ],
)
def test_nicks_end_where_weibo_ends_them(text: str, expected: list[str]) -> None:
    assert _nicks(text) == expected


def test_inside() -> None:
    spans = [(1, 5), (10, 12)]
    assert inside(2, 4, spans) == (1, 5)
    assert inside(1, 5, spans) == (1, 5)
    assert inside(4, 6, spans) is None
    assert inside(12, 13, spans) is None
