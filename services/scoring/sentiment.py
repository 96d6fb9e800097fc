"""Lexicon sentiment with scoped negation, and the poster's core demand (核心诉求), for the ledger.

Words are found longest first in one Aho-Corasick pass (不错 is praise, not 不 + 错; 垃圾桶 hides 垃圾). A
negator flips a word only within its clause and only when it really negates: 从来没出过质量问题 and
一次毛病都没出过 are praise, while 是不是假货, 这不是诈骗是什么, 不就是骗局吗 and 没有假货？别逗了 are not.
The lexicon is data (data/lexicon.yaml plus the strong negative tags); no model is loaded at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

import yaml

from schemas.labels import NEUTRAL_BAND
from services.scoring.automaton import Automaton
from services.scoring.markup import inside, nicks
from services.scoring.normalize import normalize, normalize_marked

__all__ = ["NEUTRAL_BAND", "Cue", "analyse", "read", "score_of", "stance"]

# Ties go to the graver demand; service words come with almost any complaint, so they weigh less than the
# defect or the money they are about (坏了…售后说要自费维修 is a quality complaint).
_DEMAND_ORDER = ("safety", "privacy", "false_advertising", "refund", "quality", "service")
_DEMAND_WEIGHT = {"service": 0.45, "verdict": 0.3}
_ASKED = re.compile(r"(?:要求|申请|我要|必须|强烈要求)$")
_ASKED_WEIGHT = 2.0
_CLAUSE_END = re.compile(r"[^\w]")
_NEGATOR = re.compile(
    r"(?:不|没|没有|别|未|无|非|从不|从没|从没有|从来没有?|毫无|并不|并没有?|绝不|决不|不太|不怎么|不够|没什么|"
    r"不会|不再|不是|并非|零|不想给|不想)"
    r"(?:任何|出过|遇到过|发生过|有过|过|有|一次|都|也|再|太|是|那么|很|怎么|算|够|买到过|买到)?(?:任何|过)?$"
)
# Tails that end in a negator character without negating what follows.
_NOT_A_NEGATION = tuple(
    "是不是 不就是 不仅 不但 不光 不只 无论 不管 不得不 差不多 忍不住 了不起 不少 非常 无比 莫非 "
    "难道不是 特别 分别 区别 级别 差别 别人 别的 个别 无敌".split()
)
# 没 / 没有 may stand a few words before what they deny (没有发生过电池自燃), but not across 就/又/还 …
# (没多久就坏了, 没几天又坏了 are complaints).
_EXISTENTIAL = re.compile(
    r"(?:没有?|从没有?|从来没有?|并没有?|从未|未曾)[^\W就又还便才但却了]{1,5}$|(?:以为|还以为|本以为|原以为)[^\W]{0,6}$"
)
_BARRIERS = "就又还便才但却了"  # as in _EXISTENTIAL: 没多久就坏了 is a complaint
_HYPOTHETICAL = re.compile(
    r"(?:怕买到|怕遇到|担心|会不会|万一|以免|避免|防止|预防|是否|哪个|哪家)[^\W]{0,6}$"
)
_AFTER_NEGATION = re.compile(r"^[^\W]{0,3}?(?:都|也)(?:没有?|不)(?:出|有|发生|遇到|踩|坏)?过")
_RHETORICAL = re.compile(r"^[^\W]{0,8}?(?:是什么|吗|呢)|^[^\W]{0,8}?[?？]")
# Every character that starts a negator, a doubt marker or an after-negation (都没出过) above.
# A character class, searched within a span: cheaper than a set's isdisjoint over a slice (see stance).
_TRIGGERS = re.compile("[不没别未无非从毫并绝决零以还本原怕担会万避防预是哪都也]")
_DISBELIEF = ("别逗了", "才怪", "开玩笑")


class Cue(NamedTuple):
    """A sentiment word in normalised text, with its polarity after negation (+1 praise, -1 grievance)."""

    term: str
    start: int
    end: int
    polarity: int


@dataclass(frozen=True)
class _Lexicon:
    words: Automaton[tuple[str, int]]  # term -> (term, polarity); polarity 0 masks (compounds)
    demands: Automaton[tuple[str, str]]  # term -> (term, demand); compounds -> (term, "")
    requested: tuple[str, ...]
    gratitude: frozenset[str]


def _lines(name: str) -> list[str]:
    text = (resources.files("services.scoring") / "data" / name).read_text(encoding="utf-8")
    return [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]


def _yaml(name: str) -> dict[str, list[str]]:
    raw = (resources.files("services.scoring") / "data" / name).read_text(encoding="utf-8")
    data: dict[str, list[str]] = yaml.safe_load(raw)
    return data


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    data = _yaml("lexicon.yaml")
    emoticons = _yaml("emoticons.yaml")
    weak = {normalize(w) for w in _lines("weak_tags.txt")}
    polarity: dict[str, int] = {normalize(w): 0 for w in _lines("compounds.txt")}
    negative = [*(normalize(w) for w in _lines("negatives.txt")), *(normalize(w) for w in data["negative"])]
    polarity.update({w: -1 for w in negative if w not in weak})
    polarity.update({normalize(w): 1 for w in data["positive"]})
    for kind, value in (("negative", -1), ("positive", 1), ("neutral", 0)):
        polarity.update({normalize(w): value for w in emoticons[kind]})
    demands: dict[str, tuple[str, str]] = {}
    for w in (*_lines("compounds.txt"), *(w for kind in emoticons.values() for w in kind)):
        demands[normalize(w)] = (normalize(w), "")
    for d in _DEMAND_ORDER:
        for w in data[f"demand_{d}"]:
            demands[normalize(w)] = (normalize(w), d)
    for w in data["demand_quality_verdict"]:
        if normalize(w) not in demands:
            demands[normalize(w)] = (normalize(w), "verdict")
    return _Lexicon(
        words=Automaton({w: (w, p) for w, p in polarity.items()}),
        demands=Automaton(demands),
        requested=tuple(normalize(w) for w in data["requested"]),
        gratitude=frozenset(normalize(w) for w in data["gratitude"]),
    )


def _longest(automaton: Automaton[tuple[str, Any]], norm: str) -> list[tuple[int, int, tuple[str, Any]]]:
    """Non-overlapping matches, longer first, then leftmost."""
    # (minus length, start, end, value): sorted as they are, longer first, then leftmost. No two matches
    # share a start and an end, so the values never decide the order.
    found = [(start - end, start, end, v) for start, end, v in automaton.find(norm)]
    found.sort()
    taken = bytearray(len(norm))
    out = []
    for _, start, end, v in found:
        if taken.find(1, start, end) < 0:  # no character of it taken yet
            taken[start:end] = b"\x01" * (end - start)
            out.append((start, end, v))
    out.sort()
    return out


def _clause_start(norm: str, at: int) -> int:
    i = at
    while i > 0 and not _CLAUSE_END.match(norm[i - 1]):
        i -= 1
    return i


def stance(norm: str, start: int, end: int) -> int:
    """How the clause holds the word at norm[start:end]: 1 as said, -1 negated (没出过任何质量问题,
    毛病都没出过, 没有发生过电池自燃), 0 only feared or asked about (怕买到翻新机, 会不会自燃)."""
    if _TRIGGERS.search(norm, max(0, start - 8), end + 12) is None:
        return 1  # the common case: no negator, doubt or 都/也 anywhere near
    lo = _clause_start(norm, start)
    before = norm[max(lo, start - 8) : start]
    if _HYPOTHETICAL.search(before):
        return 0
    after = norm[end : end + 12]
    if _AFTER_NEGATION.match(after):
        return -1
    near = before[-6:]
    m = _NEGATOR.search(near)
    at_negator = len(before) - len(near) + m.start() if m else 0
    if m is None:
        m = _EXISTENTIAL.search(before) if norm[start] not in _BARRIERS else None
        if m is None:
            return 1
        at_negator = m.start()
    for x in _NOT_A_NEGATION:
        at = before.rfind(x, 0, at_negator + len(x))
        if at != -1 and at <= at_negator < at + len(x):
            return 1
    if "不是" in m.group() and _RHETORICAL.match(after):
        return 1
    return 1 if any(x in norm[end:] for x in _DISBELIEF) else -1


@lru_cache(maxsize=8)
def read(norm: str, masked: tuple[tuple[int, int], ...] = ()) -> tuple[Cue, ...]:
    """The sentiment words of normalised text, with negation and sarcasm applied; none inside the masked
    spans (the nicks of @mentions: @不开心的猫 says nothing about the post).

    Cached: the matcher reads a post that names a brand, and the hit stage then asks for its score."""
    lex = _lexicon()
    cues: list[Cue] = []
    for start, end, (term, value) in _longest(lex.words, norm):
        pol: int = value
        if not pol or (masked and inside(start, end, masked)):
            continue
        if pol > 0 and norm[max(0, start - 4) : start].endswith(lex.requested):
            continue  # 让我给好评: asked for, not given
        if term[0].isalnum():  # an emoji says what it says; 没有回应🙄 does not negate the eye-roll
            pol *= stance(norm, start, end)
        if pol:
            cues.append(Cue(term, start, end, pol))
    if any(c.polarity < 0 for c in cues):
        # 谢谢你啊苹果 next to a grievance is sarcasm, not thanks.
        cues = [Cue(c.term, c.start, c.end, -1) if c.term in lex.gratitude else c for c in cues]
    return tuple(cues)


def score_of(cues: tuple[Cue, ...]) -> float:
    """Mean polarity in [-1, 1]; 0 without sentiment words."""
    return round(sum(c.polarity for c in cues) / len(cues), 3) if cues else 0.0


def _demand(norm: str, masked: tuple[tuple[int, int], ...]) -> str:
    weights: dict[str, float] = {}
    for start, end, (_, d) in _longest(_lexicon().demands, norm):
        if d and not (masked and inside(start, end, masked)):
            weight = _DEMAND_WEIGHT.get(d, 1.0)
            if _ASKED.search(norm[max(0, start - 3) : start]):
                weight += _ASKED_WEIGHT  # 要求退款: the poster names what they want
            d = "quality" if d == "verdict" else d
            weights[d] = weights.get(d, 0.0) + weight
    if not weights:
        return "other"
    # max() returns the first of equal maxima: ties go to the earlier, graver demand.
    return max(_DEMAND_ORDER, key=lambda d: weights.get(d, 0.0))


def analyse(text: str) -> tuple[float, str]:
    """(sentiment in [-1, 1], demand category). Only a negative post has a demand other than 'other'."""
    norm, _, ends = normalize_marked(text)
    masked = tuple(nicks(norm, ends))
    score = score_of(read(norm, masked))
    return score, _demand(norm, masked) if score < -NEUTRAL_BAND else "other"
