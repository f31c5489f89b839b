"""Sequential recommenders with one RecBole-style interface (``recbole/model/abstract_recommender.py``):

- ``calculate_loss(batch) -> loss``: full-softmax cross-entropy over every item (or sampled softmax) at each
  labelled position of ``batch["labels"]`` (batch, L), 0 = no loss;
- ``predict(history, candidates) -> (batch, C)`` scores of given items;
- ``full_sort_predict(history) -> (batch, n_items + 1)`` scores of every item (column 0 = padding).

``SingleViewRecommender`` covers the id / asegr / guided / said fusions; ``DualViewRecommender`` is LLM-ESR
(Liu et al., NeurIPS 2024): a frozen semantic view with an adapter beside the collaborative ID view, one shared
sequence encoder, cross-attention between the views, logits from the concatenated views (= the sum of both views'
logits) and retrieval-augmented self-distillation: a long-tail user's representation is pulled towards the mean
representation of the N users most similar to it in the semantic (LLM) view.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from sidrec.baselines.backbones import MASKED, build_encoder, init_weights
from sidrec.baselines.sequences import PAD


class SequentialRecommender(nn.Module, ABC):
    """Shared loss and ranking logic. Subclasses define ``item_table()`` and ``encode(seq, table)``."""

    def __init__(self, n_items: int, max_len: int, cloze: bool, loss: str = "ce", num_negatives: int = 100):
        super().__init__()
        self.n_items, self.max_len, self.cloze = n_items, max_len, cloze
        self.loss_kind, self.num_negatives = loss, num_negatives
        self.mask_index = n_items + 1  # BERT4Rec's [MASK] input token (never an output)
        # Cut leading all-padding columns off a batch (positions keep their full-window index). Exact for
        # attention with key masking and for the GRU; not for BSARec, whose FFT spans the whole padded window.
        self.trim_padding = False

    # -- what subclasses define ----------------------------------------------------------------------------
    @abstractmethod
    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D) item representations, row 0 = padding (input embeddings and tied output layer)."""

    @abstractmethod
    def encode(self, seq: torch.Tensor, table: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(b, L) item indices -> (b, L, D) hidden states; ``offset`` = padding columns trimmed on the left."""

    def trim(self, seq: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Drop leading columns that are padding in every row (when ``trim_padding``); returns the offset too."""
        if not self.trim_padding:
            return seq, labels, 0
        used = (seq != PAD).any(0) if labels is None else (seq != PAD).any(0) | (labels != PAD).any(0)
        first = int(used.nonzero()[0]) if used.any() else seq.shape[1] - 1
        return seq[:, first:], None if labels is None else labels[:, first:], first

    # -- interface -----------------------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        table = self.item_table()
        seq, labels, offset = self.trim(batch["input"], batch["labels"])
        hidden = self.encode(seq, table, offset)
        return self.item_loss(hidden, labels, table) + self.extra_loss(batch, hidden, table)

    def item_loss(self, hidden: torch.Tensor, labels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the label item at each labelled position, over all items or sampled negatives."""
        selected = labels > 0
        h, target = hidden[selected], labels[selected]  # (n, D), (n,)
        if self.loss_kind == "ce":
            logits = h @ table[1:].T  # (n, n_items): the padding row is never a class
            return F.cross_entropy(logits, target - 1)
        negatives = torch.randint(1, self.n_items + 1, (len(target), self.num_negatives), device=h.device)
        pos = (h * table[target]).sum(-1, keepdim=True)
        neg = torch.einsum("nd,nkd->nk", h, table[negatives]).masked_fill(negatives == target[:, None], MASKED)
        return F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros_like(target))

    def extra_loss(self, batch, hidden, table) -> torch.Tensor:
        return hidden.new_zeros(())

    def start_epoch(self) -> None:
        """Called by the trainer before each training epoch (LLM-ESR refreshes its teacher representations)."""

    def inference_input(self, history: torch.Tensor) -> torch.Tensor:
        """BERT4Rec predicts a [MASK] appended after the history; causal models read the history as is."""
        if not self.cloze:
            return history
        mask = torch.full_like(history[:, :1], self.mask_index)
        return torch.cat([history[:, 1:], mask], 1)

    def user_representation(self, history: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state at the last position (the next-item query). (b, D)"""
        table = self.item_table() if table is None else table
        seq, _, offset = self.trim(self.inference_input(history))
        return self.encode(seq, table, offset)[:, -1]

    def full_sort_predict(self, history: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        return self.user_representation(history, table) @ table.T

    def predict(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        user = self.user_representation(history, table)  # (b, D)
        return torch.einsum("bd,bcd->bc", user, table[candidates])

    def embed(self, seq: torch.Tensor, table: torch.Tensor, mask_emb: torch.Tensor | None) -> torch.Tensor:
        """Look up (b, L) item indices in ``table``; index n_items + 1 is the [MASK] embedding."""
        if mask_emb is None:
            return F.embedding(seq, table)
        return F.embedding(seq, torch.cat([table, mask_emb[None]], 0))


class SingleViewRecommender(SequentialRecommender):
    """One item table (any fusion except llmesr) and one encoder."""

    def __init__(self, backbone: str, items: nn.Module, n_items: int, max_len: int, cfg):
        super().__init__(n_items, max_len, cloze=backbone == "bert4rec", loss=cfg.loss,
                         num_negatives=cfg.num_negatives)
        self.items = items
        self.encoder = build_encoder(backbone, items.dim, max_len, cfg)
        self.mask_emb = nn.Parameter(torch.zeros(items.dim)) if self.cloze else None
        self.apply(init_weights)
        if self.mask_emb is not None:
            nn.init.normal_(self.mask_emb, std=0.02)

    def item_table(self) -> torch.Tensor:
        return self.items()

    def encode(self, seq: torch.Tensor, table: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.encoder(self.embed(seq, table, self.mask_emb), seq != PAD, offset)


class CrossAttention(nn.Module):
    """Queries from one view attend to the other view's hidden states (residual + LayerNorm)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out, _ = self.attention(query, context, context, attn_mask=bias, need_weights=False)
        return self.norm(query + self.dropout(out))


class DualViewRecommender(SequentialRecommender):
    """LLM-ESR: semantic view (frozen LLM item embeddings + adapter) and collaborative view (ID embeddings
    initialised from the PCA of the same embeddings), a shared encoder, two-way cross-attention and
    concatenated representations; plus retrieval-augmented self-distillation (LLM-ESR §3.3): each long-tail user's
    representation is pulled (MSE, weight ``llmesr_distill_weight``) towards the mean of the representations of its
    ``llmesr_neighbors`` retrieved similar users (``neighbors``, by semantic user representation), computed by the
    same model without gradient.

    ``user_sequences`` (U, L) are the users' training sequences, ``neighbors`` (U, N) the retrieved users of each
    user, ``distill_users`` (U,) bool the long-tail users that are distilled."""

    def __init__(self, backbone: str, n_items: int, max_len: int, cfg, semantic: torch.Tensor, known: torch.Tensor,
                 user_sequences: torch.Tensor | None = None, neighbors: torch.Tensor | None = None,
                 distill_users: torch.Tensor | None = None):
        super().__init__(n_items, max_len, cloze=backbone == "bert4rec", loss=cfg.loss,
                         num_negatives=cfg.num_negatives)
        from sidrec.baselines.semantic import pca

        dim, d = cfg.hidden_size, semantic.shape[1]
        self.dim = dim
        scale = semantic[known].norm(dim=1).mean().clamp_min(1e-8)
        self.register_buffer("semantic", semantic / scale, persistent=False)
        self.register_buffer("known", known.float()[:, None], persistent=False)
        self.adapter = nn.Sequential(nn.Linear(d, max(dim, d // 2)), nn.GELU(), nn.Linear(max(dim, d // 2), dim))
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.encoder = build_encoder(backbone, dim, max_len, cfg)
        self.sem_to_id = CrossAttention(dim, cfg.num_heads, cfg.dropout)
        self.id_to_sem = CrossAttention(dim, cfg.num_heads, cfg.dropout)
        self.view_dropout = nn.Dropout(cfg.semantic_dropout)
        self.mask_emb = nn.Parameter(torch.zeros(2 * dim)) if self.cloze else None
        self.apply(init_weights)
        if self.mask_emb is not None:
            nn.init.normal_(self.mask_emb, std=0.02)
        with torch.no_grad():  # collaborative view starts from the semantic geometry (LLM-ESR's PCA init)
            self.ids.weight.copy_(pca(self.semantic, dim) * 0.02 * dim ** 0.5 * self.known)
        self.distill_weight = cfg.llmesr_distill_weight
        self.teacher_refresh = cfg.llmesr_teacher_refresh
        self.teacher_batch_size = cfg.eval_batch_size
        self.register_buffer("user_sequences", user_sequences, persistent=False)  # (U, L)
        self.register_buffer("neighbors", neighbors, persistent=False)  # (U, N)
        self.register_buffer("distill_users", distill_users, persistent=False)  # (U,) bool
        # Representations of the retrieved users, refreshed before each epoch (llmesr_teacher_refresh: epoch).
        self.register_buffer("user_reps", None, persistent=False)  # (U, 2 * dim)

    def item_table(self) -> torch.Tensor:
        semantic_view = self.view_dropout(self.adapter(self.semantic)) * self.known
        return torch.cat([semantic_view, self.ids.weight], 1)  # (n_items + 1, 2 * dim)

    def encode(self, seq: torch.Tensor, table: torch.Tensor, offset: int = 0) -> torch.Tensor:
        emb = self.embed(seq, table, self.mask_emb)
        pad_mask = seq != PAD
        semantic_h = self.encoder(emb[..., : self.dim], pad_mask, offset)
        id_h = self.encoder(emb[..., self.dim:], pad_mask, offset)
        allowed = pad_mask[:, None, :].expand(-1, seq.shape[1], -1)
        if not self.cloze:
            allowed = allowed & torch.ones(seq.shape[1], seq.shape[1], dtype=torch.bool, device=seq.device).tril()
        allowed = allowed | torch.eye(seq.shape[1], dtype=torch.bool, device=seq.device)  # no empty rows
        bias = torch.zeros(allowed.shape, device=seq.device).masked_fill(~allowed, MASKED)
        bias = bias.repeat_interleave(self.sem_to_id.attention.num_heads, 0)
        semantic_x = self.id_to_sem(semantic_h, id_h, bias)
        id_x = self.sem_to_id(id_h, semantic_h, bias)
        return torch.cat([semantic_x, id_x], -1)

    def distills(self) -> bool:
        return self.distill_weight > 0 and self.neighbors is not None and bool(self.distill_users.any())

    @torch.no_grad()
    def encode_users(self, users: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(n,) user indices -> (n, 2 * dim) representations of their training sequences (last position)."""
        reps = []
        for chunk in users.split(self.teacher_batch_size):
            seq, _, offset = self.trim(self.user_sequences[chunk])
            reps.append(self.encode(seq, table, offset)[:, -1])
        return torch.cat(reps) if reps else table.new_zeros(0, table.shape[1])

    def start_epoch(self) -> None:
        """Recompute the representations of every user retrieved for a distilled user with the current model, in
        evaluation mode (no dropout), for this epoch's teachers."""
        if self.teacher_refresh != "epoch" or not self.distills():
            return
        training = self.training
        self.eval()
        with torch.no_grad():
            table = self.item_table()
            needed = self.neighbors[self.distill_users].unique()
            reps = table.new_zeros(len(self.user_sequences), table.shape[1])
            reps[needed] = self.encode_users(needed, table)
        self.user_reps = reps
        self.train(training)

    def teacher(self, users: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The teacher of each user: the mean representation of its N retrieved similar users. (b, 2 * dim)"""
        neighbors = self.neighbors[users]  # (b, N)
        if self.teacher_refresh == "epoch":
            if self.user_reps is None:
                self.start_epoch()
            reps = self.user_reps[neighbors]  # (b, N, 2 * dim)
        else:  # every retrieved user of the batch encoded once, now
            unique, inverse = neighbors.unique(return_inverse=True)
            reps = self.encode_users(unique, table.detach())[inverse]
        return reps.mean(1)

    def extra_loss(self, batch, hidden, table) -> torch.Tensor:
        """Retrieval-augmented self-distillation: MSE between a long-tail user's representation (last position)
        and the mean representation of its retrieved similar users (teacher without gradient)."""
        if not self.distills() or "user" not in batch:
            return hidden.new_zeros(())
        rows = self.distill_users[batch["user"]]
        if not rows.any():
            return hidden.new_zeros(())
        student = hidden[rows][:, -1]
        return self.distill_weight * F.mse_loss(student, self.teacher(batch["user"][rows], table))
