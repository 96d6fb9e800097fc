"""Text normalisation before matching: one form for simplified, traditional, full-width and spaced text."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

__all__ = ["normalize", "normalize_marked"]

# Zero-width and formatting characters that posters (and spam) insert inside words; all whitespace too.
_DROP = re.compile(r"[\s\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff\u00ad\u180e]+")
# Separators put between the characters of a name so that keyword filters and search miss it (星.河.电.器,
# 星*河, 星·河): dropped between two CJK ideographs. Chinese punctuation (，。、！) is never one of them: it
# ends words and sentences, and dropping it would join words that are not a name. Possessive: a long run of
# separators is scanned once, never given back.
_SPLIT = re.compile(r"(?<=[\u3400-\u9fff\uf900-\ufaff])[.*·・•_\-~|/\\^+=]++(?=[\u3400-\u9fff\uf900-\ufaff])")


def _gap(m: re.Match[str]) -> str:
    """Spaces go, except one between two Latin letters or digits ('iphone 15 pro'), where they end a word."""
    s, i, j = m.string, m.start(), m.end()
    if 0 < i and j < len(s) and _latin(s[i - 1]) and _latin(s[j]) and any(c.isspace() for c in m.group()):
        return " "
    return ""


# Private-use characters: they survive NFKC, case folding and OpenCC, and are never in real text.
_MARK = "\ue000"  # a case boundary
_END = "\ue001"  # the end of an @mention's nick
_MARKS = re.compile(f"([{_MARK}{_END}])")
# Where case shows a word boundary that case folding erases: MacBookPro, AirPodsPro, RedmiK70, HUAWEIMate.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# An @mention and the whitespace after it: Weibo links the nick up to a space, so '@小米公司 我的手机' names
# 小米公司, and dropping the space must not let the nick run on into the post. The nick may hold case marks
# (@AppleSupport); an e-mail address is no mention (service@jd.com). Possessive repeats: a nick or a run of
# spaces is never given back, so a long run costs one scan, not one per length.
_MENTION_GAP = re.compile(rf"(?<![A-Za-z0-9._%+\-])@[\w\-{_MARK}]++(?={_DROP.pattern}+(.))")


def _latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _traditional() -> re.Pattern[str]:
    """A character class of the characters OpenCC's t2s changes. Derived from the installed OpenCC rather
    than shipped, so it cannot drift from the converter. A regex rather than a set: the regex engine tests
    each character of a post against a bitmap, where set.isdisjoint(text) makes a string object of each
    (7× slower on a Chinese post)."""
    chars = [chr(c) for c in (*range(0x3400, 0xA000), *range(0xF900, 0xFB00))]
    converted = str(_t2s().convert("\n".join(chars))).split("\n")
    changed = sorted(a for a, b in zip(chars, converted, strict=True) if a != b)
    return re.compile(f"[{''.join(changed)}]")


@lru_cache(maxsize=1)
def _compatibility() -> dict[int, str]:
    """Every BMP character that NFKC changes on its own, mapped to what NFKC makes of it (，-> , and
    Ａ -> A). Derived from the installed unicodedata, so it cannot drift from it."""
    table = {}
    for code in (*range(0xD800), *range(0xE000, 0x10000)):  # surrogates are no characters
        char = chr(code)
        folded = unicodedata.normalize("NFKC", char)
        if folded != char:
            table[code] = folded
    return table


def _nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), faster for the usual post.

    Replacing a character by its own NFKC form leaves the text compatibility-equivalent, and equivalent
    texts have one NFKC form, so translating first changes nothing in the result. It makes the result
    cheap: the full-width punctuation of Chinese posts is what fails NFKC's quick check and sends a whole
    post through decomposition and recomposition; after the translation the quick check usually passes
    and normalize returns the text as it is.
    """
    return unicodedata.normalize("NFKC", text.translate(_compatibility()))


def _to_simplified(text: str) -> str:
    # t2s reads its input as traditional, and its phrase table then spoils some simplified text
    # (打坏了 -> 打坯了): convert only text that has a traditional character.
    if _traditional().search(text) is None:
        return text
    return str(_t2s().convert(text))


def normalize(text: str) -> str:
    """NFKC (full-width to half-width), case folding, traditional to simplified, no zero-widths, no
    spaces except a single one between Latin letters or digits, and no evasion separators between two CJK
    ideographs (星.河 -> 星河).

    Emoji are kept as they are: they separate words, so they keep jieba's boundaries honest.
    """
    return normalize_marked(text)[0]


def _end_mention(m: re.Match[str]) -> str:
    # A space between two Latin characters stays in the normalised text and ends the nick there anyway.
    if _latin(m.group()[-1]) and _latin(m.group(1)):
        return m.group()
    return m.group() + _END


@lru_cache(maxsize=8)
def normalize_marked(text: str) -> tuple[str, frozenset[int], frozenset[int]]:
    """normalize(text); the offsets in it where the original's letter case marked a word boundary between
    two Latin letters (MacBookPro -> 'macbookpro' with boundaries at 3 and 7); and the offsets where an
    @mention's nick ended at whitespace that normalisation dropped ('@小米公司 我的' -> 5)."""
    text = _nfkc(text.replace(_MARK, "").replace(_END, ""))
    marked = _CAMEL.search(text) is not None
    if marked:
        text = _CAMEL.sub(_MARK, text)
    if "@" in text:
        mentioned = _MENTION_GAP.sub(_end_mention, text)
        marked = marked or len(mentioned) != len(text)
        text = mentioned
    text = _SPLIT.sub("", _DROP.sub(_gap, text.casefold()))
    # Folding case and dropping spaces can leave characters that compose ('A´' -> 'a' + combining acute):
    # normalise once more, so that normalising twice changes nothing.
    text = _to_simplified(unicodedata.normalize("NFKC", text))
    if not marked:
        return text, frozenset(), frozenset()
    cuts: set[int] = set()
    ends: set[int] = set()
    parts: list[str] = []
    at = 0
    for part in _MARKS.split(text):
        if part == _MARK:
            cuts.add(at)
        elif part == _END:
            ends.add(at)
        elif parts and part and unicodedata.combining(part[0]):
            # A mark kept a combining character ('O' + '¨' after a nick) from composing with its letter:
            # no boundary falls inside a character, and composing here keeps normalising twice a no-op.
            cuts.discard(at)
            ends.discard(at)
            joined = unicodedata.normalize("NFKC", parts[-1] + part)
            at += len(joined) - len(parts[-1])
            parts[-1] = joined
        else:
            parts.append(part)
            at += len(part)
    return "".join(parts), frozenset(cuts), frozenset(ends)
