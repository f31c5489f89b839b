"""Sequence encoders: item-embedding sequences (batch, length, dim) -> hidden states of the same shape.

The transformer blocks follow the FMLP-Rec / BSARec code base (post-norm, GELU feed-forward, LayerNorm eps 1e-12,
N(0, 0.02) init), so published BSARec settings transfer unchanged:
- SASRec (Kang & McAuley, ICDM 2018): causal self-attention.
- BERT4Rec (Sun et al., CIKM 2019): bidirectional self-attention, trained by cloze (see ``model.py``).
- BSARec (Shin et al., AAAI 2024, "An Attentive Inductive Bias for Sequential Recommendation beyond the
  Self-Attention"): each block mixes a frequency-domain branch (low-pass rFFT filter keeping c // 2 + 1 bins, the
  high-frequency residual rescaled by a learned beta) with self-attention: alpha * freq + (1 - alpha) * attention.
- GRU4Rec (Hidasi et al., ICLR 2016): a GRU over the sequence.
Sequences are left-padded with item index 0; ``pad_mask`` is True on real items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -10000.0  # additive attention bias for blocked keys (finite: a padded query row never becomes NaN)


class SelfAttention(nn.Module):
    """Multi-head self-attention with residual + LayerNorm (post-norm)."""

    def __init__(self, dim: int, num_heads: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias,
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(b, length, dim)
        return self.norm(self.dropout(self.out(ctx)) + x)


class FrequencyFilter(nn.Module):
    """BSARec's inductive-bias branch: low-pass in the frequency domain plus a rescaled high-pass residual."""

    def __init__(self, dim: int, c: int, dropout: float):
        super().__init__()
        self.keep = c // 2 + 1
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # (b, length // 2 + 1, dim)
        spectrum[:, self.keep:, :] = 0
        low = torch.fft.irfft(spectrum, n=length, dim=1, norm="ortho")
        mixed = low + self.sqrt_beta ** 2 * (x - low)
        return self.norm(self.dropout(mixed) + x)


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.down(F.gelu(self.up(x)))) + x)


class Block(nn.Module):
    """One transformer block; with ``bsarec_alpha`` set, the token mixer is BSARec's frequency/attention blend."""

    def __init__(self, dim: int, num_heads: int, dropout: float, attn_dropout: float,
                 bsarec_alpha: float | None = None, bsarec_c: int = 5):
        super().__init__()
        self.attention = SelfAttention(dim, num_heads, dropout, attn_dropout)
        self.alpha = bsarec_alpha
        self.frequency = FrequencyFilter(dim, bsarec_c, dropout) if bsarec_alpha is not None else None
        self.feed_forward = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        mixed = self.attention(x, attn_bias)
        if self.frequency is not None:
            mixed = self.alpha * self.frequency(x) + (1 - self.alpha) * mixed
        return self.feed_forward(mixed)


class TransformerEncoder(nn.Module):
    """Learned positions + LayerNorm + dropout, then ``num_layers`` blocks (SASRec, BERT4Rec, BSARec)."""

    def __init__(self, dim: int, max_len: int, num_layers: int, num_heads: int, dropout: float,
                 attn_dropout: float, causal: bool, bsarec_alpha: float | None = None, bsarec_c: int = 5):
        super().__init__()
        self.causal = causal
        self.position = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, num_heads, dropout, attn_dropout, bsarec_alpha, bsarec_c)
                                    for _ in range(num_layers))

    def attention_bias(self, pad_mask: torch.Tensor) -> torch.Tensor:
        """(b, 1, L, L) additive bias: 0 where a query may attend a key, MASKED elsewhere."""
        allowed = pad_mask[:, None, None, :]  # keys that are real items
        if self.causal:
            length = pad_mask.shape[1]
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=pad_mask.device).tril()
        return torch.zeros(allowed.shape, device=pad_mask.device).masked_fill(~allowed, MASKED)

    def forward(self, item_emb: torch.Tensor, pad_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``offset``: leading all-padding columns cut off the batch; positions keep their full-window index."""
        length = item_emb.shape[1]
        positions = self.position(torch.arange(offset, offset + length, device=item_emb.device))[None]
        x = self.dropout(self.norm(item_emb + positions))
        bias = self.attention_bias(pad_mask).to(x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        return x


class GRUEncoder(nn.Module):
    """GRU4Rec: dropout on the inputs, a GRU, a linear map back to the item space (RecBole's variant)."""

    def __init__(self, dim: int, num_layers: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=num_layers, batch_first=True, bias=False)
        self.dense = nn.Linear(dim, dim)

    def forward(self, item_emb: torch.Tensor, pad_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # Left padding: pad embeddings are zero rows, so the GRU state starts from real items in effect.
        hidden, _ = self.gru(self.dropout(item_emb * pad_mask[..., None]))
        return self.dense(hidden)


def build_encoder(model: str, dim: int, max_len: int, cfg) -> nn.Module:
    """The sequence encoder of a backbone name (``cfg``: a BaselineConfig)."""
    common = dict(dim=dim, max_len=max_len, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                  dropout=cfg.dropout, attn_dropout=cfg.attn_dropout)
    if model == "sasrec":
        return TransformerEncoder(**common, causal=True)
    if model == "bert4rec":
        return TransformerEncoder(**common, causal=False)
    if model == "bsarec":
        return TransformerEncoder(**common, causal=True, bsarec_alpha=cfg.bsarec_alpha, bsarec_c=cfg.bsarec_c)
    if model == "gru4rec":
        return GRUEncoder(dim, cfg.num_layers, cfg.dropout)
    raise ValueError(f"unknown backbone {model!r}")


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) for linear and embedding weights, zero biases, unit LayerNorm (FMLP-Rec / BSARec init)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()
    elif isinstance(module, nn.GRU):
        for name, param in module.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(param)
    elif isinstance(module, GRUEncoder):
        # RecBole's GRU4Rec keeps PyTorch's default init for the output dense layer; N(0, 0.02) there shrinks the
        # first logits ~6x and slows early training (``apply`` visits this module after its children).
        module.dense.reset_parameters()

