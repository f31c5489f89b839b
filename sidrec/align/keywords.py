"""Keywords and descriptions for SID tokens and SID prefixes (TS-Rec §3.2 SA-Init, §3.3 TS-Align).

Default: class-based TF-IDF (c-TF-IDF, Grootendorst 2022, BERTopic) over the items' titles, descriptions, brands,
categories and sensory values. Every SID token ``(level, code)`` is a class holding the items whose SID has that
code at that level; every SID prefix (``<a_3><b_7>``) is a class holding the items under it. A term's weight in a
class is ``tf(t, c) * log(1 + A / f(t))``: its frequency in the class (normalised by the class's size) times an
inverse class frequency (``A`` the average number of terms per class, ``f(t)`` the term's frequency over all
classes of that level). Options: keywords from a file in the TS-Rec release format (``[{"token", "description",
"keywords"}]``), or written by a teacher LLM from sample titles of each class.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from sidrec.errors import InputError
from sidrec.sid import SidTable, sid_token

log = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[a-z][a-z0-9\-']*[a-z0-9]|[a-z]")
# Function words and catalogue boilerplate that carry no product meaning.
STOPWORDS = frozenset("""
a an the this that these those it its and or but with without for of to in on at by from is are was were be been
as into than then so very too not no any all each every more most less your our their my his her you we they i me
us them can will would should could may might has have had do does did just also only new one two x s t
item items product products customer favourite favorite crafted care everyday essential improved quality great
good nice best use used using made make includes include including set pack piece pieces
""".split())


def item_terms(title: str, description: str = "", brand: str = "", categories: Sequence[str] = (),
               sensory_values: Sequence[str] = ()) -> list[str]:
    """The terms of one item: lower-cased words of its texts (stopwords and numbers dropped) plus its sensory
    values and categories as whole phrases (``"sage green"``).

    >>> item_terms("Lumen Vanilla Ivory Jar Candle #12", "A candle with scent: vanilla.", "Lumen", ["Candles"])
    ['lumen', 'vanilla', 'ivory', 'jar', 'candle', 'candle', 'scent', 'vanilla', 'lumen', 'candles']
    """
    words = []
    for text in (title, description, brand):
        words += [w for w in _WORD_RE.findall((text or "").lower()) if w not in STOPWORDS and len(w) > 1]
    phrases = [p.strip().lower() for p in (*categories, *sensory_values) if p and p.strip()]
    return words + phrases


def load_sensory_values(semantics_dir: str | Path | None) -> dict[str, list[str]]:
    """``item_id -> [values]`` from ``RUN/semantics/sensory.jsonl`` when present (empty otherwise).

    Accepts lines ``{"item_id", "attributes": {facet: [values] | value}}`` or ``{"item_id", "pairs": [[facet,
    value], ...]}``.
    """
    if not semantics_dir:
        return {}
    path = Path(semantics_dir) / "sensory.jsonl"
    if not path.is_file():
        return {}
    from sidrec.semantics.extract import read_sensory_jsonl

    return {item: [v for values in attrs.values() for v in values]
            for item, attrs in read_sensory_jsonl(path).items()}


def item_documents(items, sid_table: SidTable, sensory: Mapping[str, Sequence[str]] | None = None
                   ) -> list[list[str]]:
    """Terms of every item of ``sid_table`` (in its order), from the canonical item table ``items``.

    Items of the SID table missing from ``items`` raise :class:`InputError` (the SIDs were made for another
    dataset).
    """
    sensory = sensory or {}
    row_of = {item: i for i, item in enumerate(items["item_id"])}
    missing = [i for i in sid_table.item_ids if i not in row_of]
    if missing:
        raise InputError(f"{len(missing)} items of the SID table are not in the dataset's item table (e.g. "
                         f"{missing[:3]}): were the SIDs made for another dataset?", sid_table.source)
    cols = {c: items[c] for c in ("title", "description", "brand", "categories")}
    docs = []
    for item in sid_table.item_ids:
        r = row_of[item]
        docs.append(item_terms(cols["title"][r], cols["description"][r], cols["brand"][r], cols["categories"][r],
                               sensory.get(item, ())))
    return docs


def class_tfidf(docs: Sequence[Sequence[str]], labels: np.ndarray, n_classes: int, top_k: int
                ) -> list[list[str]]:
    """Top ``top_k`` c-TF-IDF terms of each class; ``labels[i]`` is the class of document ``i`` (-1: none).

    Returns one list per class (empty for a class without documents), best term first; ties are broken by the
    term itself so the result is deterministic.

    >>> class_tfidf([["red", "wool"], ["red", "cotton"], ["blue", "wool"]], np.array([0, 0, 1]), 2, 2)
    [['red', 'cotton'], ['blue', 'wool']]
    """
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        for term, count in Counter(doc).items():
            rows.append(i)
            cols.append(vocab.setdefault(term, len(vocab)))
            vals.append(count)
    if not vocab:
        return [[] for _ in range(n_classes)]
    terms = np.array(sorted(vocab, key=vocab.get))
    counts = sp.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)), dtype=np.float64)
    labels = np.asarray(labels)
    keep = labels >= 0
    member = sp.csr_matrix((np.ones(int(keep.sum())), (labels[keep], np.flatnonzero(keep))),
                           shape=(n_classes, len(docs)))
    class_counts = (member @ counts).tocsr()  # (n_classes, n_terms)
    size = np.asarray(class_counts.sum(axis=1)).ravel()
    freq = np.asarray(class_counts.sum(axis=0)).ravel()
    avg = size[size > 0].mean() if (size > 0).any() else 1.0
    idf = np.log1p(avg / np.maximum(freq, 1e-12))
    tf = sp.diags(1.0 / np.maximum(size, 1e-12)) @ class_counts
    weights = (tf @ sp.diags(idf)).tocsr()
    out = []
    for c in range(n_classes):
        start, end = weights.indptr[c], weights.indptr[c + 1]
        idx, w = weights.indices[start:end], weights.data[start:end]
        order = np.lexsort((terms[idx], -w))[:top_k]
        out.append([str(terms[idx[j]]) for j in order])
    return out


def describe(keywords: Sequence[str], n_items: int, titles: Sequence[str] = ()) -> str:
    """A one-sentence description of a class from its keywords (the offline stand-in for a teacher's text)."""
    head = ", ".join(keywords[:5]) if keywords else "mixed products"
    text = f"A group of {n_items} item{'s' if n_items != 1 else ''} about {head}"
    if titles:
        text += f", such as {titles[0]}"
    return text + "."


def token_keywords(sid_table: SidTable, docs: Sequence[Sequence[str]], top_k: int,
                   titles: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """c-TF-IDF keywords of every used SID token: ``{"<a_3>": {"level", "code", "n_items", "keywords",
    "description"}}``. Classes compete within a level."""
    out: dict[str, dict[str, Any]] = {}
    for level in range(sid_table.n_levels):
        codes = sid_table.codes[:, level]
        size = sid_table.codebook_sizes[level]
        per_class = class_tfidf(docs, codes, size, top_k)
        counts = np.bincount(codes, minlength=size)
        for code in np.flatnonzero(counts):
            sample = [titles[i] for i in np.flatnonzero(codes == code)[:1]] if titles is not None else ()
            out[sid_token(level, int(code))] = {
                "level": level, "code": int(code), "n_items": int(counts[code]), "keywords": per_class[code],
                "description": describe(per_class[code], int(counts[code]), sample)}
    return out


def prefix_keywords(sid_table: SidTable, docs: Sequence[Sequence[str]], top_k: int,
                    titles: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """c-TF-IDF keywords of every SID prefix shorter than a full SID (``"<a_3>"``, ``"<a_3><b_7>"``, ...): the
    clusters TS-Align ties each token to, within its prefix. Classes compete within a depth."""
    out: dict[str, dict[str, Any]] = {}
    for depth in range(1, sid_table.n_levels):
        prefixes, labels, counts = np.unique(sid_table.codes[:, :depth], axis=0, return_inverse=True,
                                             return_counts=True)
        labels = labels.reshape(-1)
        per_class = class_tfidf(docs, labels, len(prefixes), top_k)
        for c, prefix in enumerate(prefixes):
            sample = [titles[i] for i in np.flatnonzero(labels == c)[:1]] if titles is not None else ()
            key = "".join(sid_token(level, int(code)) for level, code in enumerate(prefix))
            out[key] = {"depth": depth, "n_items": int(counts[c]), "keywords": per_class[c],
                        "description": describe(per_class[c], int(counts[c]), sample)}
    return out


def load_keyword_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Token keywords from a TS-Rec-format file: ``[{"token": "<a_236>", "description": "...", "keywords":
    [...]}]`` (or our own ``sid_keywords.json``)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("keywords file not found", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path, e.lineno) from None
    if isinstance(obj, dict) and "tokens" in obj:
        return obj["tokens"]
    if not isinstance(obj, list):
        raise InputError('expected a list of {"token", "description", "keywords"} records', path)
    out = {}
    for i, rec in enumerate(obj):
        if not isinstance(rec, dict) or not isinstance(rec.get("token"), str) or not isinstance(
                rec.get("keywords"), list):
            raise InputError(f"record {i}: expected {{'token': str, 'keywords': [str], 'description': str}}", path)
        out[rec["token"]] = {"keywords": [str(k) for k in rec["keywords"]],
                             "description": str(rec.get("description", ""))}
    return out


TEACHER_PROMPT = ("Here are products that share one category code:\n{titles}\n"
                  "List {k} short keywords (comma-separated) that describe what these products have in common.")


def teacher_keywords(classes: Mapping[str, Sequence[str]], model_name_or_path: str, top_k: int,
                     max_titles: int = 8, batch_size: int = 8) -> dict[str, list[str]]:
    """Keywords written by an instruction LLM (e.g. Qwen2.5-1.5B-Instruct) for each class from sample titles.

    ``classes`` maps a token (or prefix) to the titles of its items. Greedy decoding; the answer is split on
    commas and new lines. Slow on CPU: meant for a GPU or a small teacher.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype="auto")
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    keys = list(classes)
    out: dict[str, list[str]] = {}
    for start in range(0, len(keys), batch_size):
        batch = keys[start:start + batch_size]
        texts = []
        for key in batch:
            titles = "\n".join(f"- {t}" for t in list(classes[key])[:max_titles])
            msg = [{"role": "user", "content": TEACHER_PROMPT.format(titles=titles, k=top_k)}]
            texts.append(tokenizer.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
                         if tokenizer.chat_template else msg[0]["content"] + "\nKeywords:")
        enc = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=16 * top_k, do_sample=False)
        for key, ids in zip(batch, gen[:, enc["input_ids"].shape[1]:]):
            answer = tokenizer.decode(ids, skip_special_tokens=True)
            words = [w.strip(" .-*\t").lower() for w in re.split(r"[,\n]", answer)]
            out[key] = [w for w in dict.fromkeys(words) if w][:top_k]
    return out
