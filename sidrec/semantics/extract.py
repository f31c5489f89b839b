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
    AFTER_CUE,
    CLAUSE_BREAKS,
    COLOR_MODIFIERS,
    CONCRETE_FACETS,
    CONTEXT_WORDS,
    CUE_PATTERNS,
    CUE_WORDS,
    FREE_OF,
    INTENSIFIERS,
    NEEDS_CONTEXT,
    NEGATION_SCOPE,
    NEGATORS,
    OPEN_VOCAB_FACETS,
    OTHER_NOUNS,
    PLEASANT,
    QUANTITY_RE,
    QUANTITY_UNIT_RE,
    RATING_WORDS,
    SCENT_MODIFIERS,
    SENSES,
    STOP_PHRASES,
    STOPWORDS,
    SUBJECTS_AND_AUXILIARIES,
    TITLE_OK,
    TRAILING_CUES,
    UNPLEASANT,
    VERB_COMPLEMENTS,
    VERB_HOMOGRAPHS,
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


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:['\-/.][a-z0-9]+)*(?:n't)?")
_CLAUSE_PUNCT_RE = re.compile(r"[!?;,:()\[\]\n]|\.(?!\d)")
_SENTENCE_PUNCT_RE = re.compile(r"[!?;\n]|\.(?!\d)")
_FREE_OF_RE = re.compile(r"\b(?:(?P<free>[a-z]+)[- ]free\b|non-?(?P<non>[a-z]+)\b|free (?:of|from) (?P<of>[a-z]+))")
_SENSE_VERBS = {"smell": "scent", "smells": "scent", "smelled": "scent", "smelt": "scent", "taste": "taste",
                "tastes": "taste", "tasted": "taste", "sound": "sound", "sounds": "sound", "sounded": "sound"}
JUDGEMENT_WEIGHT = 0.5
JUDGEMENTS = ("pleasant", "unpleasant")


@dataclass
class _Token:
    word: str
    start: int
    end: int
    clause: int
    sentence: int
    negated: bool = False


def _tokens(low: str) -> list[_Token]:
    """Words with their clause and sentence numbers; words in a negator's scope are marked ``negated``."""
    clause_ends = [m.start() for m in _CLAUSE_PUNCT_RE.finditer(low)]
    sentence_ends = [m.start() for m in _SENTENCE_PUNCT_RE.finditer(low)]
    out, ci, si, clause, sentence = [], 0, 0, 0, 0
    for m in _TOKEN_RE.finditer(low):
        while ci < len(clause_ends) and clause_ends[ci] < m.start():
            ci, clause = ci + 1, clause + 1
        while si < len(sentence_ends) and sentence_ends[si] < m.start():
            si, sentence = si + 1, sentence + 1
        if m.group(0) in CLAUSE_BREAKS:
            clause += 1
        out.append(_Token(m.group(0), m.start(), m.end(), clause, sentence))
    for i, tok in enumerate(out):
        if tok.word in NEGATORS or tok.word.endswith("n't"):
            for nxt in out[i + 1:i + 1 + NEGATION_SCOPE]:
                if nxt.clause != tok.clause:
                    break
                nxt.negated = True
    return out


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
        self._context_of: dict[str, set[str]] = defaultdict(set)
        for facet, words in CONTEXT_WORDS.items():
            for w in words:
                self._context_of[w].add(facet)
        self._patterns = [(facet, re.compile(p.replace("{cues}", cue_alt))) for facet, p in CUE_PATTERNS]
        self._quantity_re = re.compile(QUANTITY_RE)
        self._unit_re = re.compile(r"\d\s*-?\s*" + QUANTITY_UNIT_RE)

    def senses(self, value: str) -> tuple[str, ...]:
        """The facets a lexicon value can name, its default first."""
        return SENSES.get(value, (self.lexicon[value],) if value in self.lexicon else ())

    # ---- one text -> mentions -------------------------------------------------------------------------------
    def _clean_value(self, phrase: str, facet: str, from_end: bool, open_material: bool = False) -> str | None:
        """Trim a captured phrase to a value: cut at stopwords, prefer a lexicon phrase, else open vocabulary
        (for a material only after an explicit "made of" / "material:", ``open_material``; sizes come from the
        quantity pattern or the lexicon)."""
        words = phrase.split()
        modifiers = COLOR_MODIFIERS if facet == "color" else SCENT_MODIFIERS if facet == "scent" else frozenset()
        modifier = ""
        if from_end:
            words = words[::-1]
        else:
            while len(words) > 1 and words[0] in modifiers:
                modifier = words.pop(0)  # "a [warm] pink", "is [slight] sandalwood"
        kept = []
        for w in words:
            if w in STOPWORDS or w in self._cue_of or w in NEGATORS or w.endswith("n't"):
                if from_end and w in modifiers and kept:
                    modifier = w  # "the [slight] sandalwood scent"
                break
            kept.append(w)
        if from_end:
            kept = kept[::-1]
        if not kept:
            return None
        # Longest lexicon phrase anchored at the cue side. A cue may move a word to another facet ("lavender
        # colour", "warm sound"), but not into the concrete facets: "cooling capacity" is no size and "thick
        # material" no material. A colour or scent keeps its modifier ("warm pink", "slight sandalwood").
        for n in range(len(kept), 0, -1):
            cand = normalise_value(" ".join(kept[-n:] if from_end else kept[:n]))
            if cand in self.lexicon:
                if facet in CONCRETE_FACETS and facet not in self.senses(cand):
                    return None
                return f"{modifier} {cand}" if modifier and modifier not in cand.split() else cand
        if facet not in OPEN_VOCAB_FACETS or facet in CONCRETE_FACETS and not open_material:
            return None
        cand = normalise_value(" ".join(kept[-3:] if from_end else kept[:3]))
        if len(cand) < 3 or re.search(r"\d", cand) or "/" in cand:
            return None
        return cand

    @staticmethod
    def _judgement(words: Sequence[str]) -> str | None:
        """``pleasant`` / ``unpleasant`` when the first word past intensifiers is a judgement adjective."""
        for w in words:
            if w in PLEASANT:
                return "pleasant"
            if w in UNPLEASANT:
                return "unpleasant"
            if w not in INTENSIFIERS:
                return None
        return None

    def mentions(self, text: str, title: bool = False) -> list[Mention]:
        """All facet-value mentions in one text: quantities, free-of terms, cued values, judgements of a named
        sense, then bare lexicon words outside cued spans that pass the word-sense checks. ``title``: the text is a
        product title, where a bare word names the product itself."""
        low = self._stop_re.sub(lambda m: " " * len(m.group(0)), text.lower())
        tokens = _tokens(low)
        at = {t.start: i for i, t in enumerate(tokens)}

        def token_at(pos: int) -> int | None:
            while pos >= 0 and pos not in at and low[pos:pos + 1].isalnum():
                pos -= 1
            return at.get(pos)

        def negated(pos: int) -> bool:
            i = token_at(pos)
            return i is not None and tokens[i].negated

        out: list[Mention] = []
        covered: list[tuple[int, int]] = []
        # Sizes: a number with a unit; not a rating ("300 lb working load").
        for m in self._quantity_re.finditer(low):
            value = m.group("value").strip()
            if not self._unit_re.search(value):
                continue
            follow = low[m.end():m.end() + 40].split()
            if follow and follow[0].strip(".,;:") in RATING_WORDS:
                continue
            value = re.sub(r"(\d)\s*(''|\")", r"\1 in", value)
            value = re.sub(r"(\d)\s*'", r"\1 ft", value)
            value = re.sub(r"\s*[x×*]\s*(?=[\d.])", " x ", value)
            value = re.sub(r"(?<![\d])\.(?=\d)", "0.", value)
            out.append(Mention("size", normalise_value(value), True))
            covered.append(m.span())
        # Standard free-of terms ("fragrance-free", "non-greasy", "free of parabens"), kept under negation.
        for m in _FREE_OF_RE.finditer(low):
            base = m.group("free") or m.group("non") or m.group("of")
            facet = FREE_OF.get(base)
            if facet:
                value = f"non-{base}" if m.group("non") else f"{base}-free"
                out.append(Mention(facet, normalise_value(value), True))
                covered.append(m.span())
        # Cued values: "scent: vanilla", "the colour is deep red", "smells of pine", "made of wool".
        judged: list[tuple[str, str, int]] = []  # (facet, pleasant|unpleasant, sentence)
        for fixed_facet, pattern in self._patterns:
            for m in pattern.finditer(low):
                if any(a <= m.start("value") < b for a, b in covered) or negated(m.start()):
                    continue
                cue = m.groupdict().get("cue")
                facet = fixed_facet or self._cue_of.get(cue or "")
                if facet is None:
                    continue
                phrase = m.group("value")
                i = token_at(m.start("value"))
                sentence = tokens[i].sentence if i is not None else -1
                if fixed_facet == "texture":  # "feels X": only a texture or feel word, never an open value
                    value = normalise_value(phrase.split()[0])
                    senses = [f for f in self.senses(value) if f in ("texture", "feel")]
                    if senses:
                        out.append(Mention(senses[0], value, True))
                        covered.append(m.span("value"))
                    continue
                value = self._clean_value(phrase, facet, from_end=False, open_material=True)
                if value:
                    out.append(Mention(facet, value, True))
                    covered.append(m.span("value"))
                elif facet not in CONCRETE_FACETS and (verdict := self._judgement(phrase.split())):
                    judged.append((facet, verdict, sentence))
        # Trailing cues ("the [blush pink] color is", "[matte] finish") and sense verbs ("smells great").
        for i, tok in enumerate(tokens):
            facet = TRAILING_CUES.get(tok.word)
            nxt = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1].clause == tok.clause else None
            labels_a_field = low[tok.end:tok.end + 3].lstrip()[:1] in (":", "=")  # "Color: Warm White"
            if facet and i > 0 and not tok.negated and not labels_a_field and (nxt is None or nxt.word in AFTER_CUE):
                before = [t for t in tokens[max(0, i - 3):i] if t.clause == tok.clause]
                if before and not any(a <= before[-1].start < b for a, b in covered):
                    value = self._clean_value(" ".join(t.word for t in before), facet, from_end=True)
                    if value:
                        out.append(Mention(facet, value, True))
                        covered.append((before[0].start, tok.end))
                    elif (facet not in CONCRETE_FACETS and not before[-1].negated
                          and (verdict := self._judgement([t.word for t in reversed(before)]))):
                        judged.append((facet, verdict, tok.sentence))
            sense = _SENSE_VERBS.get(tok.word)
            if sense and nxt is not None and not tok.negated and not (sense == "sound" and nxt.word == "like"):
                after = [t.word for t in tokens[i + 1:i + 4] if t.clause == tok.clause]
                if verdict := self._judgement(after):
                    judged.append((sense, verdict, tok.sentence))
        # Bare lexicon words, with word-sense checks and the facet their sentence's context gives them.
        context: dict[int, set[str]] = defaultdict(set)
        for tok in tokens:
            context[tok.sentence] |= self._context_of.get(tok.word, set())
        cued_values = {m.value for m in out}
        bare: list[tuple[int, int, str, str]] = []  # (start, end, facet, value)
        for m in self._lexicon_re.finditer(low):
            if any(a <= m.start() < b for a, b in covered):
                continue
            value = normalise_value(m.group(1))
            i = token_at(m.start())
            if value in cued_values or i is None or tokens[i].negated:
                continue
            j = token_at(m.end() - 1)
            prev = tokens[i - 1].word if i > 0 and tokens[i - 1].clause == tokens[i].clause else ""
            nxt = tokens[j + 1].word if j is not None and j + 1 < len(tokens) and \
                tokens[j + 1].clause == tokens[j].clause else ""
            if value in VERB_HOMOGRAPHS and (prev in SUBJECTS_AND_AUXILIARIES or nxt in VERB_COMPLEMENTS):
                continue  # "I felt", "it rose", "felt like"
            if nxt in OTHER_NOUNS:
                continue  # "cold weather", "small hint"
            senses = self.senses(value)
            in_context = [f for f in senses if f in context[tokens[i].sentence]]
            if in_context:
                facet = in_context[0]
            elif value in NEEDS_CONTEXT and not (title and value in TITLE_OK):
                continue
            else:
                facet = senses[0]
            bare.append((m.start(), m.end(), facet, value))
        out += self._merge_modifiers(low, bare)
        # A judgement counts only where the sentence names no value of that facet.
        named = defaultdict(set)
        for m in out:
            named[m.facet].add(m.value)
        seen = set()
        for facet, verdict, _sentence in judged:
            if facet not in named and (facet, verdict) not in seen:
                seen.add((facet, verdict))
                out.append(Mention(facet, verdict, True))
        return out

    @staticmethod
    def _merge_modifiers(low: str, bare: list[tuple[int, int, str, str]]) -> list[Mention]:
        """Bare hits as mentions; adjacent colour words join ("rose carmine", "cobalt blue"), and a colour or scent
        keeps the modifier before it ("warm pink", "slight sandalwood")."""
        out: list[Mention] = []
        k = 0
        while k < len(bare):
            start, end, facet, value = bare[k]
            while (k + 1 < len(bare) and facet == "color" and bare[k + 1][2] == "color"
                   and not low[end:bare[k + 1][0]].strip()):
                k += 1
                end, value = bare[k][1], f"{value} {bare[k][3]}"
            prev = low[:start].split()[-1:] if low[:start].strip() else []
            modifiers = COLOR_MODIFIERS if facet == "color" else SCENT_MODIFIERS if facet == "scent" else ()
            if prev and prev[0] in modifiers and low[start - 1:start] == " " and prev[0] not in value.split():
                value = f"{prev[0]} {value}"
            out.append(Mention(facet, normalise_value(value), False))
            k += 1
        return out

    # ---- corpus -> attributes -------------------------------------------------------------------------------
    def item_mentions(self, item: ItemTexts) -> list[Mention]:
        """The mentions of all an item's texts (its title read as a title)."""
        out = self.mentions(item.title, title=True) if item.title else []
        for text in (item.description, *item.reviews):
            if text:
                out += self.mentions(text)
        return out

    def extract_corpus(self, items: Sequence[ItemTexts]) -> dict[str, Attributes]:
        """Extract and aggregate attributes for every item; bare mentions are re-assigned to the corpus's facets."""
        per_item = [self.item_mentions(it) for it in items]
        corpus_facet: dict[str, Counter] = defaultdict(Counter)
        for mentions in per_item:
            for m in mentions:
                if m.cued and m.value not in JUDGEMENTS:
                    corpus_facet[m.value][m.facet] += 1
        return {it.item_id: self.aggregate(mentions, corpus_facet) for it, mentions in zip(items, per_item)}

    def aggregate(self, mentions: Iterable[Mention], corpus_facet: dict[str, Counter] | None = None) -> Attributes:
        """Sum mention weights per (facet, value); keep facets whose best value reaches ``min_score``. A bare word
        takes the facet it was cued with in this item, else across the corpus (among the facets it can name);
        a judgement (``pleasant``) weighs half and is kept only for a facet with no other value."""
        mentions = list(mentions)
        item_facet: dict[str, Counter] = defaultdict(Counter)
        for m in mentions:
            if m.cued:
                item_facet[m.value][m.facet] += 1
        scores: dict[str, Counter] = defaultdict(Counter)
        for m in mentions:
            facet = m.facet
            if not m.cued:
                senses = set(self.senses(m.value)) or {m.facet}
                if m.value in item_facet:
                    facet = item_facet[m.value].most_common(1)[0][0]
                elif corpus_facet and sum(corpus_facet.get(m.value, Counter()).values()) >= 2:
                    best = corpus_facet[m.value].most_common(1)[0][0]
                    facet = best if best in senses or m.value not in self.lexicon else facet
            weight = JUDGEMENT_WEIGHT if m.value in JUDGEMENTS else CUED_WEIGHT if m.cued else BARE_WEIGHT
            scores[facet][m.value] += weight
        for ranked in scores.values():
            if any(v not in JUDGEMENTS for v in ranked):
                for v in JUDGEMENTS:
                    ranked.pop(v, None)
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
