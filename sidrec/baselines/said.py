"""SAID item embeddings (Hu et al., "Enhancing Sequential Recommendation via LLM-based Semantic Embedding
Learning", WWW 2024 companion).

A projector maps each item ID to ``k`` vectors in the input-embedding space of a frozen causal LM and is trained so
that the LM, reading those vectors as a soft prompt, reconstructs the item's text (next-token loss on the text
only). The learned vectors, flattened to (k * d_lm,), are the item embeddings the backbone then consumes.

Without a local LM (``--said-lm`` unset) the same projector is trained to reconstruct the item's text embedding
from ``RUN/semantics/text_emb.npy`` (cosine loss), a cheap stand-in for the LM objective; the summary says which
objective ran.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from sidrec.artifacts import atomic_path, check_model_source, config_hash, write_json
from sidrec.data.store import CanonicalData

log = logging.getLogger(__name__)


def item_texts(data: CanonicalData) -> list[str]:
    """One text per item: title, brand, categories, description (empty parts skipped)."""
    texts = []
    for row in data.items:
        parts = [row["title"], row["brand"], ", ".join(row["categories"] or []), row["description"]]
        texts.append(". ".join(p for p in parts if p))
    return texts


class SaidProjector(nn.Module):
    """Item index -> ``k`` LM input embeddings: a learned ID code through a two-layer MLP. (b,) -> (b, k, d)"""

    def __init__(self, n_items: int, k: int, d_out: int, code_dim: int = 128):
        super().__init__()
        self.k, self.d_out = k, d_out
        self.code = nn.Embedding(n_items + 1, code_dim)
        self.mlp = nn.Sequential(nn.Linear(code_dim, 4 * code_dim), nn.GELU(), nn.Linear(4 * code_dim, k * d_out))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.code(items)).view(len(items), self.k, self.d_out)


def said_embeddings(cfg, data: CanonicalData, ckpt: Path, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(table (n_items + 1, k * d), known (n_items + 1,)) trained once per option set and cached in ``ckpt``."""
    texts = item_texts(data)
    known = torch.tensor([False] + [bool(t) for t in texts])
    key = config_hash({"lm": cfg.said_lm, "k": cfg.said_tokens, "epochs": cfg.said_epochs, "seed": cfg.seed,
                       "tokens": cfg.said_max_text_tokens, "semantics": cfg.semantics, "n": len(texts)})
    cache = ckpt / f"said_emb-{key}.pt"
    if cache.is_file():
        return torch.load(cache), known
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.said_lm:
        table, losses = _train_with_lm(cfg, texts, known, device, gen)
        objective = f"frozen causal LM {cfg.said_lm} reconstructs the item text (mean next-token loss per epoch)"
    else:
        log.info("SAID: no --said-lm given; training the projector to reconstruct text_emb.npy instead of an LM")
        from sidrec.baselines.semantic import load_item_embeddings

        text_emb, text_known = load_item_embeddings(cfg.semantics, "text", data.item_ids)
        known = known & text_known
        table, losses = _train_with_text_embedding(cfg, text_emb, known, device, gen)
        objective = "reconstruct text_emb.npy (1 - cosine, last batch of each epoch)"
    table = table * known[:, None]
    with atomic_path(cache) as tmp:
        torch.save(table, tmp)
    write_json(cache.with_suffix(".json"), {"objective": objective, "losses": losses, "items": int(known.sum())})
    return table, known


def _batches(items: torch.Tensor, batch_size: int, gen: torch.Generator):
    order = items[torch.randperm(len(items), generator=gen)]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _train_with_text_embedding(cfg, text_emb: torch.Tensor, known: torch.Tensor, device, gen
                               ) -> tuple[torch.Tensor, list[float]]:
    d = text_emb.shape[1]
    projector = SaidProjector(len(known) - 1, cfg.said_tokens, d).to(device)
    decoder = nn.Linear(d, d).to(device)
    optimizer = torch.optim.Adam([*projector.parameters(), *decoder.parameters()], lr=1e-3)
    target = F.normalize(text_emb, dim=1).to(device)
    items = torch.nonzero(known).squeeze(1)
    losses = []
    for _ in range(cfg.said_epochs * 20):  # cheap: many passes of a small MLP
        for batch in _batches(items, 256, gen):
            batch = batch.to(device)
            recon = decoder(projector(batch).mean(1))
            loss = (1 - F.cosine_similarity(recon, target[batch], dim=1)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
    log.info("SAID (text-embedding objective): final reconstruction loss %.4f", losses[-1])
    with torch.no_grad():
        return projector(torch.arange(len(known), device=device)).flatten(1).cpu(), losses


def _train_with_lm(cfg, texts: list[str], known: torch.Tensor, device, gen) -> tuple[torch.Tensor, list[float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_source(cfg.said_lm, "said_lm")
    tokenizer = AutoTokenizer.from_pretrained(cfg.said_lm)
    lm = AutoModelForCausalLM.from_pretrained(cfg.said_lm, dtype=torch.float32).to(device).eval()
    lm.requires_grad_(False)
    embed = lm.get_input_embeddings()
    d = embed.embedding_dim
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    token_ids = [tokenizer(t, add_special_tokens=False)["input_ids"][: cfg.said_max_text_tokens] + [eos]
                 for t in texts]
    projector = SaidProjector(len(known) - 1, cfg.said_tokens, d).to(device)
    optimizer = torch.optim.Adam(projector.parameters(), lr=1e-3)
    items = torch.nonzero(known).squeeze(1)
    k = cfg.said_tokens
    losses = []
    for epoch in range(cfg.said_epochs):
        total, n = 0.0, 0
        for batch in tqdm(_batches(items, 32, gen), desc=f"SAID epoch {epoch + 1}", leave=False, disable=None):
            seqs = [token_ids[i - 1] for i in batch.tolist()]
            width = max(map(len, seqs))
            tokens = torch.full((len(seqs), width), eos, dtype=torch.int64)
            labels = torch.full((len(seqs), k + width), -100, dtype=torch.int64)
            attention = torch.zeros(len(seqs), k + width, dtype=torch.int64)
            for r, s in enumerate(seqs):
                tokens[r, : len(s)] = torch.tensor(s)
                labels[r, k: k + len(s)] = torch.tensor(s)
                attention[r, : k + len(s)] = 1
            tokens, labels, attention = tokens.to(device), labels.to(device), attention.to(device)
            inputs = torch.cat([projector(batch.to(device)), embed(tokens)], 1)  # (b, k + width, d)
            loss = lm(inputs_embeds=inputs, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        losses.append(total / max(1, n))
        log.info("SAID epoch %d: LM reconstruction loss %.4f", epoch + 1, losses[-1])
    with torch.no_grad():
        return projector(torch.arange(len(known), device=device)).flatten(1).cpu(), losses
