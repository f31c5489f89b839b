"""Item input representations ("fusion modes"): each module returns the item table (n_items + 1, dim), row 0 =
padding, used both as the backbone's input embeddings and as the output layer (tied weights).

- ``id``: a learned item-ID embedding.
- ``asegr``: early fusion at the input layer: ID embedding + a learned projection of the item's sensory-attribute
  embedding (ASEGR's attribute-enhanced item input).
- ``guided``: guided embedding refinement: [reduced-dimension ID embedding ; attribute-guided embedding projected
  from the sensory attributes], concatenated to the model width.
- ``said``: SAID (Hu et al., 2024): frozen item embeddings learned by the projector of :mod:`sidrec.baselines.said`
  (ID -> a few LLM input embeddings), adapted to the model width, plus an ID residual.
The ``llmesr`` dual view lives in :mod:`sidrec.baselines.model` because it changes the encoder path too.
"""

from __future__ import annotations

import torch
from torch import nn


class IdItems(nn.Module):
    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)

    def forward(self) -> torch.Tensor:
        return self.embedding.weight


class FrozenFeatures(nn.Module):
    """A frozen semantic table (n_items + 1, d) with a trainable projection to ``dim``; unknown items map to 0."""

    def __init__(self, features: torch.Tensor, known: torch.Tensor, dim: int, dropout: float, hidden: int = 0):
        super().__init__()
        scale = features[known].norm(dim=1).mean().clamp_min(1e-8) if known.any() else torch.tensor(1.0)
        self.register_buffer("features", features / scale, persistent=False)  # unit average norm
        self.register_buffer("known", known.float()[:, None], persistent=False)
        d = features.shape[1]
        self.project = (nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, dim)) if hidden
                        else nn.Linear(d, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self) -> torch.Tensor:
        return self.dropout(self.project(self.features)) * self.known


class AsegrItems(nn.Module):
    """ID embedding + projected sensory embedding, summed at the input layer."""

    def __init__(self, n_items: int, dim: int, sensory: torch.Tensor, known: torch.Tensor, dropout: float):
        super().__init__()
        self.dim = dim
        self.ids = IdItems(n_items, dim)
        self.sensory = FrozenFeatures(sensory, known, dim, dropout)

    def forward(self) -> torch.Tensor:
        return self.ids() + self.sensory()


class GuidedItems(nn.Module):
    """[ID embedding of ``base_dim`` ; attribute-guided embedding of ``dim - base_dim``]."""

    def __init__(self, n_items: int, dim: int, base_dim: int, attributes: torch.Tensor, known: torch.Tensor,
                 dropout: float):
        super().__init__()
        self.dim = dim
        self.base = IdItems(n_items, base_dim)
        self.guided = FrozenFeatures(attributes, known, dim - base_dim, dropout, hidden=2 * (dim - base_dim))

    def forward(self) -> torch.Tensor:
        return torch.cat([self.base(), self.guided()], dim=1)


class SaidItems(nn.Module):
    """SAID embeddings (frozen) through a trainable adapter, plus an ID residual for collaborative signal."""

    def __init__(self, n_items: int, dim: int, said_emb: torch.Tensor, known: torch.Tensor, dropout: float):
        super().__init__()
        self.dim = dim
        self.ids = IdItems(n_items, dim)
        self.said = FrozenFeatures(said_emb, known, dim, dropout, hidden=2 * dim)

    def forward(self) -> torch.Tensor:
        return self.said() + self.ids()
