"""The LLM sensory teacher (ASEGR): prompt an instruction LLM for JSON attribute-value pairs, parse robustly.

Each text unit (a review; the description for items without reviews) is sent with the item's title and the facet
schema; the model answers a JSON object ``{"scent": "vanilla", "color": ["ivory"]}``. :func:`parse_llm_output`
never raises: invalid JSON, non-object answers, unknown facets, empty answers and unusable values are counted in a
:class:`ParseStats` and reported in ``semantics/stats.json``. Votes over an item's units are aggregated like the
offline extractor's (each valid pair is a cued mention).

Backends: ``transformers`` (any HF causal LM, batched greedy generation, left padding) and ``vllm``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sidrec.facets import FACET_NAMES, FACETS
from sidrec.semantics.extract import CUED_WEIGHT, Attributes, ItemTexts, select_attributes
from sidrec.semantics.lexicon import normalise_value

log = logging.getLogger(__name__)

PROMPT = """You extract sensory attributes of a product from text.
Facets (use only these keys): {schema}.
Answer with one JSON object mapping each facet that the text clearly mentions to a short value (1-3 words),
e.g. {{"scent": "vanilla", "color": "ivory"}}. Use {{}} when no facet is mentioned. No other text.

Product: {title}
Text: {text}
JSON:"""

MAX_VALUE_WORDS = 4


@dataclass
class ParseStats:
    """Counts of what the teacher's answers looked like (every answer lands in exactly one of the first five)."""

    ok: int = 0
    empty: int = 0               # blank answer or {}
    invalid_json: int = 0        # no parsable JSON object in the answer
    not_object: int = 0          # JSON, but not an object (a list, a string...)
    no_valid_pairs: int = 0      # an object whose every key/value was rejected
    unknown_facets: int = 0      # keys outside the schema (counted per key)
    bad_values: int = 0          # values that are not short strings (counted per value)
    repaired: int = 0            # answers that needed repair (code fences, single quotes, trailing commas...)
    examples: dict[str, str] = field(default_factory=dict)  # first offending answer per kind

    @property
    def total(self) -> int:
        return self.ok + self.empty + self.invalid_json + self.not_object + self.no_valid_pairs

    @property
    def malformed(self) -> int:
        return self.invalid_json + self.not_object + self.no_valid_pairs

    def note(self, kind: str, answer: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.examples.setdefault(kind, answer[:200])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "malformed": self.malformed,
                "malformed_rate": self.malformed / self.total if self.total else 0.0}


def _json_candidates(answer: str) -> list[tuple[str, bool]]:
    """Candidate JSON object strings in an answer, each with whether it needed repair."""
    text = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        return [(fenced.group(1).strip(), True)]
    out = []
    start = text.find("{")
    if start >= 0:
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                out.append((text[start:i + 1], start > 0 or i + 1 < len(text)))
                break
        else:
            out.append((text[start:] + "}" * depth, True))  # truncated generation: close the object
    out.append((text, False))
    return out


def _loads(candidate: str) -> tuple[Any, bool]:
    """json.loads, then light repairs (trailing commas, single quotes / Python literals). Raises ValueError."""
    try:
        return json.loads(candidate), False
    except json.JSONDecodeError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", candidate)
    try:
        return json.loads(fixed), True
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(fixed), True
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise ValueError("not JSON") from None


def parse_llm_output(answer: str, stats: ParseStats | None = None) -> dict[str, list[str]]:
    """Parse one teacher answer into ``{facet: [values]}``; never raises, counts problems in ``stats``.

    >>> parse_llm_output('Sure! {"scent": "Vanilla", "colour": "red", "taste": ""}')
    {'scent': ['vanilla']}
    """
    stats = stats if stats is not None else ParseStats()
    if not isinstance(answer, str) or not answer.strip():
        stats.note("empty", str(answer))
        return {}
    obj, repaired = None, False
    for candidate, needed_repair in _json_candidates(answer):
        try:
            obj, fixed = _loads(candidate)
            repaired = needed_repair or fixed
            break
        except ValueError:
            continue
    if obj is None:
        stats.note("invalid_json", answer)
        return {}
    if not isinstance(obj, dict):
        stats.note("not_object", answer)
        return {}
    if not obj:
        stats.note("empty", answer)
        return {}
    out: dict[str, list[str]] = {}
    for key, value in obj.items():
        facet = normalise_value(str(key)).replace(" ", "_")
        facet = {"colour": "color", "smell": "scent", "flavor": "taste", "flavour": "taste"}.get(facet, facet)
        if facet not in FACETS:
            stats.unknown_facets += 1
            stats.examples.setdefault("unknown_facets", str(key)[:80])
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                stats.bad_values += 1
                continue
            v = normalise_value(str(v))
            if not v or len(v.split()) > MAX_VALUE_WORDS or v in ("none", "n/a", "null", "unknown", "not mentioned"):
                if v:
                    stats.bad_values += 1
                continue
            out.setdefault(facet, [])
            if v not in out[facet]:
                out[facet].append(v)
    if not out:
        stats.note("no_valid_pairs", answer)
        return {}
    stats.ok += 1
    stats.repaired += int(repaired)
    return out


def build_prompt(title: str, text: str, max_chars: int = 1000) -> str:
    schema = ", ".join(f"{name} ({desc})" for name, desc in FACETS.items())
    return PROMPT.format(schema=schema, title=title[:200], text=text[:max_chars])


class LLMExtractor:
    """ASEGR teacher over an HF causal LM (``backend="transformers"``) or vLLM (``backend="vllm"``).

    ``extract_corpus(items)`` prompts once per text unit (up to ``max_units`` reviews per item; the description
    when an item has none), parses every answer with :func:`parse_llm_output`, and aggregates the votes per item.
    ``model``/``tokenizer`` may be passed in-memory (tests build a tiny random Qwen2).
    """

    def __init__(self, model_name: str | None = None, backend: Literal["transformers", "vllm"] = "transformers",
                 device: str = "auto", batch_size: int = 8, max_new_tokens: int = 48, max_units: int = 5,
                 min_score: float = 2.0, max_values: int = 1, rel_score: float = 0.5, model: Any = None,
                 tokenizer: Any = None):
        self.model_name = model_name
        self.backend = backend
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_units = max_units
        self.min_score, self.max_values, self.rel_score = min_score, max_values, rel_score
        self.stats = ParseStats()
        self._device = device
        self._model, self._tokenizer, self._llm = model, tokenizer, None

    def _load(self) -> None:
        from sidrec.semantics.text import resolve_device

        if self.backend == "vllm":
            if self._llm is None:
                from vllm import LLM

                self._llm = LLM(self.model_name)
            return
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            device = resolve_device(self._device)
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype).to(device).eval()
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token or self._tokenizer.unk_token
        self._tokenizer.padding_side = "left"  # not restored on reload; required for batched generation

    def _chat(self, prompt: str) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
        return prompt

    def generate(self, prompts: Sequence[str], progress: bool = True) -> list[str]:
        """Greedy answers to ``prompts`` (batched)."""
        self._load()
        if self.backend == "vllm":
            from vllm import SamplingParams

            outs = self._llm.generate(list(prompts), SamplingParams(temperature=0, max_tokens=self.max_new_tokens))
            return [o.outputs[0].text for o in outs]
        import torch
        from tqdm.auto import tqdm

        answers: list[str] = []
        tok, model = self._tokenizer, self._model
        for start in tqdm(range(0, len(prompts), self.batch_size), desc="teacher", disable=not progress):
            texts = [self._chat(p) for p in prompts[start:start + self.batch_size]]
            batch = tok(texts, return_tensors="pt", padding=True).to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            answers += tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return answers

    def extract_corpus(self, items: Sequence[ItemTexts], progress: bool = True) -> dict[str, Attributes]:
        prompts, owners = [], []
        for it in items:
            units = it.reviews[: self.max_units] or [it.description or it.title]
            for unit in units:
                prompts.append(build_prompt(it.title, unit))
                owners.append(it.item_id)
        answers = self.generate(prompts, progress) if prompts else []
        scores: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        for owner, answer in zip(owners, answers):
            for facet, values in parse_llm_output(answer, self.stats).items():
                for v in values:
                    scores[owner][facet][v] += CUED_WEIGHT
        log.info("teacher answers: %d ok, %d empty, %d malformed of %d", self.stats.ok, self.stats.empty,
                 self.stats.malformed, self.stats.total)
        return {it.item_id: select_attributes(scores.get(it.item_id, {}), self.min_score, self.max_values,
                                              self.rel_score) for it in items}


__all__ = ["FACET_NAMES", "LLMExtractor", "ParseStats", "build_prompt", "parse_llm_output"]
