"""The sensory student (ASEGR): a compact transformer distilled from the teacher's attribute-value pairs.

It reads an item's own text (title, categories, description: no reviews, so it also serves new items) and
predicts, per facet of the schema, whether the facet applies (multi-label) and the value as a vector in the value
encoder's space (the text encoder applied to the bare value string). Loss: binary cross-entropy on the facets plus
``value_weight`` x (1 - cosine) between predicted and teacher value vectors on the teacher's facets.

The fixed-size sensory embedding of an item concatenates, per facet, ``p_f * P v_f`` where ``p_f`` is the facet
probability, ``v_f`` the predicted value vector and ``P`` a PCA projection (fitted on the teacher's value
vocabulary) to ``proj_dim`` dimensions: ``n_facets * proj_dim`` numbers, L2-normalised.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sidrec.facets import FACET_NAMES

log = logging.getLogger(__name__)

STUDENT_FILE = "student.pt"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class StudentShape:
    vocab_size: int
    value_dim: int
    d_model: int = 64
    n_layers: int = 1
    n_heads: int = 4
    max_len: int = 64
    dropout: float = 0.0
    n_facets: int = len(FACET_NAMES)


class SensoryStudent(nn.Module):
    """Token embeddings -> transformer encoder -> masked mean pool -> facet logits and per-facet value vectors."""

    def __init__(self, shape: StudentShape):
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.tok = nn.Embedding(shape.vocab_size, d, padding_idx=0)
        self.pos = nn.Embedding(shape.max_len, d)
        layer = nn.TransformerEncoderLayer(d, shape.n_heads, 2 * d, shape.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, shape.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.facet_head = nn.Linear(d, shape.n_facets)
        self.value_head = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, shape.n_facets *
                                                                                  shape.value_dim))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, seq)`` ids and mask -> facet logits ``(batch, F)`` and unit value vectors ``(batch, F, dim)``."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.tok(input_ids) + self.pos(positions)[None]
        h = self.norm(self.encoder(h, src_key_padding_mask=attention_mask == 0))  # (batch, seq, d)
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        values = self.value_head(pooled).view(-1, self.shape.n_facets, self.shape.value_dim)
        return self.facet_head(pooled), nn.functional.normalize(values, dim=-1)


def train_tokenizer(texts: Sequence[str], vocab_size: int = 8000):
    """A lower-cased WordPiece tokenizer trained on the catalogue's own texts (nothing downloaded).

    The vocabulary is learnt by :func:`sidrec.bpe.learn_bpe` (as ``tokenizers``' WordPiece trainer does, but with
    ties broken by string order: that trainer's result changes from process to process)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from sidrec.bpe import count_words, learn_bpe

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    vocab, _ = learn_bpe(count_words(texts, normalizer, pre_tokenizer), vocab_size,
                         special_tokens=["[PAD]", "[UNK]"], continuing_prefix="##")
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    return tok


def _encode_batch(tokenizer, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    encs = tokenizer.encode_batch(list(texts))
    width = max([min(len(e.ids), max_len) for e in encs] + [1])  # pad to the longest text, not max_len
    ids = torch.zeros(len(texts), width, dtype=torch.long)
    for i, e in enumerate(encs):
        row = e.ids[:max_len] or [1]
        ids[i, :len(row)] = torch.tensor(row)
    return ids, (ids != 0).long()


@dataclass
class StudentTrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    value_weight: float = 2.0
    proj_dim: int = 32
    seed: int = 0


class StudentModel:
    """A trained student with its tokenizer and sensory projection; ``predict`` and ``embed`` for any text."""

    def __init__(self, net: SensoryStudent, tokenizer, proj: np.ndarray, vocab: dict[str, list[str]],
                 vocab_emb: dict[str, np.ndarray]):
        self.net, self.tokenizer, self.proj = net.eval(), tokenizer, proj  # proj: (value_dim, proj_dim)
        self.vocab, self.vocab_emb = vocab, vocab_emb  # facet -> teacher values, and their vectors

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Facet probabilities ``(n, F)`` and unit value vectors ``(n, F, value_dim)``."""
        probs, values = [], []
        for start in range(0, len(texts), batch_size):
            ids, mask = _encode_batch(self.tokenizer, texts[start:start + batch_size], self.net.shape.max_len)
            logits, vecs = self.net(ids, mask)
            probs.append(torch.sigmoid(logits).numpy())
            values.append(vecs.numpy())
        if not probs:
            return np.zeros((0, self.net.shape.n_facets)), np.zeros((0, self.net.shape.n_facets,
                                                                     self.net.shape.value_dim))
        return np.concatenate(probs), np.concatenate(values)

    def sensory_embedding(self, probs: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``(n, F * proj_dim)``: per facet ``p_f * P v_f``, concatenated and L2-normalised."""
        projected = np.einsum("nfd,dk->nfk", values, self.proj) * probs[..., None]
        flat = projected.reshape(len(probs), -1).astype(np.float32)
        return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)

    def decode(self, probs: np.ndarray, values: np.ndarray, threshold: float = 0.5) -> list[dict[str, list[str]]]:
        """Selected facets with the nearest teacher value of that facet (the student's readable attributes)."""
        out = []
        for p, v in zip(probs, values):
            attrs: dict[str, list[str]] = {}
            for f, facet in enumerate(FACET_NAMES):
                if p[f] < threshold or not self.vocab.get(facet):
                    continue
                attrs[facet] = [self.vocab[facet][int(np.argmax(self.vocab_emb[facet] @ v[f]))]]
            out.append(attrs)
        return out

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"shape": asdict(self.net.shape), "state_dict": self.net.state_dict(), "proj": self.proj,
                    "vocab": self.vocab, "vocab_emb": self.vocab_emb, "facets": list(FACET_NAMES)},
                   folder / STUDENT_FILE)
        self.tokenizer.save(str(folder / TOKENIZER_FILE))

    @classmethod
    def load(cls, folder: str | Path) -> StudentModel:
        from tokenizers import Tokenizer

        folder = Path(folder)
        blob = torch.load(folder / STUDENT_FILE, weights_only=False)
        net = SensoryStudent(StudentShape(**blob["shape"]))
        net.load_state_dict(blob["state_dict"])
        return cls(net, Tokenizer.from_file(str(folder / TOKENIZER_FILE)), blob["proj"], blob["vocab"],
                   blob["vocab_emb"])


def _value_projection(vocab_vectors: np.ndarray, value_dim: int, proj_dim: int, seed: int) -> np.ndarray:
    """PCA basis of the value vocabulary ``(value_dim, proj_dim)``, completed with random orthonormal columns."""
    rng = np.random.default_rng(seed)
    basis = np.zeros((value_dim, 0))
    if len(vocab_vectors) > 1:
        centred = vocab_vectors - vocab_vectors.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        basis = vt[: min(proj_dim, int((s > 1e-6).sum()))].T
    if basis.shape[1] < proj_dim:
        extra = rng.standard_normal((value_dim, proj_dim - basis.shape[1]))
        extra -= basis @ (basis.T @ extra)
        q, _ = np.linalg.qr(extra)
        basis = np.concatenate([basis, q], axis=1)
    return basis.astype(np.float32)


def distill_student(texts: Sequence[str], teacher: Sequence[Mapping[str, Sequence[str]]], encode,
                    cfg: StudentTrainConfig, shape_overrides: dict | None = None,
                    progress: bool = True) -> tuple[StudentModel, dict]:
    """Train a student on ``texts`` with the teacher's ``{facet: [values]}`` per text; returns it and its history.

    ``encode`` maps value strings to unit vectors (the value encoder).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vocab = {f: sorted({v for t in teacher for v in t.get(f, ())}) for f in FACET_NAMES}
    all_values = sorted({v for vs in vocab.values() for v in vs})
    value_emb = dict(zip(all_values, encode(all_values))) if all_values else {}
    value_dim = int(len(next(iter(value_emb.values())))) if value_emb else int(encode(["x"]).shape[1])
    vocab_emb = {f: (np.stack([value_emb[v] for v in vs]) if vs else np.zeros((0, value_dim), np.float32))
                 for f, vs in vocab.items()}

    n, n_f = len(texts), len(FACET_NAMES)
    facet_target = np.zeros((n, n_f), np.float32)
    value_target = np.zeros((n, n_f, value_dim), np.float32)
    for i, attrs in enumerate(teacher):
        for f, facet in enumerate(FACET_NAMES):
            vs = attrs.get(facet) or []
            if vs:
                facet_target[i, f] = 1.0
                vec = np.mean([value_emb[v] for v in vs], axis=0)
                value_target[i, f] = vec / max(np.linalg.norm(vec), 1e-12)

    tokenizer = train_tokenizer(texts)
    shape = StudentShape(vocab_size=tokenizer.get_vocab_size(), value_dim=value_dim, **(shape_overrides or {}))
    net = SensoryStudent(shape)
    ids, mask = _encode_batch(tokenizer, texts, shape.max_len)
    ft, vt = torch.from_numpy(facet_target), torch.from_numpy(value_target)
    pos_rate = ft.mean(0).clamp(1e-3, 1 - 1e-3)
    bce = nn.BCEWithLogitsLoss(pos_weight=((1 - pos_rate) / pos_rate).sqrt())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=0.01)
    steps = max(1, cfg.epochs * math.ceil(n / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    history = []
    bar = tqdm(range(cfg.epochs), desc="student", disable=not progress)
    for _ in bar:
        net.train()
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            b = torch.from_numpy(order[start:start + cfg.batch_size])
            logits, vecs = net(ids[b], mask[b])
            facet_loss = bce(logits, ft[b])
            on = ft[b] > 0  # (batch, F): value loss only where the teacher gave a value
            cos = (vecs * vt[b]).sum(-1)
            value_loss = (1 - cos)[on].mean() if on.any() else logits.sum() * 0
            loss = facet_loss + cfg.value_weight * value_loss
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        history.append(total / max(n, 1))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    all_vecs = np.stack([value_emb[v] for v in all_values]) if all_values else np.zeros((0, value_dim))
    proj = _value_projection(all_vecs, value_dim, cfg.proj_dim, cfg.seed)
    return StudentModel(net, tokenizer, proj, vocab, vocab_emb), {"loss": history, "vocab_size": len(all_values)}
