"""Hostile text: long adversarial strings through the text cleaner, time and count parsers and adapters.

Two kinds of evidence, neither a wall-clock assert (timings are in bench/hostile_text.py):
- a structural audit of every regex in services/ that fails on the shapes that backtrack polynomially, and
  which is shown to flag the patterns that did (so the audit can fail);
- Hypothesis over strings of up to ~200 KB built from the fragments that triggered the backtracking. With
  the old patterns a single such example ran for minutes; the assertions check what comes out.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import UTC, datetime
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import services
from services.ingest.adapters import AdapterError, adapt
from services.ingest.adapters._fields import Reading, clean_text, parse_count
from services.ingest.adapters.forum import map_payload as forum_payload
from services.ingest.timeparse import parse_time
from tests.ingest.test_adapters import sample

NOW = datetime(2026, 11, 22, tzinfo=UTC)
# Characters a single-character matcher is tried against to decide whether two of them overlap.
_ALPHABET = [chr(c) for c in range(0x20, 0x7F)] + list("\t\n\r\f\v\u00a0\u3000年月日时分秒话题中文")


def _chars(item: tuple[Any, Any], flags: int) -> set[str] | None:
    """The characters a single-character matcher accepts (within _ALPHABET), or None if it is not one."""
    op, av = item
    if op is sre.LITERAL:
        return {chr(av)}
    if op is sre.NOT_LITERAL:
        return {c for c in _ALPHABET if c != chr(av)}
    if op is sre.ANY:
        return {c for c in _ALPHABET if c != "\n" or flags & re.DOTALL}
    if op is sre.IN:
        negate = any(o is sre.NEGATE for o, _ in av)
        accepted: set[str] = set()
        for o, a in av:
            if o is sre.LITERAL:
                accepted.add(chr(a))
            elif o is sre.RANGE:
                accepted |= {c for c in _ALPHABET if a[0] <= ord(c) <= a[1]}
            elif o is sre.CATEGORY:
                probe = {
                    sre.CATEGORY_SPACE: r"\s",
                    sre.CATEGORY_NOT_SPACE: r"\S",
                    sre.CATEGORY_DIGIT: r"\d",
                    sre.CATEGORY_NOT_DIGIT: r"\D",
                    sre.CATEGORY_WORD: r"\w",
                    sre.CATEGORY_NOT_WORD: r"\W",
                }[a]
                accepted |= {c for c in _ALPHABET if re.fullmatch(probe, c, flags & re.ASCII)}
        if flags & re.IGNORECASE:
            accepted |= {c.swapcase() for c in accepted}
        return {c for c in _ALPHABET if c not in accepted} if negate else accepted
    return None


def _unbounded(item: tuple[Any, Any]) -> bool:
    op, av = item
    return op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[1] == sre.MAXREPEAT


def _optional(item: tuple[Any, Any]) -> bool:
    op, av = item
    return (op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] == 0) or op is sre.AT


def _body_chars(item: tuple[Any, Any], flags: int) -> set[str] | None:
    body = list(item[1][2])
    return _chars(body[0], flags) if len(body) == 1 else None


def _first_chars(items: list[tuple[Any, Any]], flags: int) -> set[str]:
    first: set[str] = set()
    for item in items:
        op, av = item
        if op is sre.AT:
            continue
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            first |= _first_chars(list(av[2]), flags)
            if av[0] == 0:
                continue
            return first
        if op is sre.SUBPATTERN:
            return first | _first_chars(list(av[3]), flags)
        if op is sre.BRANCH:
            for branch in av[1]:
                first |= _first_chars(list(branch), flags)
            return first
        return first | (_chars(item, flags) or set(_ALPHABET))
    return first


def _meets(mine: set[str] | None, items: list[tuple[Any, Any]], flags: int) -> str:
    """Walk forward over what can match empty: 'clash' on reaching an unbounded repeat over characters that
    `mine` also takes, 'stop' on reaching anything that must match, 'open' when all of `items` is optional.
    """
    for item in items:
        op, av = item
        if _unbounded(item):
            theirs = _body_chars(item, flags)
            clash = mine is None or theirs is None or bool(mine & theirs)
            if clash:
                return "clash"
            if av[0] > 0:
                return "stop"
            continue
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            inner = _meets(mine, list(av[2]), flags)
            if inner == "clash" or (inner == "stop" and av[0] > 0):
                return inner
            continue
        if op is sre.SUBPATTERN:
            inner = _meets(mine, list(av[3]), flags)
            if inner != "open":
                return inner
            continue
        if op is sre.AT:
            continue
        return "stop"
    return "open"


def _problems(
    items: list[tuple[Any, Any]], flags: int, start: set[str], after: list[tuple[Any, Any]]
) -> list[str]:
    """Risky shapes in `items`; `after` is what the pattern still has to match once `items` did."""
    found: list[str] = []
    for i, item in enumerate(items):
        op, av = item
        rest = items[i + 1 :] + after
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            inner = list(av[2])
            if av[1] > 1 and any(_unbounded(x) for x in _walk(inner)):
                found.append("a repeated group holds an unbounded repeat (nested quantifiers)")
            if _unbounded(item):
                mine = _body_chars(item, flags)
                # Only optional items until another unbounded repeat over overlapping characters: every
                # split of a run between the two is tried.
                if _meets(mine, rest, flags) == "clash":
                    found.append("adjacent unbounded repeats over the same characters")
                # A repeat that can run over the pattern's first character, with something after it that
                # can fail, is rescanned from every later start by search/sub.
                if any(not _optional(x) for x in rest) and (mine is None or mine & start):
                    found.append("an unbounded repeat over the first character, then more to match")
            found += _problems(inner, flags, start, rest)
        elif op is sre.SUBPATTERN:
            found += _problems(list(av[3]), flags, start, rest)
        elif op is sre.BRANCH:
            for branch in av[1]:
                found += _problems(list(branch), flags, start, rest)
    return found


def _walk(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    out = []
    for item in items:
        out.append(item)
        op, av = item
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            out += _walk(list(av[2]))
        elif op is sre.SUBPATTERN:
            out += _walk(list(av[3]))
        elif op is sre.BRANCH:
            for branch in av[1]:
                out += _walk(list(branch))
    return out


def backtracking_risks(pattern: re.Pattern[str]) -> list[str]:
    items = list(sre_parse.parse(pattern.pattern, pattern.flags).data)
    return _problems(items, pattern.flags, _first_chars(items, pattern.flags), [])


def _service_patterns() -> dict[str, re.Pattern[str]]:
    found: dict[str, re.Pattern[str]] = {}
    for info in pkgutil.walk_packages(services.__path__, "services."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            values = value.items() if isinstance(value, dict) else [(None, value)]
            for key, v in values:
                if isinstance(v, re.Pattern) and isinstance(v.pattern, str):
                    found[f"{info.name}.{name}" + (f"[{key}]" if key else "")] = v
    return found


# The patterns that backtracked before (audit findings B1): the audit must flag each.
FORMER = {
    "_IMG_ALT": re.compile(r"<img\b[^>]*?\balt\s*=\s*([\"'])(.*?)\1[^>]*>", re.IGNORECASE | re.DOTALL),
    "_SCRIPT": re.compile(r"<\s*(script|style)\b[^>]*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL),
    "_TAG": re.compile(r"<\s*/?\s*[A-Za-z][^>]*>"),
    "_COUNT": re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(k|千|w|万|亿)?\s*\+?", re.IGNORECASE),
    "_CHINESE": re.compile(
        r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
        r"(?:[\sT]*(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?|\s*分)?)?",
        re.ASCII,
    ),
    "_QUOTE": re.compile(r"\[quote\].*?\[/quote\]", re.IGNORECASE | re.DOTALL),
    "_BBCODE": re.compile(r"\[/?[a-z]+(?:=[^\]]*)?\]", re.IGNORECASE),
}


@pytest.mark.parametrize("name", sorted(FORMER))
def test_the_audit_flags_each_pattern_that_backtracked(name):
    assert backtracking_risks(FORMER[name]), name


def test_no_regex_in_services_has_a_backtracking_shape():
    patterns = _service_patterns()
    assert len(patterns) >= 15, sorted(patterns)  # the walk found the modules' patterns
    risky = {name: risks for name, p in patterns.items() if (risks := backtracking_risks(p))}
    assert risky == {}


FRAGMENTS = [
    "<img alt='",
    '<img alt="',
    "<script>",
    "<style",
    "<!--",
    "<",
    "< /",
    "<a",
    "<p>",
    "[quote]",
    "[a=",
    "[",
    " ",
    "\u3000",
    "x",
    "投诉",
    "&amp;",
    ">",
]
hostile = st.lists(st.tuples(st.sampled_from(FRAGMENTS), st.integers(1, 20_000)), min_size=1, max_size=4).map(
    lambda parts: "".join(f * n for f, n in parts)[:200_000]
)
TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
BBCODE = re.compile(r"\[/?[a-z]+(?:=[^\[\]]*)?\]", re.IGNORECASE)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(hostile)
def test_clean_text_strips_every_tag_from_long_hostile_markup(text):
    out = clean_text(text)
    assert TAG.search(out) is None
    # Nothing is invented: every character left came from the input or is a line break.
    assert set(out) <= set(text) | {"\n", " ", "&", "<", ">", "'", '"'}


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(hostile)
def test_forum_messages_of_hostile_bbcode_become_text_or_a_named_error(text):
    payload = {"tid": 1, "subject": "标题", "message": text, "dbdateline": 1795230000, "replies": 0}
    fields = forum_payload(payload, Reading(now=NOW))
    assert fields["text"].startswith("标题")
    assert BBCODE.search(fields["text"]) is None


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from(["2026-11-21", "1", "Sat Nov 21", "1.2"]), hostile)
def test_time_and_count_parsers_refuse_long_hostile_values(prefix, tail):
    value = prefix + tail
    with pytest.raises(ValueError, match="unrecognised time"):
        parse_time(value + "x", NOW)
    if len(value.strip()) > 40:
        with pytest.raises(ValueError, match="expected a count"):
            parse_count(value + "x")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from(["weibo", "douyin", "zhihu", "bilibili", "wechat", "news"]), hostile)
def test_adapters_turn_long_hostile_text_into_a_post_or_a_named_error(platform, text):
    payload = sample(platform)
    path = {
        "weibo": ("mblog", "text"),
        "douyin": ("desc",),
        "zhihu": ("content",),
        "bilibili": ("desc",),
        "wechat": ("content",),
        "news": ("content",),
    }[platform]
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = text
    try:
        post = adapt(platform, payload, NOW)
    except AdapterError as exc:
        error: AdapterError | None = exc
    else:
        error = None
        assert TAG.search(post.text) is None
    if error is not None:
        assert error.field in ("text", "mblog.text", "desc", "content")
        assert "limit" in error.reason or "no text" in error.reason
        return
    assert 0 < len(post.text) <= 20_000
