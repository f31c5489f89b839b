"""Options of ``sidrec baseline``: one dataclass for every backbone, fusion mode and the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidrec.config import opt

Model = Literal["sasrec", "bert4rec", "bsarec", "gru4rec", "popularity", "random"]
Fusion = Literal["id", "asegr", "llmesr", "said", "guided"]
NEURAL_MODELS = ("sasrec", "bert4rec", "bsarec", "gru4rec")


@dataclass
class BaselineConfig:
    """Options of ``sidrec baseline`` (YAML section ``baseline``)."""

    model: Model = opt("sasrec", "backbone, or a sanity baseline (popularity, random)")
    fusion: Fusion = opt("id", "item input representation: id, asegr, llmesr, said, guided")
    data: str = opt("runs/demo/data", "prepared dataset folder (RUN/data)")
    semantics: str | None = opt(None, "semantics folder (RUN/semantics); required by every fusion except id")
    split: Literal["test", "valid"] = opt("test", "split whose samples --out ranks (early stopping always uses valid)")
    out: str | None = opt(None, "predictions JSONL of --split (default RUN/predictions/<model>_<fusion>.jsonl)")
    valid_out: str | None = opt(None, "also write validation-split predictions here")
    checkpoint_dir: str | None = opt(None, "where the best model, training log and config go "
                                           "(default RUN/baselines/<out stem>)")
    seed: int = opt(0, "random seed (initialisation, batching, dropout, the random baseline)")
    device: str = opt("auto", "auto (cuda when available), cpu, cuda or cuda:N")
    topk: int = opt(50, "length of each written ranked list (>= 20)")
    exclude_history: bool = opt(False, "drop a sample's history items from its ranking (off: rank all items, "
                                       "as the evaluator and the generative models do)")
    # Architecture.
    hidden_size: int = opt(64, "embedding / hidden size")
    num_layers: int = opt(2, "transformer blocks (GRU layers for gru4rec)")
    num_heads: int = opt(2, "attention heads")
    dropout: float = opt(0.2, "hidden dropout")
    attn_dropout: float = opt(0.2, "attention-probability dropout")
    max_len: int | None = opt(None, "longest input sequence (default: the dataset's max_history)")
    bsarec_c: int = opt(5, "BSARec: frequencies kept by the low-pass filter (c // 2 + 1 rFFT bins)")
    bsarec_alpha: float = opt(0.7, "BSARec: weight of the frequency (inductive-bias) branch vs attention")
    mask_prob: float = opt(0.2, "BERT4Rec: fraction of positions masked in cloze training")
    last_only_prob: float = opt(0.0, "BERT4Rec: share of training rows that mask only their last item (the "
                                     "next-item case met at inference)")
    # Training.
    train_mode: Literal["auto", "sequence", "prefix"] = opt(
        "auto", "sequence: one row per user, loss at every position; prefix: one row per (prefix -> next) pair, "
                "loss at the last position (BSARec/FMLP-Rec recipe); auto: prefix for bsarec, sequence otherwise")
    trim_padding: Literal["auto", "on", "off"] = opt(
        "auto", "cut all-padding columns off each batch and group training rows of similar length into batches "
                "(exact for sasrec, bert4rec, gru4rec; changes bsarec's FFT window); auto: on except for bsarec")
    loss: Literal["ce", "sampled"] = opt("ce", "ce: softmax over all items; sampled: softmax over the target and "
                                               "--num-negatives uniform negatives (not for headline numbers)")
    num_negatives: int = opt(100, "negatives per position for --loss sampled")
    batch_size: int = opt(256, "training batch size (sequences)")
    eval_batch_size: int = opt(512, "evaluation batch size (samples)")
    lr: float = opt(1e-3, "Adam learning rate")
    weight_decay: float = opt(0.0, "Adam weight decay")
    epochs: int = opt(200, "maximum training epochs")
    patience: int = opt(10, "stop after this many evaluations without a better validation NDCG@10")
    eval_every: int = opt(1, "validate every N epochs")
    max_minutes: float | None = opt(None, "wall-clock budget for training; the best model so far is used, "
                                        "and a larger budget later goes on from where it stopped")
    grad_clip: float = opt(5.0, "gradient-norm clip (0 = off)")
    # Fusion modes.
    semantic_dropout: float = opt(0.1, "dropout on projected semantic embeddings")
    llmesr_distill_weight: float = opt(0.1, "LLM-ESR: weight of the retrieval-augmented self-distillation loss "
                                            "(0 = off)")
    llmesr_neighbors: int = opt(10, "LLM-ESR: N, the similar users retrieved per user by the semantic user "
                                    "representation; the teacher is the mean of their representations")
    llmesr_tail_user_frac: float = opt(0.8, "LLM-ESR: distillation applies to the long-tail users, those whose "
                                            "training sequence is within this quantile of lengths (1 = every user)")
    llmesr_teacher_refresh: Literal["epoch", "batch"] = opt(
        "epoch", "LLM-ESR: when the retrieved users' representations are recomputed by the current model: epoch "
                 "(before each epoch, without dropout: one extra inference pass) or batch (in every training step, "
                 "with dropout, as the official code does: about N times the encoder cost)")
    said_lm: str | None = opt(None, "SAID: path of a local causal LM (frozen); without it the projector is "
                                    "trained to reconstruct the item's text embedding instead")
    said_tokens: int = opt(2, "SAID: LLM input embeddings produced per item")
    said_epochs: int = opt(3, "SAID: projector pre-training epochs")
    said_max_text_tokens: int = opt(32, "SAID: item-text tokens reconstructed by the LM")
    guided_base_dim: int | None = opt(None, "guided: size of the reduced base ID embedding "
                                            "(default hidden_size // 2; the rest is attribute-guided)")
    force: bool = opt(False, "retrain even when the checkpoint folder holds a model of the same options")

    def problems(self) -> list[str]:
        p = []
        if self.model in ("popularity", "random") and self.fusion != "id":
            p.append(f"fusion: {self.model} uses no item representation; leave --fusion id")
        if self.fusion != "id" and not self.semantics and self.model in NEURAL_MODELS:
            p.append(f"semantics: --fusion {self.fusion} reads RUN/semantics (text_emb.npy, sensory_emb.npy, ...); "
                     "give --semantics")
        if self.topk < 20:
            p.append("topk: must be >= 20 (the evaluator's largest K)")
        if self.hidden_size % max(1, self.num_heads):
            p.append(f"num_heads: hidden_size {self.hidden_size} is not divisible by {self.num_heads}")
        for name in ("dropout", "attn_dropout", "semantic_dropout", "mask_prob"):
            if not 0 <= getattr(self, name) < 1:
                p.append(f"{name}: must be in [0, 1)")
        if not 0 <= self.last_only_prob <= 1:
            p.append("last_only_prob: must be in [0, 1]")
        if not 0 <= self.bsarec_alpha <= 1:
            p.append("bsarec_alpha: must be in [0, 1]")
        if self.bsarec_c < 1:
            p.append("bsarec_c: must be >= 1")
        for name in ("batch_size", "eval_batch_size", "epochs", "patience", "eval_every", "hidden_size",
                     "num_layers", "num_heads", "num_negatives", "said_tokens"):
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1")
        if self.max_len is not None and self.max_len < 2:
            p.append("max_len: must be >= 2")
        if self.guided_base_dim is not None and not 0 < self.guided_base_dim < self.hidden_size:
            p.append("guided_base_dim: must be in (0, hidden_size)")
        if self.lr <= 0:
            p.append("lr: must be > 0")
        if self.llmesr_distill_weight < 0:
            p.append("llmesr_distill_weight: must be >= 0 (0 turns the self-distillation off)")
        if self.llmesr_neighbors < 1:
            p.append("llmesr_neighbors: must be >= 1 (the teacher averages that many retrieved users)")
        if not 0 < self.llmesr_tail_user_frac <= 1:
            p.append("llmesr_tail_user_frac: must be in (0, 1] (the share of users, shortest sequences first, "
                     "that are distilled; 1 = every user)")
        return p

    @property
    def name(self) -> str:
        """Model name used in file names and tables: ``sasrec_id``, ``popularity``."""
        return self.model if self.model in ("popularity", "random") else f"{self.model}_{self.fusion}"

    def out_path(self) -> Path:
        """Test predictions path: ``--out`` or ``RUN/predictions/<name>.jsonl`` beside ``--data``."""
        if self.out:
            return Path(self.out)
        return Path(self.data).resolve().parent / "predictions" / f"{self.name}.jsonl"

    def outputs(self) -> list[tuple[str, Path]]:
        """(split, predictions path) pairs to write: ``--split`` to ``--out``, plus valid to ``--valid-out``."""
        pairs = [(self.split, self.out_path())]
        if self.valid_out and self.split != "valid":
            pairs.append(("valid", Path(self.valid_out)))
        return pairs

    def checkpoint_path(self) -> Path:
        """Training folder: ``--checkpoint-dir`` or ``RUN/baselines/<out stem>`` (``<out>.train`` elsewhere)."""
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir)
        out = self.out_path()
        if out.parent.name == "predictions":
            return out.parent.parent / "baselines" / out.stem
        return out.with_name(out.stem + ".train")

    def resolved_trim(self) -> bool:
        return self.trim_padding == "on" or (self.trim_padding == "auto" and self.model != "bsarec")

    def resolved_train_mode(self) -> str:
        if self.train_mode != "auto":
            return self.train_mode
        return "prefix" if self.model == "bsarec" else "sequence"
