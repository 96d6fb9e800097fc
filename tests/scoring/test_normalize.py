from __future__ import annotations

import pytest

from services.scoring.normalize import normalize, normalize_marked


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("星河電器", "星河电器"),
        ("投訴", "投诉"),
        ("星河電器投訴無門", "星河电器投诉无门"),
    ],
)
def test_traditional_to_simplified(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_full_width_to_half_width_and_case_folding() -> None:
    assert normalize("ＸＩＡＯＭＩ") == "xiaomi"
    assert normalize("Ｘｉａｏｍｉ１５ Pro") == "xiaomi15 pro"  # a space between Latin words ends a word


def test_full_width_punctuation_becomes_ascii() -> None:
    assert normalize("星河电器，投诉！") == "星河电器,投诉!"


@pytest.mark.parametrize(
    "raw",
    [
        "星 河 电 器",
        "星\u200b河\u200b电\u200b器",
        "星\u3000河\t电\n器",
        "\ufeff星\u200d河\u2060电\u00ad器",
    ],
)
def test_whitespace_and_zero_width_removed_inside_words(raw: str) -> None:
    assert normalize(raw) == "星河电器"


def test_plain_simplified_text_unchanged() -> None:
    assert normalize("星河电器空调起火") == "星河电器空调起火"


@pytest.mark.parametrize(
    ("text", "norm", "cuts"),
    [
        ("MacBookPro", "macbookpro", {3, 7}),
        ("AirPodsPro坏了", "airpodspro坏了", {3, 7}),
        ("RedmiK70", "redmik70", {5}),
        ("HUAWEIMate60", "huaweimate60", {6}),
        ("pineapple", "pineapple", set()),
        ("iphone", "iphone", set()),
    ],
)
def test_camel_case_boundaries_survive_case_folding(text: str, norm: str, cuts: set[int]) -> None:
    assert normalize_marked(text) == (norm, frozenset(cuts), frozenset())


@pytest.mark.parametrize(
    ("text", "norm", "ends"),
    [
        ("@小米公司 我的手机坏了", "@小米公司我的手机坏了", {5}),
        ("//@南山林雪萍 :虽然", "//@南山林雪萍:虽然", {8}),
        ("＠小米公司\u3000投诉", "@小米公司投诉", {5}),
        ("@小米公司\n\n差评", "@小米公司差评", {5}),
        # A kept space ends the nick by itself; no mark needed.
        ("@Apple iPhone坏了", "@apple iphone坏了", set()),
        # Punctuation ends it too, and an e-mail address is no mention.
        ("@小米公司：你好", "@小米公司:你好", set()),
        ("发邮件到 service@jd.com 投诉", "发邮件到service@jd.com投诉", set()),
    ],
)
def test_whitespace_that_ends_a_mention_is_marked(text: str, norm: str, ends: set[int]) -> None:
    assert normalize_marked(text)[0::2] == (norm, frozenset(ends))


def test_mention_end_survives_camel_case_marks() -> None:
    assert normalize_marked("@AppleSupport 退款") == ("@applesupport退款", frozenset({6}), frozenset({13}))


def test_simplified_text_is_not_run_through_t2s() -> None:
    # OpenCC's t2s phrase table turns the simplified 打坏了 into 打坯了.
    assert normalize("把墙打坏了") == "把墙打坏了"
    assert normalize("把牆打壞了") == "把墙打坏了"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("星.河.电.器", "星河电器"),
        ("星*河·电_器", "星河电器"),
        ("星河。电器", "星河。电器"),  # Chinese punctuation stays: it ends a sentence
        ("v1.5 和 iphone-15", "v1.5和iphone-15"),  # separators beside Latin letters or digits stay
        ("星河.com", "星河.com"),
    ],
)
def test_separators_between_cjk_ideographs_are_dropped(text: str, expected: str) -> None:
    assert normalize(text) == expected
