"""Text from posts inside alert markdown: nothing a robot, a mail client or a markdown renderer interprets."""

from __future__ import annotations

import pytest

from services.common.alerttext import POST_LABEL, inert, post_ref

PHISH = "[确认处理 Acknowledge](https://evil.example/phish)"


def test_a_link_that_looks_like_the_ack_button_arrives_as_plain_text():
    assert inert(PHISH) == "［确认处理 Acknowledge］（https：//evil．example/phish）"


@pytest.mark.parametrize(
    ("post", "shown"),
    [
        # Feishu mentions everyone, WeCom mentions a user, three robots colour text: no tag survives.
        ("<at id=all></at>快来看", "＜at id=all＞＜/at＞快来看"),
        ("<@zhangsan> 差评", "＜＠zhangsan＞ 差评"),
        ('<font color="warning">紧急</font>', '＜font color="warning"＞紧急＜/font＞'),
        ("<img src=x onerror=alert(1)>", "＜img src=x onerror=alert（1）＞"),
        # Image, emphasis, strike, code, escapes, math.
        ("![logo](https://evil.example/a.png)", "！［logo］（https：//evil．example/a．png）"),
        ("**加粗** _斜体_ ~~删除~~ `代码`", "＊＊加粗＊＊ ＿斜体＿ ～～删除～～ ｀代码｀"),
        ("\\[not a link\\] $x$", "＼［not a link＼］ ＄x＄"),
        # A line break would let the post open a heading, a quote or a list item of its own.
        ("避雷\n### 确认处理\n> 已处理\r\n- 项", "避雷 ＃＃＃ 确认处理 ＞ 已处理 - 项"),
        ("a\u2028b\u2029c\x85d\te\x0bf", "a b c d e f"),
        # Invisible characters: zero-width joiners between letters, a right-to-left override.
        ("ht\u200btps://evil.example", "https：//evil．example"),
        ("\u202eelpmaxe.live\u202c 投诉", "elpmaxe．live 投诉"),
        # Bare hosts and mail addresses are autolinked by clients: no dot between letters is left.
        ("www.evil.example 或 evil.example/x", "www．evil．example 或 evil．example/x"),
        ("客服 help@evil.example", "客服 help＠evil．example"),
        # What is not markup stays as it was: Chinese punctuation, numbers with decimals, plain words.
        ("质量问题，退款3.5元！（已投诉）", "质量问题，退款3.5元！（已投诉）"),
    ],
)
def test_markup_of_every_dialect_becomes_text(post: str, shown: str):
    assert inert(post) == shown


def test_inert_text_is_capped_and_never_none():
    assert inert("好" * 300, 80) == "好" * 79 + "…"
    assert inert(None) == ""
    assert inert("  \n ") == ""


def test_a_post_on_a_platform_site_gets_a_fixed_label_link():
    assert post_ref("https://weibo.com/123/AbC") == f"[{POST_LABEL}](https://weibo.com/123/AbC)"
    assert post_ref("https://m.weibo.cn/detail/9") == f"[{POST_LABEL}](https://m.weibo.cn/detail/9)"
    assert post_ref("https://www.zhihu.com/question/1/answer/2?utm=x&y=1") == (
        f"[{POST_LABEL}](https://www.zhihu.com/question/1/answer/2?utm=x&y=1)"
    )
    # Characters that could end the link or open a tag are percent-encoded, so the label stays ours.
    assert post_ref("https://www.douyin.com/video/1)[x](https://evil.example") == (
        f"[{POST_LABEL}](https://www.douyin.com/video/1%29%5Bx%5D%28https://evil.example)"
    )
    assert post_ref('https://www.bilibili.com/video/<b>"x" y') == (
        f"[{POST_LABEL}](https://www.bilibili.com/video/%3Cb%3E%22x%22%20y)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.com/a/1",  # news sites and forums are anyone's
        "http://weibo.com/1/2",  # not https
        "https://weibo.com@evil.example/x",  # userinfo: the host is evil.example
        "https://user:pw@weibo.com/x",
        "https://evil.example\\.weibo.com/x",  # a backslash some browsers read as a path
        "https://weibo.com.evil.example/x",
        "https://notweibo.com/x",
        "https://weibo.com:8443/x",
        "javascript:alert(1)",
        "https://[::1",  # unparseable
    ],
)
def test_any_other_link_is_shown_as_text_nobody_can_click(url: str):
    shown = post_ref(url)
    assert "](" not in shown
    assert "://" not in shown
    assert "<" not in shown


def test_no_url_no_reference():
    assert post_ref(None) == ""
    assert post_ref("") == ""
