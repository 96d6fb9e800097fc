from __future__ import annotations

import pytest

from schemas.labels import DEMANDS
from services.scoring.sentiment import Cue, analyse, read


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


@pytest.mark.parametrize(
    "text",
    [
        "从来没出过质量问题，很满意",
        "一次毛病都没出过",
        "没有发生过电池自燃，这点服气",
        "京东这次发货很快，没有任何破损",
    ],
)
def test_negated_grievance_is_not_negative(text: str) -> None:
    assert analyse(text)[0] > 0


@pytest.mark.parametrize(
    "text",
    [
        "是不是假货啊",
        "这不是诈骗是什么？",
        "这不就是骗局吗",
        "说没有假货？别逗了",
        "没多久就坏了",
        "特别失望",
    ],
)
def test_negators_that_do_not_negate(text: str) -> None:
    assert analyse(text)[0] < 0


def test_negation_stays_in_its_clause() -> None:
    # 没 in the first clause does not reach 差评 in the second.
    assert analyse("没想到，差评")[0] < 0
    assert analyse("不满意")[0] < 0


@pytest.mark.parametrize(
    "text",
    [
        "美团外卖又超时了50分钟，骑手还让我给好评，呵呵",
        "谢谢京东，让我在除夕夜收到了一箱碎掉的碗🙂",
        "官方至今没有回应🙄",
        "提车第三天就趴窝😡",
    ],
)
def test_sarcasm_and_emoji_read_negative(text: str) -> None:
    assert analyse(text)[0] < 0


@pytest.mark.parametrize("text", ["怕买到翻新机，哪个平台靠谱？", "京东和拼多多哪个买家电划算？"])
def test_doubts_and_comparison_questions_are_neutral(text: str) -> None:
    assert analyse(text) == (0.0, "other")


@pytest.mark.parametrize("text", ["美团退款秒到账，必须表扬", "小米的售后真的很贴心，点赞👍"])
def test_weak_topic_words_in_praise(text: str) -> None:
    score, demand = analyse(text)
    assert score > 0
    assert demand == "other"  # a demand only for negative posts


@pytest.mark.parametrize(
    ("text", "demand"),
    [
        ("格力空调的宣传说一晚一度电，实际五度电，虚标", "false_advertising"),
        ("小米手机用了半年主板就坏了，售后说要自费维修，真的垃圾", "quality"),
        ("华为手机电池鼓包，售后说要自费，我要求退款", "refund"),
        ("App偷偷读取剪贴板，隐私泄露了，气死", "privacy"),
        ("京东客服机器人答非所问，转人工排队两百多位，气死", "service"),
    ],
)
def test_demand_of_a_complaint(text: str, demand: str) -> None:
    score, got = analyse(text)
    assert score < 0
    assert got == demand


def test_harmless_compounds_hide_the_word_inside() -> None:
    assert analyse("骑手小哥有礼貌，还帮我把垃圾带下楼了")[0] > 0
    assert analyse("避雷针和避雷器的区别是什么") == (0.0, "other")


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("售后[怒]", -1.0),
        ("客服回复我了[微笑]", -1.0),  # Weibo's sarcastic smile, as 🙂
        ("没有[怒]", -1.0),  # no negation turns an emoticon over
        ("修好了[赞][good]", 1.0),
        ("小红书上的种草[种草R]", 1.0),
        ("今天吃了三碗饭[doge]", 0.0),
    ],
)
def test_emoticon_alt_text_reads_as_the_emoji_it_stands_for(text: str, score: float) -> None:
    assert analyse(text)[0] == score


def test_an_emoticon_is_one_word() -> None:
    # [生气] is one grievance, reported with its brackets, not the word 生气 inside it.
    assert read("这次[生气]") == (Cue("[生气]", 2, 6, -1),)
    assert read("[失望r][失望r]") == (Cue("[失望r]", 0, 5, -1), Cue("[失望r]", 5, 10, -1))


def test_a_nick_says_nothing_about_the_post() -> None:
    assert analyse("@离谱小能手 新手机很好用") == (1.0, "other")
    assert analyse("离谱，新手机很好用")[0] == 0.0
    # A demand word in a nick is not the poster's demand.
    assert analyse("@维权律师老王 手机屏幕碎了，太差了")[1] == "quality"
