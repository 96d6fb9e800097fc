"""Native payloads to Posts: each platform's sample field by field, counts, markup, roots and errors."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import AuthorType, Platform, Post
from services.common import json
from services.common.exceptions import YuqingError
from services.ingest.adapters import ADAPTERS, AdapterError, adapt, parse_count

PAYLOADS = Path(__file__).parent / "payloads"
OBSERVED = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def sample(platform: str) -> dict[str, Any]:
    data = json.loads((PAYLOADS / f"{platform}.json").read_bytes())
    assert isinstance(data, dict)
    return data


EXPECTED: dict[str, dict[str, Any]] = {
    "weibo": {
        "post_id": "5102938475610234",
        "text": '#星河冰箱爆炸# 买了三个月的星河冰箱半夜突然爆了，客服只会说"已登记"[怒]\n'
        "大家避雷！@星河电器官方 给个说法",
        "author": "数码测评老李",
        "author_type": AuthorType.kol,
        "url": "https://weibo.com/6543210987/Pq3xYz7Ab",
        "published_at": datetime(2026, 11, 21, 2, 0, tzinfo=UTC),
        "root_post_id": "5102900011122233",
        "engagement": {"reposts": 1523, "comments": 872, "likes": 4410, "extras": {}},
    },
    "douyin": {
        "post_id": "7439012345678901234",
        "text": "星河冰箱用了半年就漏水，售后踢皮球一个月了 #星河冰箱 #售后维权",
        "author": "维权小王",
        "author_type": AuthorType.user,
        "url": "https://www.douyin.com/video/7439012345678901234",
        "published_at": datetime(2026, 11, 21, 3, 0, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {
            "reposts": 940,
            "comments": 2310,
            "likes": 58200,
            "extras": {"views": 1204500, "favorites": 3120},
        },
    },
    "xiaohongshu": {
        "post_id": "673e9a1b000000001d03f2c4",
        "text": "避雷星河冰箱‼️\n新买的冰箱冷藏室结冰，换了两次还是一样，客服态度很差😤 #星河冰箱# #家电避雷#",
        "author": "爱吃草莓的猫",
        "author_type": AuthorType.user,
        "url": "https://www.xiaohongshu.com/explore/673e9a1b000000001d03f2c4",
        "published_at": datetime(2026, 11, 21, 4, 0, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {"reposts": 11500, "comments": 100000, "likes": 12000, "extras": {"favorites": 3456}},
    },
    "bilibili": {
        "post_id": "BV1xK4y1a7Yz",
        "text": "【实测】星河冰箱到底有没有质量问题？拆机告诉你\n"
        "网上都在说星河冰箱爆炸，我们买了三台回来拆\n结论在视频最后",
        "author": "硬核拆机君",
        "author_type": AuthorType.user,
        "url": "https://www.bilibili.com/video/BV1xK4y1a7Yz",
        "published_at": datetime(2026, 11, 21, 6, 0, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {
            "reposts": 2100,
            "comments": 1890,
            "likes": 31000,
            "extras": {"views": 356000, "coins": 8800, "favorites": 12000, "danmaku": 4521},
        },
    },
    "zhihu": {
        "post_id": "3312345678",
        "text": "如何看待星河冰箱被曝多起爆炸事故？\n先说结论：压缩机批次问题的可能性很大。\n"
        "从网友发的照片看，起火点都在背部&下方。",
        "author": "家电工程师老周",
        "author_type": AuthorType.kol,
        "url": "https://www.zhihu.com/question/654321098/answer/3312345678",
        "published_at": datetime(2026, 11, 21, 7, 0, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {"reposts": 0, "comments": 433, "likes": 5621, "extras": {"thanks": 310}},
    },
    "wechat": {
        "post_id": "2650123456_1",
        "text": "星河冰箱爆炸事件调查：问题出在哪？\n近日，多名消费者反映星河冰箱在使用中发生爆裂。\n"
        "记者联系星河电器客服，对方表示“正在核实”。",
        "author": "消费观察周刊",
        "author_type": AuthorType.media,
        "url": "https://mp.weixin.qq.com/s?__biz=MzA3NjE2NzQyMA==&mid=2650123456&idx=1&sn=8f3a2b1c",
        "published_at": datetime(2026, 11, 21, 10, 30, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {"reposts": 3320, "comments": 256, "likes": 1203, "extras": {"views": 100001}},
    },
    "news": {
        "post_id": "news-20261121-0042",
        "text": "星河电器回应冰箱爆炸：已成立专项调查组\n11月21日晚，星河电器发布声明称，已成立专项调查组……",
        "author": "财经日报",
        "author_type": AuthorType.media,
        "url": "https://finance.example.com.cn/2026/11/21/xinghe-fridge.html",
        "published_at": datetime(2026, 11, 21, 12, 15, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {"reposts": 560, "comments": 1890, "likes": None, "extras": {}},
    },
    "forum": {
        "post_id": "t8812345",
        "text": "星河冰箱爆炸，有没有一起维权的？\n"
        "我家也是，昨晚冷冻室门直接弹开了，吓死人！现场照片\n有没有一起维权的，私信我",
        "author": "暴躁老哥",
        "author_type": AuthorType.user,
        "url": "https://bbs.example.com/thread-8812345-1-1.html",
        "published_at": datetime(2026, 11, 21, 13, 0, tzinfo=UTC),
        "root_post_id": None,
        "engagement": {"reposts": 0, "comments": 128, "likes": 17, "extras": {"views": 10234}},
    },
}


def test_every_platform_has_an_adapter_and_a_sample():
    assert set(ADAPTERS) == set(Platform)
    assert set(EXPECTED) == {p.value for p in Platform}
    assert {p.stem for p in PAYLOADS.glob("*.json")} == {p.value for p in Platform}


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_sample_maps_field_by_field(platform):
    post = adapt(platform, sample(platform), OBSERVED)
    expected = EXPECTED[platform]
    assert post.platform == Platform(platform)
    assert post.event_time == OBSERVED
    for field in ("post_id", "text", "author", "author_type", "url", "published_at", "root_post_id"):
        assert getattr(post, field) == expected[field], field
    assert post.engagement.model_dump() == expected["engagement"]
    assert post.key == f"{platform}:{expected['post_id']}"


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_same_payload_and_observation_give_the_same_event_id(platform):
    assert (
        adapt(platform, sample(platform), OBSERVED).event_id
        == adapt(platform, sample(platform), OBSERVED).event_id
    )


def test_platform_name_is_forgiving_about_case_and_spaces():
    assert adapt(" Weibo ", sample("weibo"), OBSERVED).platform is Platform.weibo


# --- counts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (123, 123),
        (12.0, 12),
        ("123", 123),
        ("1,234", 1234),
        ("1.2万", 12000),
        ("1.15万", 11500),
        ("3万", 30000),
        ("2.5亿", 250_000_000),
        ("1亿", 100_000_000),
        ("10w+", 100_000),
        ("10W", 100_000),
        ("1.5k", 1500),
        ("3千", 3000),
        ("999+", 999),
        (" 42 ", 42),
        ("", 0),
    ],
)
def test_parse_count_reads_platform_notation(raw, expected):
    assert parse_count(raw) == expected


@pytest.mark.parametrize(
    "raw", ["abc", "1.2万万", "万", "-3", -1, True, float("nan"), 10**13, "2e5", None, [1]]
)
def test_parse_count_refuses_what_is_not_a_count(raw):
    with pytest.raises(ValueError, match="count"):
        parse_count(raw)


def test_string_counts_in_a_payload_are_parsed():
    payload = sample("xiaohongshu")
    payload["note_card"]["interact_info"].update(liked_count="2.3亿", comment_count="", shared_count="7")
    post = adapt("xiaohongshu", payload, OBSERVED)
    assert (post.engagement.likes, post.engagement.comments, post.engagement.reposts) == (230_000_000, 0, 7)


def test_missing_counts_are_unknown_not_zero_with_a_warning_and_missing_extras_are_left_out():
    payload = sample("douyin")
    payload["statistics"] = {"digg_count": 5}
    warnings: list[str] = []
    post = adapt("douyin", payload, OBSERVED, warnings=warnings)
    assert post.engagement.model_dump() == {"reposts": None, "comments": None, "likes": 5, "extras": {}}
    assert post.engagement.unknown == {"reposts", "comments"}
    assert post.engagement.total == 5  # unknown counts add nothing: the spread stays a lower bound
    assert warnings == [
        "statistics.share_count or share_count: missing; engagement.reposts is unknown (null), not 0",
        "statistics.comment_count or comment_count: missing; engagement.comments is unknown (null), not 0",
    ]
    assert json.loads(json.dumps(post))["engagement"]["reposts"] is None


def test_a_payload_without_any_count_is_refused_naming_the_fields_looked_for():
    payload = sample("douyin")
    del payload["statistics"]
    with pytest.raises(AdapterError) as caught:
        adapt("douyin", payload, OBSERVED)
    assert caught.value.field == (
        "statistics.share_count or share_count or statistics.comment_count or comment_count or "
        "statistics.digg_count or liked_count or statistics.play_count or statistics.collect_count or "
        "collected_count"
    )
    assert "none of the counts is present" in caught.value.reason


def test_a_count_written_as_a_lower_bound_says_so():
    payload = sample("xiaohongshu")
    payload["note_card"]["interact_info"]["liked_count"] = "100万+"
    warnings: list[str] = []
    post = adapt("xiaohongshu", payload, OBSERVED, warnings=warnings)
    assert post.engagement.likes == 1_000_000
    assert "note_card.interact_info.liked_count: '100万+' is a lower bound; counted as 1000000" in warnings


def test_xiaohongshu_note_detail_share_count_is_read_too():
    payload = sample("xiaohongshu")
    info = payload["note_card"]["interact_info"]
    del info["shared_count"]
    info["share_count"] = "88"
    assert adapt("xiaohongshu", payload, OBSERVED).engagement.reposts == 88


# --- text -----------------------------------------------------------------------------------------


def test_html_is_stripped_entities_unescaped_and_emoticon_alt_text_kept():
    payload = sample("weibo")
    payload["mblog"]["text"] = (
        '<a href="/n/x">@星河客服</a>&nbsp;再不处理就<b>投诉</b>到12315&amp;黑猫'
        '<img alt="[哭]" src="x.png"/><br/>价格<100元的配件也要等一个月'
        '<!-- tracking --><script>var a = "<p>";</script>'
    )
    text = adapt("weibo", payload, OBSERVED).text
    assert text == "@星河客服 再不处理就投诉到12315&黑猫[哭]\n价格<100元的配件也要等一个月"


def test_text_is_nfc_and_over_the_limit_is_refused_with_its_length_not_cut():
    payload = sample("douyin")
    payload["desc"] = "Cafe\u0301 " + "投诉" * 9_997 + "投"  # 20,000 characters once é is one
    assert len(adapt("douyin", payload, OBSERVED).text) == 20_000
    assert adapt("douyin", payload, OBSERVED).text.startswith("Café 投诉")
    payload["desc"] += "!"
    with pytest.raises(AdapterError, match="20001 characters after removing markup; the limit is 20000"):
        adapt("douyin", payload, OBSERVED)
    # The configured limit applies to native payloads as it does to normalised posts.
    payload["desc"] = "<p>" + "投" * 101 + "</p>"
    with pytest.raises(AdapterError, match="101 characters after removing markup; the limit is 100") as e:
        adapt("douyin", payload, OBSERVED, max_text_chars=100)
    assert e.value.field == "text"


def test_weibo_long_text_wins_over_the_truncated_text():
    payload = sample("weibo")
    payload["mblog"]["isLongText"] = True
    payload["mblog"]["longText"] = {"longTextContent": "完整的长微博：星河冰箱爆炸始末"}
    assert adapt("weibo", payload, OBSERVED).text == "完整的长微博：星河冰箱爆炸始末"


def test_forum_quotes_and_bbcode_are_removed():
    payload = sample("forum")
    payload["message"] = "[quote]别人的话：星河冰箱[/quote][color=red]我的[/color]冰箱也坏了"
    assert adapt("forum", payload, OBSERVED).text.endswith("\n我的冰箱也坏了")


def test_bilibili_dash_description_means_none():
    payload = sample("bilibili")
    payload["desc"] = "-"
    assert adapt("bilibili", payload, OBSERVED).text == payload["title"]


def test_a_body_that_repeats_the_title_is_not_doubled():
    payload = sample("news")
    payload["content"] = payload["title"] + "。正文"
    assert adapt("news", payload, OBSERVED).text == payload["title"] + "。正文"


# --- roots, authors, ids --------------------------------------------------------------------------


def test_weibo_original_has_no_root():
    payload = sample("weibo")
    del payload["mblog"]["retweeted_status"]
    post = adapt("weibo", payload, OBSERVED)
    assert post.root_post_id is None
    assert post.thread_key == "weibo:5102938475610234"


def test_weibo_repost_thread_key_is_its_root():
    assert adapt("weibo", sample("weibo"), OBSERVED).thread_key == "weibo:5102900011122233"


def test_weibo_bare_status_without_mblog_wrapper():
    payload = sample("weibo")["mblog"]
    post = adapt("weibo", payload, OBSERVED)
    assert post.post_id == "5102938475610234"
    assert post.root_post_id == "5102900011122233"


def test_forum_reply_points_at_its_thread_and_does_not_carry_thread_counts():
    payload = sample("forum")
    payload["first"] = 0
    post = adapt("forum", payload, OBSERVED)
    assert (post.post_id, post.root_post_id) == ("p99887766", "t8812345")
    # A Discuz reply has no counts of its own (none can be reposted: 0); they are its thread's.
    assert post.engagement.model_dump() == {"reposts": 0, "comments": None, "likes": None, "extras": {}}


def test_forum_edit_note_and_invisible_characters_are_dropped():
    payload = sample("forum")
    payload["message"] = (
        '<i class="pstatus"> 本帖最后由 暴躁老哥 于 2026-11-21 21:05 编辑 </i><br />\r\n<br />\r\n'
        "星\u200b河冰箱\ufeff又炸了"
    )
    assert adapt("forum", payload, OBSERVED).text == payload["subject"] + "\n星河冰箱又炸了"
    payload["message"] = "[i=s] 本帖最后由 暴躁老哥 于 2026-11-21 21:05 编辑 [/i]\n\n只有这句"
    assert adapt("forum", payload, OBSERVED).text.endswith("\n只有这句")


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"verified": False, "verified_type": -1}, AuthorType.user),
        ({"verified": True, "verified_type": 0}, AuthorType.kol),
        ({"verified": True, "verified_type": 3}, AuthorType.media),
        ({"verified": True, "verified_type": 1}, AuthorType.media),
        ({"verified": True, "verified_type": 5}, AuthorType.media),
        # A company's blue V is usually the brand itself: neither press nor an influencer.
        ({"verified": True, "verified_type": "2", "followers_count": "500万"}, AuthorType.user),
        ({"verified": True, "verified_type": 7}, AuthorType.user),
        ({"verified": True, "verified_type": 220}, AuthorType.kol),
        ({"verified": True}, AuthorType.kol),
        ({"followers_count": "10万"}, AuthorType.kol),
        ({"followers_count": 99_999}, AuthorType.user),
        ({}, AuthorType.user),
    ],
)
def test_weibo_verification_decides_the_author_type(user, expected):
    payload = sample("weibo")
    payload["mblog"]["user"] = {"id": 1, "screen_name": "某人", **user}
    assert adapt("weibo", payload, OBSERVED).author_type is expected


def test_douyin_blue_v_is_not_media_yellow_v_and_big_accounts_are_kol():
    payload = sample("douyin")
    payload["author"]["enterprise_verify_reason"] = "星河电器官方账号"
    payload["author"]["follower_count"] = 3_000_000
    assert adapt("douyin", payload, OBSERVED).author_type is AuthorType.user
    payload["author"]["enterprise_verify_reason"] = ""
    assert adapt("douyin", payload, OBSERVED).author_type is AuthorType.kol
    payload["author"]["follower_count"] = 5
    payload["author"]["custom_verify"] = "家电博主"
    assert adapt("douyin", payload, OBSERVED).author_type is AuthorType.kol


def test_zhihu_organisation_is_not_media_and_article_url():
    payload = sample("zhihu")
    payload["author"]["user_type"] = "organization"
    payload["type"] = "article"
    post = adapt("zhihu", payload, OBSERVED)
    assert post.author_type is AuthorType.user
    assert post.url == "https://zhuanlan.zhihu.com/p/3312345678"


def test_bilibili_without_bvid_uses_the_av_number():
    payload = sample("bilibili")
    del payload["bvid"]
    post = adapt("bilibili", payload, OBSERVED)
    assert post.post_id == "av113501234567890"
    assert post.url == "https://www.bilibili.com/video/av113501234567890"


def test_a_wechat_article_without_msgid_takes_mid_and_idx_from_its_link():
    payload = sample("wechat")
    del payload["msgid"]
    assert adapt("wechat", payload, OBSERVED).post_id == "2650123456_1"


@pytest.mark.parametrize("platform", ["wechat", "news"])
def test_articles_without_an_id_get_a_stable_id_from_their_link(platform):
    payload = sample(platform)
    payload.pop("msgid", None)
    payload.pop("id", None)
    payload["url"] = payload["url"].replace("mid=", "m=")  # a link that does not carry the id
    first = adapt(platform, payload, OBSERVED).post_id
    assert first == adapt(platform, copy.deepcopy(payload), OBSERVED).post_id
    assert len(first) == 32
    payload["url"] += "&other=1"
    assert adapt(platform, payload, OBSERVED).post_id != first


def test_an_over_long_url_is_dropped_not_cut():
    payload = sample("news")
    payload["url"] = "https://example.com/" + "a" * 3000
    assert adapt("news", payload, OBSERVED).url is None


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_platform_names_the_allowed_ones():
    with pytest.raises(AdapterError) as caught:
        adapt("weibo2", sample("weibo"), OBSERVED)
    assert caught.value.field == "platform"
    assert str(caught.value) == (
        "platform: 'weibo2' is not one of: weibo, wechat, douyin, xiaohongshu, zhihu, bilibili, news, forum"
    )
    assert isinstance(caught.value, YuqingError)


def test_payload_that_is_not_an_object():
    with pytest.raises(AdapterError, match="payload: expected a JSON object, got list"):
        adapt("weibo", [1, 2], OBSERVED)  # type: ignore[arg-type]


def test_naive_observation_time_is_refused():
    with pytest.raises(AdapterError, match="observed_at"):
        adapt("weibo", sample("weibo"), datetime(2026, 11, 22))  # noqa: DTZ001


def test_weibo_without_any_id_names_the_id_field():
    payload = sample("weibo")
    for key in ("id", "idstr", "mid"):
        del payload["mblog"][key]
    with pytest.raises(AdapterError, match=r"^mblog\.id: missing; the status id is required$"):
        adapt("weibo", payload, OBSERVED)


def _mutated(platform: str, path: str, value: Any) -> dict[str, Any]:
    payload = sample(platform)
    node = payload
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    ("platform", "path", "value", "field", "reason"),
    [
        ("weibo", "mblog.reposts_count", "很多", "mblog.reposts_count", "expected a count"),
        ("weibo", "mblog.comments_count", -5, "mblog.comments_count", "cannot be negative"),
        ("weibo", "mblog.created_at", "昨天", "mblog.created_at", "unrecognised time '昨天'"),
        ("weibo", "mblog.created_at", "2026-11-20", "mblog.created_at", "but the id (id) says"),
        ("weibo", "mblog.user", "someone", "mblog.user", "expected an object, got a string"),
        ("weibo", "mblog.text", "<p> </p>", "mblog.text", "no text"),
        ("weibo", "mblog.idstr", 1.5, "mblog.idstr", "expected a string or integer id"),
        ("weibo", "mblog.idstr", "x" * 200, "mblog.idstr", "the limit is 128"),
        ("douyin", "statistics.digg_count", [1], "statistics.digg_count", "expected a count"),
        ("douyin", "author.nickname", 42, "author.nickname", "expected a string"),
        ("douyin", "create_time", "soon", "create_time", "unrecognised time"),
        (
            "xiaohongshu",
            "note_card.interact_info.liked_count",
            "很多",
            "note_card.interact_info.liked_count",
            "count",
        ),
        ("bilibili", "stat", 3, "stat", "expected an object"),
        ("zhihu", "question", "q", "question", "expected an object"),
        ("wechat", "like_num", "10万+++", "like_num", "expected a count"),
        ("news", "published", "", "published or publish_time or publish_date or pubtime", "missing"),
        ("forum", "tid", _DELETE, "tid", "missing"),
    ],
)
def test_errors_name_the_field_path(platform, path, value, field, reason):
    with pytest.raises(AdapterError) as caught:
        adapt(platform, _mutated(platform, path, value), OBSERVED)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")


# --- property: nothing but AdapterError escapes ---------------------------------------------------


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    out = []
    for key, child in value.items():
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


SAMPLES = {p.value: sample(p.value) for p in Platform}
VOCABULARY = sorted(set().union(*(_keys(s) for s in SAMPLES.values())))
PATHS = {p: _paths(s) for p, s in SAMPLES.items()}

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["1.2万", "10w+", "-", "", "<p></p>", "Sat Nov 21 10:00:00 +0800 2026", "2026-11-21 10:00", "0"]
    )
)
_json = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=15,
)
_payloads = st.dictionaries(st.sampled_from(VOCABULARY), _json, max_size=14)


def _adapt_or_adapter_error(platform: str, payload: dict[str, Any]) -> None:
    try:
        post = adapt(platform, payload, OBSERVED)
    except AdapterError:
        return
    assert isinstance(post, Post)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(platform=st.sampled_from([p.value for p in Platform]), payload=_payloads)
def test_random_payloads_raise_nothing_but_adapter_error(platform, payload):
    _adapt_or_adapter_error(platform, payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_sample_with_any_field_replaced_raises_nothing_but_adapter_error(data):
    platform = data.draw(st.sampled_from(sorted(SAMPLES)))
    path = data.draw(st.sampled_from(PATHS[platform]))
    payload = copy.deepcopy(SAMPLES[platform])
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(_json)
    _adapt_or_adapter_error(platform, payload)


# --- envelopes, 视频号, warnings and time bounds ---------------------------------------------------


def test_wechat_channels_video_maps_field_by_field_and_reports_the_bad_view_count():
    payload = json.loads((PAYLOADS / "variants" / "wechat_channels.json").read_bytes())
    warnings: list[str] = []
    post = adapt("wechat", payload, OBSERVED, warnings=warnings)
    assert post.platform is Platform.wechat
    assert post.post_id == "channels:14259876543210987654"
    assert post.text == "星河冰箱爆炸现场实拍，售后至今没有说法 #星河冰箱"
    assert (post.author, post.author_type, post.url) == ("家电维权观察", AuthorType.kol, None)
    assert post.published_at == datetime(2026, 11, 21, 5, 0, tzinfo=UTC)
    assert post.engagement.model_dump() == {
        "reposts": 4410,
        "comments": 1288,
        "likes": 15230,
        "extras": {"recommends": 23000},
    }
    assert warnings == ["readCount: a count cannot be negative, got -1; dropped"]


def test_wechat_channels_organisation_is_a_user_and_the_feed_item_envelope_is_unwrapped():
    payload = json.loads((PAYLOADS / "variants" / "wechat_channels.json").read_bytes())
    payload["contact"]["authInfo"]["authIconType"] = 2
    post = adapt("wechat", {"object": payload}, OBSERVED)
    assert (post.post_id, post.author_type) == ("channels:14259876543210987654", AuthorType.user)
    del payload["createtime"]
    with pytest.raises(AdapterError) as caught:
        adapt("wechat", {"object": payload}, OBSERVED)
    assert caught.value.field == "object.createtime or object.createTime or object.create_time"


@pytest.mark.parametrize("envelope", ["aweme_detail", "aweme_info"])
def test_douyin_envelopes_are_unwrapped_and_errors_keep_the_path(envelope):
    post = adapt("douyin", {envelope: sample("douyin")}, OBSERVED)
    assert post.post_id == "7439012345678901234"
    assert post.engagement.likes == 58200
    bad = sample("douyin")
    bad["create_time"] = "soon"
    with pytest.raises(AdapterError) as caught:
        adapt("douyin", {envelope: bad}, OBSERVED)
    assert caught.value.field == f"{envelope}.create_time"


def test_bilibili_api_envelope_is_unwrapped_and_a_failed_call_is_named():
    post = adapt("bilibili", {"code": 0, "message": "0", "data": sample("bilibili")}, OBSERVED)
    assert post.post_id == "BV1xK4y1a7Yz"
    with pytest.raises(AdapterError, match=r"code -404 \(啥都木有\), not 0") as caught:
        adapt("bilibili", {"code": -404, "message": "啥都木有", "data": {}}, OBSERVED)
    assert caught.value.field == "code"


@pytest.mark.parametrize(
    ("official", "fans", "expected"),
    [
        ({"role": 5, "type": 1}, None, AuthorType.media),  # 媒体
        ({"role": 6, "type": 1}, None, AuthorType.media),  # 政府
        ({"role": 3, "type": 1}, 10**7, AuthorType.user),  # 企业: the brand's own account
        ({"role": 1, "type": 0}, None, AuthorType.kol),  # 知名UP主
        ({"role": 0, "type": -1}, 250_000, AuthorType.kol),
        ({"role": 0, "type": -1}, 900, AuthorType.user),
    ],
)
def test_bilibili_official_verification_and_fans_decide_the_author_type(official, fans, expected):
    payload = sample("bilibili")
    payload["owner"]["official"] = official
    if fans is not None:
        payload["owner"]["fans"] = fans
    assert adapt("bilibili", payload, OBSERVED).author_type is expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"red_official_verify_type": 1}, AuthorType.kol),
        ({"red_official_verify_type": 2, "fans": "120万"}, AuthorType.user),
        ({"fans": "12万"}, AuthorType.kol),
        ({"fans": "8000"}, AuthorType.user),
    ],
)
def test_xiaohongshu_verification_and_fans_decide_the_author_type(user, expected):
    payload = sample("xiaohongshu")
    payload["note_card"]["user"].update(user)
    assert adapt("xiaohongshu", payload, OBSERVED).author_type is expected


def test_zhihu_pin_reads_its_text_blocks():
    payload = {
        "id": "1789012345678901234",
        "type": "pin",
        "author": {"name": "吃瓜群众", "user_type": "people", "badge": []},
        "content": [
            {"type": "text", "content": "<p>星河冰箱又炸了？</p>"},
            {"type": "image", "url": "https://pic1.zhimg.com/x.jpg"},
            {"type": "text", "content": "避雷"},
        ],
        "created": 1795244400,
        "repin_count": 12,
        "comment_count": 40,
        "reaction_count": 310,
    }
    post = adapt("zhihu", payload, OBSERVED)
    assert post.text == "星河冰箱又炸了？\n避雷"
    assert post.url == "https://www.zhihu.com/pin/1789012345678901234"
    assert post.engagement.model_dump() == {"reposts": 12, "comments": 40, "likes": 310, "extras": {}}


def test_a_malformed_extra_is_dropped_with_a_warning_not_the_whole_post():
    payload = sample("bilibili")
    payload["stat"]["view"] = "--"
    warnings: list[str] = []
    post = adapt("bilibili", payload, OBSERVED, warnings=warnings)
    assert "views" not in post.engagement.extras
    assert post.engagement.extras["coins"] == 8800
    assert len(warnings) == 1
    assert warnings[0].startswith("stat.view: expected a count")
    assert warnings[0].endswith("; dropped")
    douyin = sample("douyin")
    douyin["statistics"]["play_count"] = -1
    assert "views" not in adapt("douyin", douyin, OBSERVED).engagement.extras


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (0, "before 2000-01-01"),
        (-1, "before 2000-01-01"),
        ("2099-01-01T00:00:00+08:00", "in the future"),
    ],
)
def test_implausible_publish_times_are_refused_naming_the_field(value, reason):
    payload = sample("weibo")
    payload["mblog"]["created_at"] = value
    with pytest.raises(AdapterError, match=reason) as caught:
        adapt("weibo", payload, OBSERVED)
    assert caught.value.field == "mblog.created_at"


def test_relative_publish_times_read_against_the_observation():
    payload = sample("weibo")
    payload["mblog"]["created_at"] = "5分钟前"
    assert adapt("weibo", payload, OBSERVED).published_at == datetime(2026, 11, 21, 23, 55, tzinfo=UTC)


# --- times derived from ids, truncated long texts, 图文 ---------------------------------------------


def test_a_missing_time_is_derived_from_the_id_and_said_so():
    payload = sample("weibo")
    del payload["mblog"]["created_at"]
    warnings: list[str] = []
    post = adapt("weibo", payload, OBSERVED, warnings=warnings)
    # (5102938475610234 >> 22) + 515483463 seconds
    assert post.published_at == datetime(2024, 11, 20, 16, 6, 43, tzinfo=UTC)
    assert warnings == [
        "published_at: derived from id (2024-11-21T00:06:43+08:00): created_at or create_time missing"
    ]


def test_a_missing_time_that_cannot_be_derived_is_refused_never_now():
    payload = sample("weibo")
    del payload["mblog"]["created_at"]
    payload["mblog"]["idstr"] = "Pq3xYz7Ab"
    with pytest.raises(AdapterError) as caught:
        adapt("weibo", payload, OBSERVED)
    assert caught.value.field == "mblog.created_at or mblog.create_time"
    assert caught.value.reason == "missing; the publish time is required, and id does not carry it"
    bili = sample("bilibili")
    del bili["pubdate"]
    del bili["ctime"]
    with pytest.raises(AdapterError, match=r"missing; the publish time is required$"):
        adapt("bilibili", bili, OBSERVED)


@pytest.mark.parametrize(
    ("platform", "id_path", "value", "expected"),
    [
        # Each checked against a post whose time is known: m.weibo.cn "06-27" card (zhangfaliang/koa2),
        # an aweme whose create_time the mobile API gave, a 小红书 note whose `time` the feed gave.
        ("weibo", "idstr", "4387933362623405", datetime(2019, 6, 27, 15, 11, 40, tzinfo=UTC)),
        ("douyin", "aweme_id", "7692046175923311247", datetime.fromtimestamp(1790944062, UTC)),
        ("xiaohongshu", "note_id", "66696f98000000000d00f289", datetime.fromtimestamp(1718185880, UTC)),
    ],
)
def test_id_bit_layouts_match_posts_whose_time_is_known(platform, id_path, value, expected):
    from services.ingest.adapters._fields import aweme_id_time, note_id_time, weibo_mid_time

    derive = {"weibo": weibo_mid_time, "douyin": aweme_id_time, "xiaohongshu": note_id_time}[platform]
    seconds = derive(value)
    assert seconds is not None
    assert datetime.fromtimestamp(seconds, UTC) == expected


def test_a_truncated_long_text_is_flagged_and_loses_its_more_link():
    payload = sample("weibo")
    payload["mblog"]["isLongText"] = True
    payload["mblog"]["text"] = '星河冰箱爆炸始末，第一部分 ...<a href="/status/5102938475610234">全文</a>'
    warnings: list[str] = []
    post = adapt("weibo", payload, OBSERVED, warnings=warnings)
    assert post.text == "星河冰箱爆炸始末，第一部分"
    assert post.truncated is True
    assert json.loads(json.dumps(post))["truncated"] is True
    assert any(w.startswith("mblog.isLongText: the text is cut off") for w in warnings)
    payload["mblog"]["longText"] = {"longTextContent": "星河冰箱爆炸始末，全文"}
    post = adapt("weibo", payload, OBSERVED)
    assert (post.text, post.truncated) == ("星河冰箱爆炸始末，全文", False)
    assert "truncated" not in json.loads(json.dumps(post))  # written only when true: old readers unaffected


def test_douyin_image_posts_get_a_note_url():
    payload = sample("douyin")
    payload["aweme_type"] = 68
    assert adapt("douyin", payload, OBSERVED).url == "https://www.douyin.com/note/7439012345678901234"
    payload["aweme_type"] = 4
    payload["images"] = [{"url_list": ["https://p3.douyinpic.com/1.jpeg"]}]
    assert adapt("douyin", payload, OBSERVED).url == "https://www.douyin.com/note/7439012345678901234"
    payload["images"] = None
    assert adapt("douyin", payload, OBSERVED).url == "https://www.douyin.com/video/7439012345678901234"


def test_unquoted_emoticon_alt_is_kept():
    payload = sample("weibo")
    payload["mblog"]["text"] = '又炸了<span class="url-icon"><img alt=[doge] src="//h5.cn/d.png" /></span>'
    assert adapt("weibo", payload, OBSERVED).text == "又炸了[doge]"
