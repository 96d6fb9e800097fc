"""Rule matching: Aho-Corasick finds candidate terms, jieba confirms each one sits on word boundaries.

A brand inside a longer word is not a hit: 小米 in 小米粥, 避雷 in 避雷针. jieba runs only on the clause
around a candidate, not the whole post.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from importlib import resources

import ahocorasick
import jieba

from schemas.events import TermMatch
from services.common.config import RuleGroup, RulesConfig
from services.scoring.normalize import normalize

__all__ = ["GroupMatch", "RuleMatcher", "default_negatives"]

jieba.setLogLevel(logging.WARNING)

# Clause delimiters: punctuation (ASCII, CJK, full-width), newlines, emoji and other symbols.
_CLAUSE_SPLIT = re.compile(r"[^\w]+")


def _same_kind(a: str, b: str) -> bool:
    """Two ASCII letters, or two digits, are one word; a letter next to a digit is a boundary (iphone15)."""
    return a.isascii() and b.isascii() and ((a.isalpha() and b.isalpha()) or (a.isdigit() and b.isdigit()))


def default_negatives() -> tuple[str, ...]:
    """The bundled negative-tag lexicon (负面标签), one term per line."""
    text = (resources.files("services.scoring") / "data" / "negatives.txt").read_text(encoding="utf-8")
    return tuple(t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#"))


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


@dataclass
class RuleMatcher:
    rules: RulesConfig
    negatives: tuple[str, ...] = field(default_factory=default_negatives)

    def __post_init__(self) -> None:
        self._groups: list[_Compiled] = []
        self._automaton = ahocorasick.Automaton()
        self._tokenizer = jieba.Tokenizer()
        terms: dict[str, list[tuple[int, str]]] = {}
        for gi, rule in enumerate(self.rules.groups):
            c = _Compiled(
                rule=rule,
                brands=frozenset(normalize(t) for t in rule.brands),
                negatives=frozenset(normalize(t) for t in (rule.negatives or self.negatives)),
                required=frozenset(normalize(t) for t in rule.required),
                excluded=tuple(normalize(t) for t in rule.excluded),
            )
            self._groups.append(c)
            for kind, words in (("brand", c.brands), ("negative", c.negatives), ("required", c.required)):
                for w in words:
                    terms.setdefault(w, []).append((gi, kind))
        for word, owners in terms.items():
            self._automaton.add_word(word, (word, tuple(owners)))
            # Known to jieba, so it is cut as one word wherever a longer dictionary word does not win.
            self._tokenizer.add_word(word)
        self._automaton.make_automaton()
        self._tokenizer.initialize()
        self.version = hashlib.sha256(f"{self.rules.version}|{sorted(terms)}".encode()).hexdigest()[:12]

    @property
    def term_count(self) -> int:
        return len(self._automaton)

    def match(self, text: str) -> list[GroupMatch]:
        """Every rule group the text satisfies, with the confirmed term spans in normalised text.

        Only groups whose brand was found are evaluated, so the cost follows the candidates in the
        text, not the number of groups sharing the negative lexicon.
        """
        norm = normalize(text)
        if not norm or len(self._automaton) == 0:
            return []
        confirmed: list[tuple[str, int, int]] = []
        brand_groups: dict[int, None] = {}
        boundaries: dict[tuple[int, int], frozenset[int]] = {}
        for end_idx, (word, owners) in self._automaton.iter(norm):
            start, end = end_idx - len(word) + 1, end_idx + 1
            if not self._on_boundaries(norm, start, end, boundaries):
                continue
            confirmed.append((word, start, end))
            for gi, kind in owners:
                if kind == "brand":
                    brand_groups[gi] = None
        result = []
        for gi in brand_groups:
            c = self._groups[gi]
            matches = [
                TermMatch(term=w, kind=kind, start=st, end=en)
                for w, st, en in confirmed
                for kind, words in (("brand", c.brands), ("negative", c.negatives), ("required", c.required))
                if w in words
            ]
            if self._satisfies(c, matches, norm):
                result.append(GroupMatch(group=c.rule.name, matches=tuple(matches)))
        return result

    def _on_boundaries(
        self, text: str, start: int, end: int, cache: dict[tuple[int, int], frozenset[int]]
    ) -> bool:
        # jieba splits an unknown Latin word around a known one (apple in pineapple): letters decide there.
        if start > 0 and _same_kind(text[start - 1], text[start]):
            return False
        if end < len(text) and _same_kind(text[end - 1], text[end]):
            return False
        lo, hi = self._clause(text, start, end)
        cuts = cache.get((lo, hi))
        if cuts is None:
            pos, marks = lo, {lo}
            for token in self._tokenizer.cut(text[lo:hi], HMM=True):
                pos += len(token)
                marks.add(pos)
            cuts = cache[(lo, hi)] = frozenset(marks)
        return start in cuts and end in cuts

    @staticmethod
    def _clause(text: str, start: int, end: int) -> tuple[int, int]:
        lo = start
        while lo > 0 and not _CLAUSE_SPLIT.match(text[lo - 1]):
            lo -= 1
        hi = end
        while hi < len(text) and not _CLAUSE_SPLIT.match(text[hi]):
            hi += 1
        return lo, hi

    @staticmethod
    def _satisfies(c: _Compiled, matches: list[TermMatch], norm: str) -> bool:
        brands = [m for m in matches if m.kind == "brand"]
        negatives = [m for m in matches if m.kind == "negative"]
        if not brands or not negatives:
            return False
        if c.required and not any(m.kind == "required" for m in matches):
            return False
        if any(x in norm for x in c.excluded):
            return False
        if c.rule.proximity is not None:
            limit = c.rule.proximity
            return any(max(b.start, n.start) - min(b.end, n.end) <= limit for b in brands for n in negatives)
        return True
