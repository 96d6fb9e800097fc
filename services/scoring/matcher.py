"""Rule matching: which rule group's brand a post complains about.

1. Aho-Corasick finds candidate terms in the normalised text: brand terms, negative tags, required words,
   other companies' names (other_brands.txt) and harmless compounds (compounds.txt).
2. A brand must sit on jieba's word boundaries (小米 is not in 小米粥) and outside a harmless compound
   (小米椒, 苹果肌, 京东方); a brand that is also an everyday word (苹果, 星河) needs a brand cue in the post
   (ambiguous.yaml). A tag may sit inside a longer word (售后服务, 食物中毒), not inside a harmless compound
   (避雷针, 垃圾分类) nor straddle two words (一起|火锅 is not 起火).
   Weibo's markup (markup.py): in a hashtag, an everyday word followed at once by a tag is the brand
   (#小米差评#, #苹果避雷#; not #小米粥做法#); so is one that names a 超话 (#小米[超话]#, 小米超话). An
   @mention's nick is a name: nothing in it is a brand, a tag or the poster's sentiment (@华为粉丝小王,
   @避雷小分队), unless the nick is the brand's own account (@小米公司, @华为终端), which names the brand.
   Emoticon alt-text ([怒], [白眼]) is a sentiment word (data/emoticons.yaml) and masks the words inside it.
3. Negative evidence (tags, and grievance words from the sentiment lexicon) is attributed to the brand it is
   about: the nearest brand in its clause, else the last one named before it. A brand named as the better
   choice (还是华为好用, 早知道买格力, 换到京东) or cleared (不是小米的问题) takes none. Negated tags
   (从来没维修过, 没出过任何质量问题) are no evidence.
4. A group hits when its brand gets a strong tag in a post that is not clearly praise, a weak tag (退款,
   售后, 召回 …) in text that reads negative, or, without any tag, text that reads clearly negative.

jieba runs only on the clauses around candidates, and the sentiment pass only on posts that name a brand;
a post that names a brand but has neither a tag nor a grievance word is settled without jieba.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from itertools import accumulate
from typing import Any, NamedTuple

import jieba
import jieba.finalseg
import yaml

from schemas.events import TermMatch
from services.common.config import RuleGroup, RulesConfig
from services.scoring.automaton import Automaton
from services.scoring.markup import hashtags, inside, nicks
from services.scoring.normalize import normalize, normalize_marked
from services.scoring.sentiment import NEUTRAL_BAND, read, stance

__all__ = ["GroupMatch", "RuleMatcher", "default_negatives"]

jieba.setLogLevel(logging.WARNING)

# Clause delimiters: punctuation (ASCII, CJK, full-width), spaces, emoji and other symbols.
_CLAUSE_SPLIT = re.compile(r"[^\w]")
# What jieba's cut hands to its DAG cutter as one block.
_JIEBA_BLOCK: re.Pattern[str] = jieba.re_han_default
_SENTENCE_END = re.compile(r"[。！？!?\n；;…]")
# Said right before a brand, these make it the better choice, not the target (还是华为好用, 早知道买格力了).
_PREFERRED = re.compile(
    r"(?:还是|早知道买|早知道选|早知道用|还不如买|不如买|不如|换到|换成|换了|改用|转投|幸好|还好买了|隔壁)$"
)
# 不是小米的问题: the brand is cleared, not blamed.
_CLEARED_BEFORE = re.compile(r"(?:不是|不怪|不关|与)$")
_CLEARED_AFTER = re.compile(r"^(?:的)?(?:问题|锅|责任|事|无关|官方|正品|生产)")
# A fake is the seller's fault: 在拼夕夕买的AirPods是高仿 blames 拼多多, not Apple. The seller is the brand
# bought from (在X买, X上买, X百亿补贴, X自营, X直播间).
_COUNTERFEIT = ("假货", "高仿", "山寨", "假的", "仿品", "盗版", "翻新机", "二手货", "矿卡")
_SELLER_AFTER = re.compile(r"^(?:上|买|的百亿|百亿|补贴|自营|旗舰店|店|商家|平台|直播间|卖)")
_BOUGHT = re.compile(r"(?:买的|买了|买个|入手的|入手了)$")
# An everyday word right after these is addressed or accused as a company (@小米, 避雷小米, 投诉苹果).
_ADDRESSED = re.compile(r"(?:@|避雷|投诉|曝光|抵制|起诉|举报)$")
# Two brands joined so (小米和华为, 小米、华为, 小米/华为, or side by side once a separator between them was
# dropped as an evasion: normalize) share what is said about them.
_COORDINATION = re.compile(r"^(?:和|与|跟|、|及|以及|还有|/|&|\+|\|)?$")
# A strong tag counts unless the brand's text is at least this positive; the no-tag path needs at most this.
_STRONG_MAX = 0.3
_NEGATIVE_POST_MAX = -0.3


def _same_kind(a: str, b: str) -> bool:
    """Two ASCII letters, or two digits, are one word; a letter next to a digit is a boundary (iphone15)."""
    return a.isascii() and b.isascii() and ((a.isalpha() and b.isalpha()) or (a.isdigit() and b.isdigit()))


def _lines(name: str) -> tuple[str, ...]:
    text = (resources.files("services.scoring") / "data" / name).read_text(encoding="utf-8")
    return tuple(t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#"))


@lru_cache(maxsize=1)
def _product_words() -> tuple[str, ...]:
    return tuple(normalize(t) for t in _lines("product_words.txt"))


def default_negatives() -> tuple[str, ...]:
    """The bundled negative-tag lexicon (负面标签), one term per line."""
    return _lines("negatives.txt")


def _yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (resources.files("services.scoring") / "data" / name).read_text(encoding="utf-8")
    )
    return data


@lru_cache(maxsize=1)
def _account_words() -> frozenset[str]:
    return frozenset(normalize(t) for t in (*_lines("product_words.txt"), *_lines("accounts.txt")))


@lru_cache(maxsize=1)
def _emoticons() -> tuple[str, ...]:
    return tuple(normalize(t) for kind in _yaml("emoticons.yaml").values() for t in kind)


@lru_cache(maxsize=1)
def _shipped() -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """(weak tags, harmless compounds, other brands, ambiguous-brand data), all normalised."""
    amb = _yaml("ambiguous.yaml")
    return (
        frozenset(normalize(t) for t in _lines("weak_tags.txt")),
        tuple(normalize(t) for t in _lines("compounds.txt")),
        tuple(normalize(t) for t in _lines("other_brands.txt")),
        {
            "generic": tuple(normalize(t) for t in amb["generic_cues"]),
            "generic_after": tuple(normalize(t) for t in amb["generic_after"]),
            "terms": {
                normalize(k): (
                    tuple(normalize(t) for t in v.get("cues", ())),
                    tuple(normalize(t) for t in v.get("after", ())),
                    tuple(normalize(t) for t in v.get("not", ())),
                )
                for k, v in amb["terms"].items()
            },
        },
    )


@dataclass(frozen=True)
class GroupMatch:
    group: str
    matches: tuple[TermMatch, ...]


@dataclass
class _Compiled:
    rule: RuleGroup
    brands: frozenset[str]
    negatives: frozenset[str]
    required: frozenset[str]
    excluded: tuple[str, ...]
    # ambiguous brand term -> (cues anywhere in the post, cues right after it, words vetoing it in its clause)
    ambiguous: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]


# An Aho-Corasick candidate: (start, end, word, owners, kinds).
_Candidate = tuple[int, int, str, tuple[tuple[int, str], ...], frozenset[str]]


class _Mention(NamedTuple):
    group: int  # -1: a brand that is no rule group's (other_brands.txt)
    term: str
    start: int
    end: int
    blameless: bool  # named as the better choice or cleared: takes no negative evidence
    bought: bool  # the thing bought (在拼多多买的AirPods): takes evidence from its own clause only


class _Evidence(NamedTuple):
    term: str
    start: int
    end: int
    polarity: int
    tag: str  # "strong", "weak", or "" for a sentiment word that is no tag


class _Text:
    """One post's normalised text and what the matcher looks up in it again and again: the clause around a
    span, and jieba's cuts of a clause. Made per post and dropped with it: nothing is shared across posts."""

    def __init__(self, norm: str, camel: frozenset[int], masked: tuple[tuple[int, int], ...]) -> None:
        self.norm = norm
        self.camel = camel  # offsets where the original's letter case marked a word boundary
        self.masked = masked  # the nicks of @mentions: no sentiment word in them is the poster's
        # Offsets of the clause-splitting characters, ascending: a clause is the run between two of them.
        self._splits = [m.start() for m in _CLAUSE_SPLIT.finditer(norm)]
        self.cuts: dict[tuple[int, int], frozenset[int]] = {}  # clause -> jieba's word boundaries in it
        self._topics: list[tuple[int, int]] | None = None

    def topics(self) -> list[tuple[int, int]]:
        """The spans of the hashtags' contents."""
        if self._topics is None:
            self._topics = hashtags(self.norm)
        return self._topics

    def clause(self, start: int, end: int) -> tuple[int, int]:
        """The clause around norm[start:end]: back from start and on from end to the nearest split."""
        i = bisect_left(self._splits, start)  # splits[i - 1] is the last one before start
        j = bisect_left(self._splits, end)  # splits[j] is the first one at or after end
        lo = self._splits[i - 1] + 1 if i else 0
        hi = self._splits[j] if j < len(self._splits) else len(self.norm)
        return lo, hi


_COMPOUND = "compound"
_OTHER = "other"
_ONLY_NEGATIVE = frozenset(("negative",))


@dataclass
class RuleMatcher:
    rules: RulesConfig
    negatives: tuple[str, ...] = field(default_factory=default_negatives)

    def __post_init__(self) -> None:
        weak, compounds, others, amb = _shipped()
        self._weak = weak
        self._groups: list[_Compiled] = []
        self._tokenizer = jieba.Tokenizer()
        terms: dict[str, list[tuple[int, str]]] = {}
        for gi, rule in enumerate(self.rules.groups):
            brands = frozenset(normalize(t) for t in rule.brands)
            declared = {normalize(t) for t in rule.ambiguous}
            ambiguous = {}
            for b in brands:
                if b in amb["terms"] or b in declared:
                    cues, after, veto = amb["terms"].get(b, ((), (), ()))
                    # 小米汽车, 星河电器 among the group's brands make 汽车 and 电器 cues for bare 小米, 星河.
                    endings = tuple(o[len(b) :] for o in brands if o != b and o.startswith(b))
                    anywhere = (*cues, *endings, *amb["generic"])
                    ambiguous[b] = (anywhere, (*anywhere, *after, *amb["generic_after"]), veto)
            c = _Compiled(
                rule=rule,
                brands=brands,
                negatives=frozenset(
                    normalize(t)
                    for t in (*(self.negatives if rule.default_negatives else ()), *(rule.negatives or ()))
                ),
                required=frozenset(normalize(t) for t in rule.required),
                excluded=tuple(normalize(t) for t in rule.excluded),
                ambiguous=ambiguous,
            )
            self._groups.append(c)
            for kind, words in (("brand", c.brands), ("negative", c.negatives), ("required", c.required)):
                for w in words:
                    terms.setdefault(w, []).append((gi, kind))
        brand_terms = {w for w, owners in terms.items() if any(k == "brand" for _, k in owners)}
        for w in others:
            if w not in brand_terms:
                terms.setdefault(w, []).append((-1, _OTHER))
        # Who a nick made of these names (and account words) belongs to: @小米公司, @华为终端.
        self._names = {
            w: frozenset(gi for gi, k in owners if k == "brand" or k == _OTHER)
            for w, owners in terms.items()
            if any(k == "brand" or k == _OTHER for _, k in owners)
        }
        self._account_words = _account_words()
        entries: dict[str, tuple[str, tuple[tuple[int, str], ...], frozenset[str]]] = {}
        for word, owners in terms.items():
            entries[word] = (word, tuple(owners), frozenset(k for _, k in owners))
            # Known to jieba, so it is cut as one word wherever a longer dictionary word does not win.
            self._tokenizer.add_word(word)
        for word in compounds:
            if word not in terms:
                entries[word] = (word, ((-1, _COMPOUND),), frozenset((_COMPOUND,)))
                # After the brands: the frequency jieba suggests then beats 小米 + 椒.
                self._tokenizer.add_word(word)
        for word in _emoticons():
            # A word inside an emoticon is not the post's ([吃惊] is no 吃惊, whatever a group's tags). jieba
            # is not taught them: brackets end its blocks anyway.
            entries.setdefault(word, (word, ((-1, _COMPOUND),), frozenset((_COMPOUND,))))
        self._automaton = Automaton(entries)
        self._tokenizer.initialize()
        self._split_product_names({*brand_terms, *others}, set(compounds))
        self.version = hashlib.sha256(
            f"{self.rules.version}|{sorted(terms)}|{sorted({*compounds, *_emoticons()})}".encode()
        ).hexdigest()[:12]

    def _split_product_names(self, brands: set[str], compounds: set[str]) -> None:
        """Take 格力空调-like names (a brand and a product or company word, product_words.txt) out of jieba's
        dictionary, so that the brand inside them is on a word boundary."""
        freq = self._tokenizer.FREQ
        for word in {b + p for b in brands for p in _product_words()}:
            if freq.get(word) and word not in compounds:
                self._tokenizer.del_word(word)

    def negatives_of(self, group: str) -> frozenset[str]:
        """The normalised negative tags a group matches: bundled and its own."""
        return next(c.negatives for c in self._groups if c.rule.name == group)

    def match(self, text: str) -> list[GroupMatch]:
        """Every rule group whose brand the text complains about, with the confirmed term spans in normalised
        text: the brand mentions, the negative evidence attributed to them, and any required word."""
        norm, camel, ends = normalize_marked(text)
        if not norm or len(self._automaton) == 0:
            return []
        # Owners can be every group for a shared tag, so test kinds.
        found: list[_Candidate] = [
            (start, end, w, o, k) for start, end, (w, o, k) in self._automaton.find(norm)
        ]
        if not any("brand" in f[4] for f in found):
            return []
        masked: tuple[tuple[int, int], ...] = ()
        named: set[int] = set()  # starts of brand terms in the nick of the brand's own account
        if "@" in norm and (spans := nicks(norm, ends)):
            masked = tuple(spans)
            found = self._outside_nicks(norm, found, spans, named)
            if not any("brand" in f[4] for f in found):
                return []
        if not any("negative" in f[4] for f in found) and not any(q.polarity < 0 for q in read(norm, masked)):
            # No tag and no grievance word: no group can get negative evidence, so none can hit whatever
            # the brand checks below would find. Skipping them spares jieba on neutral brand mentions.
            return []
        compounds = [(f[0], f[1]) for f in found if _COMPOUND in f[4]]
        t = _Text(norm, camel, masked)
        mentions: list[_Mention] = []
        required: dict[int, list[TermMatch]] = {}
        in_compound = _inside_longer(compounds)
        found = [f for f in found if _COMPOUND not in f[4] and not in_compound(f[0], f[1])]
        for start, end, word, owners, kinds in found:
            if kinds == _ONLY_NEGATIVE:
                continue
            if start not in named and not self._on_boundaries(t, start, end, strict=True):
                continue
            for gi, kind in owners:
                if kind == "brand" or kind == _OTHER:
                    bought = bool(_BOUGHT.search(norm[max(0, start - 3) : start]))
                    mentions.append(_Mention(gi, word, start, end, _blameless(t, start, end), bought))
                elif kind == "required":
                    required.setdefault(gi, []).append(
                        TermMatch(term=word, kind="required", start=start, end=end)
                    )
        tags_at: dict[int, list[tuple[int, str]]] = {}  # start -> (end, tag) of every candidate tag
        if "#" in norm:
            for start, end, word, _, kinds in found:
                if "negative" in kinds:
                    tags_at.setdefault(start, []).append((end, word))
        mentions = self._accepted(_outermost(mentions), t, named, tags_at)
        if not any(m.group >= 0 for m in mentions):
            return []
        tags = {  # span -> term, tags of any group
            (start, end): word
            for start, end, word, _, kinds in found
            if "negative" in kinds and self._on_boundaries(t, start, end, strict=False)
        }
        # 维权 inside 集体维权 is the same evidence: keep the longest.
        in_longer = _inside_longer(tags)
        tags = {k: w for k, w in tags.items() if not in_longer(*k)}
        return self._decide(t, mentions, tags, required)

    def _decide(
        self,
        t: _Text,
        mentions: list[_Mention],
        tags: dict[tuple[int, int], str],
        required: dict[int, list[TermMatch]],
    ) -> list[GroupMatch]:
        norm = t.norm
        cues = read(norm, t.masked)
        by_span = {(c.start, c.end): c for c in cues}
        single = len({m.group for m in mentions}) == 1 and not any(m.blameless for m in mentions)
        result = []
        for gi in dict.fromkeys(m.group for m in mentions if m.group >= 0):
            c = self._groups[gi]
            own = [m for m in mentions if m.group == gi]
            if all(m.blameless for m in own):
                continue
            evidence: list[_Evidence] = []
            for (start, end), word in tags.items():
                if word not in c.negatives or stance(norm, start, end) < 1:
                    continue
                cue = by_span.get((start, end))
                if cue is not None and cue.polarity > 0:
                    continue
                evidence.append(_Evidence(word, start, end, -1, "weak" if word in self._weak else "strong"))
            tagged = {(e.start, e.end) for e in evidence}
            evidence += [
                _Evidence(q.term, q.start, q.end, q.polarity, "")
                for q in cues
                if (q.start, q.end) not in tagged
            ]
            # One brand named (the usual post) leaves nothing to attribute.
            mine = evidence if single else [e for e in evidence if gi in _owners(t, e, mentions)]
            scored = [e for e in mine if e.tag != "weak"]
            score = sum(e.polarity for e in scored) / len(scored) if scored else 0.0
            negative = [e for e in mine if e.polarity < 0]
            hit = (
                (any(e.tag == "strong" for e in negative) and score < _STRONG_MAX)
                or (any(e.tag == "weak" for e in negative) and score < -NEUTRAL_BAND)
                or (c.rule.negative_posts and bool(negative) and score <= _NEGATIVE_POST_MAX)
            )
            if not hit or not self._satisfies(c, own, negative, required.get(gi, []), norm):
                continue
            brand_matches = [TermMatch(term=m.term, kind="brand", start=m.start, end=m.end) for m in own]
            neg_matches = [
                TermMatch(term=e.term, kind="negative", start=e.start, end=e.end) for e in negative
            ]
            matches = sorted(
                [*brand_matches, *neg_matches, *required.get(gi, [])], key=lambda t: (t.start, t.end)
            )
            result.append(GroupMatch(group=c.rule.name, matches=tuple(matches)))
        return result

    def _outside_nicks(
        self,
        norm: str,
        found: list[_Candidate],
        spans: list[tuple[int, int]],
        named: set[int],
    ) -> list[_Candidate]:
        """The candidates outside the nicks of @mentions, and the brand names inside a nick that is the
        brand's own account (@小米公司, @华为终端, @AppleSupport), whose starts go to `named`. Nothing else
        in a nick is the poster's: @华为粉丝小王 names no brand, @避雷小分队 makes no complaint."""
        accounts = {span for span in spans if self._account(norm[span[0] : span[1]])}
        out = []
        for f in found:
            span = inside(f[0], f[1], spans)
            if span is None:
                out.append(f)
            elif span in accounts and ("brand" in f[4] or _OTHER in f[4]):
                out.append((f[0], f[1], f[2], f[3], f[4] - _ONLY_NEGATIVE))
                named.add(f[0])
        return out

    def _account(self, nick: str) -> bool:
        """The nick is one brand's names and account words only: 小米公司, 华为终端, redmi红米手机."""
        names, words = self._names, self._account_words
        # Depth-first over (offset, owners so far); a nick is short, so this is a few dozen lookups.
        todo: list[tuple[int, frozenset[int] | None]] = [(0, None)]
        seen: set[tuple[int, frozenset[int] | None]] = set()
        while todo:
            at, owners = todo.pop()
            if at == len(nick):
                if owners:
                    return True
                continue
            for stop in range(at + 1, min(len(nick), at + 16) + 1):
                piece = nick[at:stop]
                nxt: frozenset[int] | None
                if piece in names:
                    nxt = names[piece] if owners is None else owners & names[piece]
                    if not nxt:
                        continue
                elif piece in words:
                    nxt = owners
                else:
                    continue
                if (stop, nxt) not in seen:
                    seen.add((stop, nxt))
                    todo.append((stop, nxt))
        return False

    def _accepted(
        self,
        mentions: list[_Mention],
        t: _Text,
        named: set[int],
        tags_at: dict[int, list[tuple[int, str]]],
    ) -> list[_Mention]:
        """Drop ambiguous brand words (苹果 the fruit) that the post gives no sign of meaning as the brand."""
        norm = t.norm
        plain = [m for m in mentions if m.group < 0 or m.term not in self._groups[m.group].ambiguous]
        if len(plain) == len(mentions):
            return list(mentions)  # no everyday word among them: all kept, as the loop below would
        plain_groups = {m.group for m in plain}
        everyday: dict[tuple[int, str], bool] = {}  # for _tagged_topic
        out = []
        for m in mentions:
            if m.group < 0 or m.group in plain_groups or m.start in named:
                out.append(m)
                continue
            if _ADDRESSED.search(norm[max(0, m.start - 3) : m.start]) or any(
                _COORDINATION.match(norm[min(m.end, o.end) : max(m.start, o.start)]) for o in plain
            ):
                out.append(m)  # @小米, 避雷小米, 星河电器和小米: named as a company
                continue
            cues, adjacent, veto = self._groups[m.group].ambiguous[m.term]
            after = norm[m.end : m.end + 6].removeprefix("的")
            if (after[:1].isascii() and after[:1].isalnum()) or after.startswith(adjacent):
                out.append(m)  # 苹果15, 小米su7, 苹果官网, 小米的售后
                continue
            lo, hi = t.clause(m.start, m.end)
            if any(v in norm[lo:hi] for v in veto):
                continue
            if any(cue in norm for cue in cues) or self._tagged_topic(m, t, tags_at, mentions, everyday):
                out.append(m)
        return out

    def _tagged_topic(
        self,
        m: _Mention,
        t: _Text,
        tags_at: dict[int, list[tuple[int, str]]],
        mentions: list[_Mention],
        everyday: dict[tuple[int, str], bool],
    ) -> bool:
        """#小米差评#, #苹果避雷#: in a hashtag, an everyday word followed at once by a tag names the brand,
        unless the post uses the same word in its everyday sense elsewhere (#苹果避雷# 水果店的苹果打了蜡).
        `everyday` remembers that answer per word for the post."""
        if m.end not in tags_at:
            return False
        topic = inside(m.start, m.end, t.topics())
        negatives = self._groups[m.group].negatives
        if topic is None or not any(end <= topic[1] and w in negatives for end, w in tags_at[m.end]):
            return False
        key = (m.group, m.term)
        if key not in everyday:
            veto = self._groups[m.group].ambiguous[m.term][2]
            everyday[key] = any(
                o.term == m.term and any(v in t.norm[slice(*t.clause(o.start, o.end))] for v in veto)
                for o in mentions
            )
        return not everyday[key]

    def _on_boundaries(self, t: _Text, start: int, end: int, strict: bool) -> bool:
        """Strict: both ends on jieba cuts. Else one end will do (虚标 in 虚/标的, 中毒 in 食物中毒)."""
        # jieba splits an unknown Latin word around a known one (apple in pineapple): letters decide there,
        # unless the original's case marked a boundary (MacBookPro).
        text, camel = t.norm, t.camel
        if start > 0 and start not in camel and _same_kind(text[start - 1], text[start]):
            return False
        if end < len(text) and end not in camel and _same_kind(text[end - 1], text[end]):
            return False
        lo, hi = t.clause(start, end)
        # A clause edge is a boundary whatever jieba says: no need to cut the clause to know that.
        if (start == lo or start in camel) and (end == hi or end in camel):
            return True
        if not strict and (start == lo or end == hi):
            return True
        marks = t.cuts.get((lo, hi))
        if marks is None:
            acc = {lo, hi, *(c for c in camel if lo < c < hi)}
            acc.update(lo + e for e in _jieba_ends(self._tokenizer, text[lo:hi]))
            marks = t.cuts[(lo, hi)] = frozenset(acc)
        if strict:
            return start in marks and end in marks
        return start in marks or end in marks

    @staticmethod
    def _satisfies(
        c: _Compiled, brands: list[_Mention], negative: list[_Evidence], required: list[TermMatch], norm: str
    ) -> bool:
        if c.required and not required:
            return False
        if any(x in norm for x in c.excluded):
            return False
        if c.rule.proximity is not None:
            limit = c.rule.proximity
            return any(
                max(b.start, n.start) - min(b.end, n.end) <= limit
                for b in brands
                if not b.blameless
                for n in negative
            )
        return True


def _jieba_ends(tokenizer: jieba.Tokenizer, sentence: str) -> list[int]:
    """The offsets where the words of tokenizer.cut(sentence, HMM=True) end, ascending.

    A clause of Han characters, Latin letters and digits (the usual one) is a single block to jieba's cut,
    which then runs its DAG cutter on it: that is done here step for step (the same dictionary, the same
    sums in the same order, the same tie-break), without its generators, tuples and dict of lists. Any other
    clause goes to jieba itself."""
    if _JIEBA_BLOCK.fullmatch(sentence) is None:
        ends, at = [], 0
        for token in tokenizer.cut(sentence, HMM=True):
            at += len(token)
            ends.append(at)
        return ends
    freq: dict[str, int] = tokenizer.FREQ
    after = _jieba_route(freq, tokenizer.total, sentence)
    # jieba collects runs of one-character words (its buf) and decides on each run as a whole.
    ends = []
    run = x = 0
    while x < len(sentence):
        y = after[x]
        if y - x > 1:
            _jieba_run(freq, sentence, run, x, ends)
            ends.append(y)
            run = y
        x = y
    _jieba_run(freq, sentence, run, len(sentence), ends)
    return ends


def _jieba_route(freq: dict[str, int], total: int, sentence: str) -> list[int]:
    """jieba's get_DAG and calc in one pass: after[i] is where the best-scoring word starting at i ends.

    Scores are log frequencies summed from the right, as in calc; among equal scores calc's max over
    (score, end) tuples takes the later end, hence >= over ascending ends."""
    n = len(sentence)
    logtotal = math.log(total)
    score = [0.0] * (n + 1)
    after = [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        best, best_end = -math.inf, -1
        i, frag = k, sentence[k]
        while i < n and frag in freq:  # freq holds every prefix of a word, with 0 for a mere prefix
            f = freq[frag]
            if f:
                s = math.log(f) - logtotal + score[i + 1]
                if s >= best:
                    best, best_end = s, i
            i += 1
            frag = sentence[k : i + 1]
        if best_end < 0:  # no word starts here: the character alone, as get_DAG's fallback
            best, best_end = math.log(freq.get(sentence[k]) or 1) - logtotal + score[k + 1], k
        score[k], after[k] = best, best_end + 1
    return after


def _jieba_run(freq: dict[str, int], sentence: str, lo: int, hi: int, ends: list[int]) -> None:
    """jieba's handling of a run sentence[lo:hi] of one-character words: a run the dictionary knows stays
    cut into characters, an unknown run of two or more goes to the HMM (finalseg)."""
    if hi - lo > 1 and not freq.get(sentence[lo:hi]):
        at = lo
        for token in jieba.finalseg.cut(sentence[lo:hi]):
            at += len(token)
            ends.append(at)
    else:
        ends.extend(range(lo + 1, hi + 1))


def _inside_longer(spans: Iterable[tuple[int, int]]) -> Callable[[int, int], bool]:
    """A test of whether (start, end) lies inside a longer one of `spans`. Each test is a binary search, so
    checking every candidate of a post against every other stays O(n log n): a hostile post naming a brand
    and a tag thousands of times must not cost seconds."""
    reach_at: dict[int, int] = {}  # start -> the furthest end of a span starting there
    for s, e in spans:
        if e > reach_at.get(s, -1):
            reach_at[s] = e
    starts = sorted(reach_at)
    reach = list(accumulate((reach_at[s] for s in starts), max))  # furthest end of the spans up to here

    def inside(start: int, end: int) -> bool:
        i = bisect_left(starts, start)  # spans [0, i) start before `start`: reaching `end` makes them longer
        return (i > 0 and reach[i - 1] >= end) or reach_at.get(start, -1) > end

    return inside


def _outermost(mentions: list[_Mention]) -> list[_Mention]:
    """小米 inside 小米手机 is the same mention: keep the longest."""
    if len(mentions) < 2:  # the usual post names its brand once
        return list(mentions)
    in_longer = _inside_longer((m.start, m.end) for m in mentions)
    return [m for m in mentions if not in_longer(m.start, m.end)]


def _blameless(t: _Text, start: int, end: int) -> bool:
    norm = t.norm
    lo, _ = t.clause(start, end)
    before = norm[max(lo, start - 6) : start]
    if _PREFERRED.search(before):
        return True
    return bool(_CLEARED_BEFORE.search(before) and _CLEARED_AFTER.match(norm[end : end + 4]))


def _owners(t: _Text, e: _Evidence, mentions: list[_Mention]) -> set[int]:
    """The group(s) a piece of evidence is about: those of the brand mention(s) it is about. A brand term
    that several groups watch (two teams on one brand) is one mention per group at the same place, and
    each of them is owed the evidence."""
    pool = [m for m in mentions if not (e.polarity < 0 and m.blameless)]
    places = {(m.start, m.end) for m in _owning(t, e, pool)}
    return {m.group for m in pool if (m.start, m.end) in places}


def _owning(t: _Text, e: _Evidence, pool: list[_Mention]) -> set[_Mention]:
    """The mention(s) in `pool` a piece of evidence is about: the nearest brand in its clause (two brands
    joined by 和/、 share it), else the last brand named before it in its sentence, else before it in the
    post, else the first after it. Negative evidence skips blameless mentions; praise may go to them."""
    norm = t.norm
    if not pool:
        return set()
    if e.term in _COUNTERFEIT:
        sellers = [
            m
            for m in pool
            if _SELLER_AFTER.match(norm[m.end : m.end + 4]) or norm[m.start - 1 : m.start] == "在"
        ]
        if sellers:
            return {min(sellers, key=lambda m: abs(m.start - e.start))}
    lo, hi = t.clause(e.start, e.end)
    near = [m for m in pool if lo <= m.start < hi]
    if near:

        def gap(m: _Mention) -> tuple[int, int]:
            return (max(m.start - e.end, e.start - m.end, 0), m.start > e.start)

        near.sort(key=gap)
        best = near[0]
        out = {best}
        for m in near[1:]:
            a, b = (best, m) if best.end <= m.start else (m, best)
            if _COORDINATION.match(norm[a.end : b.start]):
                out.add(m)
        return out
    # Beyond its own clause, a complaint is about where it was bought rather than what (在拼多多买的AirPods
    # 是高仿，找客服就是机器人回复).
    pool = [m for m in pool if not m.bought] or pool
    sentence_lo = e.start
    while sentence_lo > 0 and not _SENTENCE_END.match(norm[sentence_lo - 1]):
        sentence_lo -= 1
    before = [m for m in pool if m.end <= e.start]
    in_sentence = [m for m in before if m.start >= sentence_lo]
    if in_sentence or before:
        last = max(in_sentence or before, key=lambda m: m.start)
        # 苹果和华为都被消协点名，售后问题一大堆: what follows two joined brands is about both.
        joined = [m for m in pool if m.end <= last.start and _COORDINATION.match(norm[m.end : last.start])]
        return {last, *joined}
    return {min(pool, key=lambda m: m.start)}
