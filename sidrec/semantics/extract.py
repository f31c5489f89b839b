"""The offline sensory extractor (no model): lexicon + cue patterns, aggregated per item over its texts.

ASEGR's teacher is an instruction LLM (:mod:`sidrec.semantics.teacher`); this extractor is the default teacher
that runs anywhere. Each text (title, description, every review) yields *mentions* ``(facet, value, weight)``:

- a **cued** mention names the facet explicitly (``"scent: vanilla"``, ``"the vanilla scent"``, ``"made of
  wool"``, ``"tastes sweet"``): weight 2;
- a **bare** mention is a lexicon phrase without a cue (``"Lumen Vanilla Ivory Candle"``): weight 1. Its facet is
  the one the same value was cued with in this item's texts, else the one it is most often cued with across the
  whole corpus (a value such as ``"warm"`` is a sound in a headphone catalogue), else the lexicon's default.

Per item, the mentions are summed per (facet, value); a facet is selected when its best value reaches
``min_score``, and up to ``max_values`` values within ``rel_score`` of the best are kept.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sidrec.facets import FACET_NAMES
from sidrec.semantics.lexicon import (
    CONCRETE_FACETS,
    CUE_PATTERNS,
    CUE_WORDS,
    OPEN_VOCAB_FACETS,
    STOP_PHRASES,
    STOPWORDS,
    TRAILING_CUES,
    lexicon_index,
    normalise_value,
)

CUED_WEIGHT = 2.0
BARE_WEIGHT = 1.0

Attributes = dict[str, list[str]]  # facet -> values, best first


def read_sensory_jsonl(path: str | Path) -> dict[str, Attributes]:
    """``item_id -> {facet: [values]}`` from a sensory.jsonl file: lines ``{"item_id", "attributes": {facet:
    [values] | value}}`` (what the semantics stage writes) or ``{"item_id", "pairs": [[facet, value], ...]}``.
    Invalid JSON or a line without ``item_id`` raises an InputError naming the file and line."""
    from sidrec.artifacts import read_jsonl
    from sidrec.errors import InputError

    out: dict[str, Attributes] = {}
    for line_no, obj in read_jsonl(path):
        if not isinstance(obj, dict) or "item_id" not in obj:
            raise InputError("expected a JSON object with 'item_id'", path, line_no)
        attrs: Attributes = {}
        raw = obj.get("attributes") or {}
        if isinstance(raw, dict):
            for facet, v in raw.items():
                attrs[str(facet)] = [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
        for pair in obj.get("pairs") or []:
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                attrs.setdefault(str(pair[0]), []).append(str(pair[1]))
        out[str(obj["item_id"])] = attrs
    return out


@dataclass(frozen=True)
class Mention:
    facet: str
    value: str
    cued: bool


@dataclass
class ItemTexts:
    """The texts of one item the extractor reads: title, description and reviews."""

    item_id: str
    title: str = ""
    description: str = ""
    reviews: list[str] = field(default_factory=list)

    def units(self) -> list[str]:
        return [t for t in (self.title, self.description, *self.reviews) if t]


_WORD_RE = re.compile(r"[a-z0-9][a-z0-9\-'/.]*[a-z0-9]|[a-z0-9]")


class LexiconExtractor:
    """Offline teacher: finds facet-value mentions in text and aggregates them per item.

    ``extract_corpus(items)`` returns ``{item_id: {facet: [values]}}``; see the module docstring for the rules.
    """

    def __init__(self, min_score: float = 1.0, max_values: int = 1, rel_score: float = 0.5):
        self.min_score = min_score
        self.max_values = max_values
        self.rel_score = rel_score
        self.lexicon = lexicon_index()
        phrases = sorted(self.lexicon, key=len, reverse=True)
        self._lexicon_re = re.compile(r"(?<![a-z0-9\-])(" + "|".join(re.escape(p) for p in phrases) +
                                      r")(?![a-z0-9\-])")
        self._stop_re = re.compile(r"\b(" + "|".join(re.escape(p) for p in STOP_PHRASES) + r")\b")
        cue_alt = "|".join(sorted({w for ws in CUE_WORDS.values() for w in ws}, key=len, reverse=True))
        self._cue_of = {w: f for f, ws in CUE_WORDS.items() for w in ws}
        self._patterns = [(facet, re.compile(p.replace("{cues}", cue_alt))) for facet, p in CUE_PATTERNS]

    # ---- one text -> mentions -------------------------------------------------------------------------------
    def _clean_value(self, phrase: str, facet: str, from_end: bool) -> str | None:
        """Trim a captured phrase to a value: cut at stopwords, prefer a lexicon phrase, else open vocabulary."""
        words = phrase.split()
        if from_end:
            words = words[::-1]
        kept = []
        for w in words:
            if w in STOPWORDS or w in self._cue_of:
                break
            kept.append(w)
        if from_end:
            kept = kept[::-1]
        if not kept:
            return None
        # Longest lexicon phrase anchored at the cue side. A cue may move a word to another facet ("lavender
        # colour", "warm sound"), but not into the concrete facets: "cooling capacity" is no size and "thick
        # material" no material.
        for n in range(len(kept), 0, -1):
            cand = normalise_value(" ".join(kept[-n:] if from_end else kept[:n]))
            if cand in self.lexicon:
                return None if facet in CONCRETE_FACETS and self.lexicon[cand] != facet else cand
        if facet == "size":
            return normalise_value(" ".join(kept)) if re.match(r"\d", kept[0]) else None
        if facet not in OPEN_VOCAB_FACETS:
            return None
        cand = normalise_value(" ".join(kept[-2:] if from_end else kept[:2]))
        if len(cand) < 3 or cand.isdigit() or "/" in cand:
            return None
        return cand

    def mentions(self, text: str) -> list[Mention]:
        """All facet-value mentions in one text (cued first, then bare lexicon hits outside cued spans)."""
        low = self._stop_re.sub(lambda m: " " * len(m.group(0)), text.lower())
        out: list[Mention] = []
        covered: list[tuple[int, int]] = []
        for fixed_facet, pattern in self._patterns:
            for m in pattern.finditer(low):
                facet = fixed_facet or self._cue_of.get(m.group("cue"))
                if facet is None:
                    continue
                value = self._clean_value(m.group("value"), facet, from_end=False)
                if value:
                    out.append(Mention(facet, value, True))
                    covered.append(m.span("value"))
        # Trailing cues: "... the [blush pink] color", "[matte] finish".
        for sentence in re.split(r"[.!?;,:()\[\]\n]", low):
            words = _WORD_RE.findall(sentence)
            for i, w in enumerate(words):
                facet = TRAILING_CUES.get(w)
                if facet is None or i == 0:
                    continue
                value = self._clean_value(" ".join(words[max(0, i - 3):i]), facet, from_end=True)
                if value:
                    out.append(Mention(facet, value, True))
        cued_values = {m.value for m in out}
        for m in self._lexicon_re.finditer(low):
            if any(a <= m.start() < b for a, b in covered):
                continue
            value = normalise_value(m.group(1))
            if value in cued_values:
                continue  # already counted with its cue in this text
            out.append(Mention(self.lexicon[value], value, False))
        return out

    # ---- corpus -> attributes -------------------------------------------------------------------------------
    def extract_corpus(self, items: Sequence[ItemTexts]) -> dict[str, Attributes]:
        """Extract and aggregate attributes for every item; bare mentions are re-assigned to the corpus's facets."""
        per_item = [[m for text in it.units() for m in self.mentions(text)] for it in items]
        corpus_facet: dict[str, Counter] = defaultdict(Counter)
        for mentions in per_item:
            for m in mentions:
                if m.cued:
                    corpus_facet[m.value][m.facet] += 1
        return {it.item_id: self.aggregate(mentions, corpus_facet) for it, mentions in zip(items, per_item)}

    def aggregate(self, mentions: Iterable[Mention], corpus_facet: dict[str, Counter] | None = None) -> Attributes:
        """Sum mention weights per (facet, value); keep facets whose best value reaches ``min_score``."""
        mentions = list(mentions)
        item_facet: dict[str, Counter] = defaultdict(Counter)
        for m in mentions:
            if m.cued:
                item_facet[m.value][m.facet] += 1
        scores: dict[str, Counter] = defaultdict(Counter)
        for m in mentions:
            facet = m.facet
            if not m.cued:
                if m.value in item_facet:
                    facet = item_facet[m.value].most_common(1)[0][0]
                elif corpus_facet and sum(corpus_facet.get(m.value, Counter()).values()) >= 2:
                    facet = corpus_facet[m.value].most_common(1)[0][0]
            scores[facet][m.value] += CUED_WEIGHT if m.cued else BARE_WEIGHT
        return select_attributes(scores, self.min_score, self.max_values, self.rel_score)


def select_attributes(scores: dict[str, Counter], min_score: float, max_values: int, rel_score: float) -> Attributes:
    """Keep facets whose best value scores at least ``min_score``; per facet up to ``max_values`` values scoring
    at least ``rel_score`` x the best. Facets come out in schema order, values best first."""
    out: Attributes = {}
    for facet in FACET_NAMES:
        ranked = scores.get(facet, Counter()).most_common()
        if not ranked or ranked[0][1] < min_score:
            continue
        best = ranked[0][1]
        out[facet] = [v for v, s in ranked[:max_values] if s >= rel_score * best]
    return out
