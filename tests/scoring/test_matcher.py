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
    ["星.河.电.器空调漏水，投诉无门", "避雷星*河*电*器", "星·河·电·器 售后太差，投诉", "星_河-电~器，差评"],
)
def test_a_brand_split_by_separators_to_dodge_filters_matches(matcher: RuleMatcher, text: str) -> None:
    assert groups_of(matcher.match(text)) == ["xinghe"]


@pytest.mark.parametrize("text", ["我在星河，电器城里买的东西坏了，投诉", "买星河、电器都要避雷"])
def test_chinese_punctuation_still_ends_a_word(matcher: RuleMatcher, text: str) -> None:
    assert groups_of(matcher.match(text)) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("星河电器空调漏水，投诉无门", ["xinghe-cs", "xinghe-pr"]),
        ("小米挺好，星河电器空调漏水，投诉无门", ["xinghe-cs", "xinghe-pr"]),
        ("星河电器挺好，小米手机起火了", ["xiaomi"]),
    ],
)
def test_groups_watching_the_same_brand_each_get_its_complaints(text: str, expected: list[str]) -> None:
    """Two teams (customer service, PR) watching one brand: each is owed a complaint about it, also when
    another brand in the post means the evidence has to be attributed."""
    m = build(
        {"name": "xinghe-cs", "brands": ["星河电器"]},
        {"name": "xinghe-pr", "brands": ["星河电器", "星河"]},
        {"name": "xiaomi", "brands": ["小米"]},
    )
    assert groups_of(m.match(text)) == expected


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


# ---- who a post complains about ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brands() -> RuleMatcher:
    return build(
        {"name": "xiaomi", "brands": ["小米", "小米手机", "小米汽车", "Redmi"]},
        {"name": "apple", "brands": ["苹果", "苹果手机", "iPhone", "MacBook", "AirPods"]},
        {"name": "huawei", "brands": ["华为", "鸿蒙"]},
        {"name": "gree", "brands": ["格力"]},
        {"name": "pdd", "brands": ["拼多多", "PDD"]},
        {"name": "xinghe", "brands": ["星河电器", "星河"], "ambiguous": ["星河"]},
    )


@pytest.mark.parametrize(
    "text",
    [
        "小米椒炒肉太咸了，差评",
        "这家的小米辣太辣了，避雷",
        "这箱苹果一半都烂了，差评",
        "苹果肌下垂怎么办，避雷几家医美",
        "玄幻小说里的鸿蒙紫气太扯了，差评",
        "今晚看PDD直播又翻车了，笑死",
        "今晚的星河真美，但这家民宿卫生太差，避雷",
        "星河湾小区的物业太差了，投诉",
    ],
)
def test_everyday_words_are_not_brands(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("苹果15 信号差，差评", "apple"),
        ("苹果官网写的续航一天，虚假宣传", "apple"),
        ("@小米 我的手机充电口坏了，投诉", "xiaomi"),
        ("星河冰箱压缩机坏了，售后推诿", "xinghe"),
        ("PDD上买的充电宝鼓包了，差评", "pdd"),
    ],
)
def test_everyday_word_brand_with_a_cue_matches(brands: RuleMatcher, text: str, group: str) -> None:
    assert groups_of(brands.match(text)) == [group]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("还是华为好用，苹果信号真是差评", ["apple"]),
        ("早知道买格力了，这个杂牌空调三天两头坏，差评", []),
        ("美的空调不制冷，售后推诿，早知道买格力了", []),
        ("不是小米的问题，是快递把手机摔坏了，投诉快递", []),
        ("换了华为之后再也不想用苹果手机了，系统bug太多，差评", ["apple"]),
        ("【避雷】在拼多多买的AirPods是高仿，找客服就是机器人回复", ["pdd"]),
        ("苹果手机和华为都被消协点名，售后问题一大堆", ["apple", "huawei"]),
        ("小米/华为手机都起火了，投诉", ["huawei", "xiaomi"]),
        ("格力+华为都被投诉了", ["gree", "huawei"]),
        ("避雷小米.华为", ["huawei", "xiaomi"]),  # a separator dropped as an evasion leaves them side by side
    ],
)
def test_complaint_goes_to_the_brand_it_is_about(brands: RuleMatcher, text: str, expected: list[str]) -> None:
    assert groups_of(brands.match(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "用了三年小米手机，从来没维修过",
        "华为手机用了四年，没出过任何质量问题",
        "华为这次发布会没有翻车，新功能都很实用",
        "格力空调开了十年，一次毛病都没出过",
        "#拼多多# 终于砍到了，不是骗人的",
    ],
)
def test_negated_tags_are_no_evidence(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "拼多多砍一刀砍到0.01就卡住，这不是诈骗是什么？",
        "拼多多上买的鞋是不是假货啊，包装都不对",
        "拼多多这不就是骗局吗",
    ],
)
def test_rhetorical_questions_are_not_negations(brands: RuleMatcher, text: str) -> None:
    assert groups_of(brands.match(text)) == ["pdd"]


@pytest.mark.parametrize(
    "text",
    [
        "小米的售后真的很贴心，半小时就修好了",
        "拼多多退款秒到账，必须表扬",
        "华为宣布上线一键退款功能，拍手叫好",
    ],
)
def test_weak_tags_in_praise_or_news_do_not_hit(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


def test_weak_tag_in_a_complaint_hits(brands: RuleMatcher) -> None:
    (g,) = brands.match("小米的售后一周了没人理，太敷衍")
    assert g.group == "xiaomi"
    assert {m.term for m in g.matches if m.kind == "negative"} >= {"售后", "没人理", "敷衍"}


def test_strong_tag_in_praise_does_not_hit(brands: RuleMatcher) -> None:
    assert brands.match("格力空调用了十年，没有踩雷，质量真的好，推荐，好评") == []


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("小米的售后服务太差了", "售后"),
        ("格力的能效虚标的厉害", "虚标"),
        ("华为门店卖的手机是翻新机", "翻新机"),
    ],
)
def test_tag_inside_a_longer_word_counts(brands: RuleMatcher, text: str, tag: str) -> None:
    (g,) = brands.match(text)
    assert tag in {m.term for m in g.matches if m.kind == "negative"}


@pytest.mark.parametrize(
    "text", ["华为的避雷针很高", "小米手机一起火锅局拍的照片很好看", "格力的垃圾分类宣传做得不错"]
)
def test_tag_inside_a_harmless_word_or_across_words_does_not(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


def test_negative_post_without_tag_hits_with_its_words_as_evidence(brands: RuleMatcher) -> None:
    text = "#小米汽车# 提车第三天就趴窝😡 4S店踢皮球，离谱！！"
    (g,) = brands.match(text)
    norm = normalize(text)
    negatives = {m.term for m in g.matches if m.kind == "negative"}
    assert {"趴窝", "踢皮球", "离谱", "😡"} <= negatives
    assert all(norm[m.start : m.end] == m.term for m in g.matches)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("MacBookPro键盘坏了，差评", "macbook"),
        ("AirPodsPro右耳没声音，差评", "airpods"),
        ("RedmiK70发烫，差评", "redmi"),
    ],
)
def test_camel_case_brand_runs_match(brands: RuleMatcher, text: str, term: str) -> None:
    (g,) = brands.match(text)
    assert term in {m.term for m in g.matches if m.kind == "brand"}


def test_lowercase_run_on_latin_is_still_no_brand(brands: RuleMatcher) -> None:
    assert brands.match("macbookpro键盘坏了，差评") == []


@pytest.fixture(scope="module")
def appliance_brands() -> RuleMatcher:
    return build(
        {"name": "gree", "brands": ["格力"]},
        {"name": "apple", "brands": ["苹果"]},
        {"name": "xiaomi", "brands": ["小米"]},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # jieba's dictionary holds 格力空调, 格力电器 and 苹果手机 as single words: the brand inside them was
        # never on a word boundary, and these everyday complaints were missed.
        ("格力空调漏水，投诉无门", ["gree"]),
        ("买的格力空调才三个月就坏了，差评", ["gree"]),
        ("格力电器虚假宣传，消费者维权", ["gree"]),
        ("苹果手机信号太差了，投诉", ["apple"]),
        # Compounds that are not the brand stay whole.
        ("小米粥太难喝了，差评", []),
        ("苹果肌下垂，避雷这家医美", []),
        # A product name with no complaint is no hit.
        ("格力空调很好用，推荐", []),
    ],
)
def test_a_brand_inside_a_product_name_is_found(
    appliance_brands: RuleMatcher, text: str, expected: list[str]
) -> None:
    assert groups_of(appliance_brands.match(text)) == expected


# ---- Weibo-shaped text: hashtags, 超话, @mentions, emoticon alt-text -------------------------------------


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("#小米差评#", "xiaomi"),
        ("#苹果避雷#", "apple"),
        ("#苹果维权# 用了半年就坏了不给修，还说我进过水", "apple"),
        ("#小米投诉无门# 等了四十天还没发货", "xiaomi"),
        ("#小米[超话]##小米翻车# 这次真的没法忍", "xiaomi"),
        ("#PDD差评# 蓝牙耳机是山寨货", "pdd"),
        ("#蘋果避雷# 別買", "apple"),
    ],
)
def test_everyday_word_brand_followed_by_a_tag_in_a_hashtag_is_the_brand(
    brands: RuleMatcher, text: str, group: str
) -> None:
    (g,) = brands.match(text)
    assert g.group == group
    norm = normalize(text)
    assert all(norm[m.start : m.end] == m.term for m in g.matches)


@pytest.mark.parametrize(
    "text",
    [
        "#小米粥做法# 太难喝了，差评",
        "#小米辣避雷# 一点都不辣，白买了",
        "#苹果肌避雷# 这家医美不行",
        "#红富士苹果差评# 一箱里一半是烂的",
        # The body says which 苹果 the topic means.
        "#苹果避雷# 水果店的苹果打了蜡，洗都洗不掉",
        # The hashtag itself does.
        "#超市苹果避雷# 一咬全是渣",
        # Not directly followed by a tag, and nothing else shows the brand.
        "#苹果今天又避雷了#",
        # The rule is the hashtag's: in running text an everyday word still needs a cue.
        "买的苹果差评，一点都不脆",
    ],
)
def test_everyday_words_in_hashtags_stay_everyday(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "#小米[超话]# 用了三天就坏了，差评",
        "小米[超话] 用了三天就坏了，差评",
        # The rendered post: the 超话 link's text, its icon gone.
        "小米超话 用了三天就坏了，差评",
    ],
)
def test_a_super_topic_named_after_the_brand_is_the_brand(brands: RuleMatcher, text: str) -> None:
    assert groups_of(brands.match(text)) == ["xiaomi"]


def test_a_super_topic_of_an_everyday_compound_is_not(brands: RuleMatcher) -> None:
    assert brands.match("#小米粥[超话]# 熬糊了，差评") == []


@pytest.mark.parametrize(
    "text",
    [
        "@华为粉丝后援会小张 这家奶茶店太坑了，排队两小时，避雷",
        "@爱吃拼多多水果的猫 这家奶茶店避雷",
        "//@避雷小分队:小米这次的新品是真的香，已下单",
        "@小米粥不加糖 姐妹你上次说的那家店踩雷了吗",
    ],
)
def test_a_nick_is_a_name_not_a_brand_or_a_tag(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


@pytest.mark.parametrize(
    ("text", "group"),
    [
        ("@小米公司 你们的洗衣机把我的衣服全搅烂了，差评", "xiaomi"),
        ("@苹果中国 退款三十天还没到账，离谱", "apple"),
        ("回复@华为终端:别让我等通知了，屏幕又碎了，投诉", "huawei"),
        ("转发理由：同款问题！！避雷//@格力电器 :感谢反馈，已私信", "gree"),
        # A nick that is not the brand's own does not hide the brand named in the post.
        ("@华为粉丝小王 你的华为手机也黑屏了吗？差评", "huawei"),
    ],
)
def test_a_mention_of_the_brands_own_account_is_the_brand(brands: RuleMatcher, text: str, group: str) -> None:
    (g,) = brands.match(text)
    assert g.group == group
    norm = normalize(text)
    assert all(norm[m.start : m.end] == m.term for m in g.matches)


def test_a_latin_account_name_is_split_where_its_case_shows() -> None:
    m = build({"name": "apple", "brands": ["Apple"]})
    (g,) = m.match("@AppleSupport 退款三十天还没到账，离谱")
    assert ("apple", 1) in {(x.term, x.start) for x in g.matches if x.kind == "brand"}
    assert m.match("@ILoveApple 今天的快递又丢件了，离谱") == []


def test_a_tag_in_the_brands_own_nick_is_no_evidence() -> None:
    m = build({"name": "jd", "brands": ["京东"], "negatives": ["客服"]})
    assert m.match("@京东客服 请问怎么寄回去") == []
    assert groups_of(m.match("京东客服请问怎么寄回去")) == ["jd"]


@pytest.mark.parametrize(
    ("text", "grievance"),
    [
        ("小米售后[怒]", "[怒]"),
        ("苹果售后[吐][吐] 换个电池排队三小时", "[吐]"),
        ("小米客服[白眼] 问三遍答非所问", "[白眼]"),
    ],
)
def test_emoticon_alt_text_is_a_grievance(brands: RuleMatcher, text: str, grievance: str) -> None:
    (g,) = brands.match(text)
    assert grievance in {m.term for m in g.matches if m.kind == "negative"}


@pytest.mark.parametrize("text", ["小米售后半小时就修好了[赞]", "小米售后[doge]", "小米售后今天上门了[坏笑]"])
def test_praise_or_tone_emoticons_are_no_grievance(brands: RuleMatcher, text: str) -> None:
    assert brands.match(text) == []


def test_a_word_a_group_calls_a_tag_inside_an_emoticon_is_none() -> None:
    m = build({"name": "xiaomi", "brands": ["小米"], "negatives": ["吃惊", "失望"]})
    assert m.match("小米手机发布会[吃惊]") == []
    assert groups_of(m.match("小米手机发布会，失望")) == ["xiaomi"]
