"""``sidrec model init-tiny``: a small Qwen2 built locally, with a byte-level BPE tokenizer trained on the catalogue.

Nothing is downloaded: the tokenizer is trained (sidrec.bpe, deterministic) on the prepared dataset's text (titles,
descriptions, brands, categories, reviews) using Qwen2's own normaliser and pre-tokenizer, and saved as a
``Qwen2Tokenizer``, so ``AutoTokenizer`` and vLLM reload it identically (STACK_NOTES: a saved WordLevel model would
be rebuilt as an empty byte-level BPE). It gets a minimal ChatML chat template (``<|im_start|>``/``<|im_end|>``,
no system prompt), like the Qwen2.5-Instruct models it stands in for, so prompts take the same code path.

``head_dim`` stays >= 32 because vLLM's CPU attention refuses 16. An optional short causal-LM warm-up on the
catalogue text (``lm_epochs``) gives the word embeddings some meaning, which is what SA-Init builds on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sidrec.artifacts import write_json
from sidrec.config import opt
from sidrec.stage import MARKER_FILE, Stage, read_marker, run_stage

log = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# ChatML without the default system message: every token counts on a 2-core CPU.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class TinyModelConfig:
    """Options of ``sidrec model init-tiny``."""

    data: str = opt("runs/demo/data", "prepared dataset folder (RUN/data) whose text trains the tokenizer")
    out: str = opt("runs/demo/base_model", "output folder (model + tokenizer, loadable by from_pretrained and vLLM)")
    vocab_size: int = opt(2000, "BPE vocabulary size (before SID tokens are added)")
    hidden_size: int = opt(128, "hidden size")
    num_layers: int = opt(2, "transformer layers")
    head_dim: int = opt(32, "attention head dimension (>= 32: vLLM's CPU attention refuses 16)")
    num_kv_heads: int = opt(2, "key/value heads (grouped-query attention)")
    intermediate_size: int = opt(512, "MLP inner size")
    max_position_embeddings: int = opt(1024, "longest sequence the model accepts")
    tie_word_embeddings: bool = opt(True, "share input embeddings and LM head (as Qwen2.5-0.5B does)")
    attention_dropout: float = opt(0.0, "dropout on attention weights (Qwen2's only dropout; regularises small "
                                        "data)")
    lm_epochs: float = opt(1.0, "causal-LM warm-up epochs on the catalogue text (0 = random init)")
    lm_batch_size: int = opt(32, "warm-up batch size (texts)")
    lm_learning_rate: float = opt(3e-3, "warm-up learning rate")
    lm_max_texts: int = opt(20000, "at most this many texts in the warm-up (reviews are sampled)")
    seed: int = opt(0, "random seed")
    force: bool = opt(False, "rebuild even when --out holds a model made with the same options")

    def problems(self) -> list[str]:
        p = []
        for name in ("hidden_size", "intermediate_size", "lm_batch_size", "lm_max_texts", "num_kv_heads"):
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1")
        if self.max_position_embeddings < 64:
            p.append("max_position_embeddings: must be >= 64 (a prompt holds a history of SIDs)")
        if self.lm_learning_rate <= 0:
            p.append("lm_learning_rate: must be > 0")
        if self.head_dim < 32:
            p.append("head_dim: must be >= 32 (vLLM's CPU attention refuses smaller heads)")
        elif self.hidden_size < 1 or self.num_kv_heads < 1:
            pass
        elif self.hidden_size % self.head_dim:
            p.append(f"hidden_size ({self.hidden_size}) must be a multiple of head_dim ({self.head_dim})")
        elif (self.hidden_size // self.head_dim) % self.num_kv_heads:
            p.append(f"num_kv_heads ({self.num_kv_heads}) must divide the number of heads "
                     f"({self.hidden_size // self.head_dim})")
        if self.vocab_size < 300:
            p.append("vocab_size: must be >= 300 (256 byte symbols + special tokens + merges)")
        if self.num_layers < 1 or self.lm_epochs < 0:
            p.append("num_layers >= 1 and lm_epochs >= 0 required")
        if not 0.0 <= self.attention_dropout < 1.0:
            p.append("attention_dropout: must be in [0, 1)")
        return p


def catalogue_texts(data, max_reviews: int | None = None, seed: int = 0) -> list[str]:
    """Item titles, descriptions, brands and categories, then review texts (optionally sampled), of a dataset."""
    import numpy as np

    items = data.items
    texts = [t for col in ("title", "description", "brand") for t in items[col] if t]
    texts += sorted({c for cats in items["categories"] for c in cats})
    reviews = [t for t in data.reviews["text"] if t]
    if max_reviews is not None and len(reviews) > max_reviews:
        keep = np.random.default_rng(seed).choice(len(reviews), size=max_reviews, replace=False)
        reviews = [reviews[i] for i in sorted(keep)]
    return texts + reviews


def train_tokenizer(texts: list[str] | Iterator[str], vocab_size: int):
    """A byte-level BPE trained on ``texts`` and wrapped as a ``Qwen2Tokenizer`` (EOS ``<|im_end|>``, PAD
    ``<|endoftext|>``, ChatML template, left padding for batched generation)."""
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from sidrec.bpe import count_words, learn_bpe

    # Exactly the normaliser / pre-tokenizer Qwen2Tokenizer rebuilds on load, so the merges learnt here apply
    # to the same pieces after a reload. The merges come from sidrec.bpe (ties broken by string order), not from
    # tokenizers' BpeTrainer, whose result changes from process to process.
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    vocab, merges = learn_bpe(count_words(texts, normalizers.NFC(), pre_tokenizer), vocab_size,
                              special_tokens=[PAD_TOKEN, IM_START, IM_END],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token=IM_END, pad_token=PAD_TOKEN)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def build_model(cfg: TinyModelConfig, vocab_size: int, pad_token_id: int, eos_token_id: int):
    """A randomly initialised ``Qwen2ForCausalLM`` of the configured shape."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    n_heads = cfg.hidden_size // cfg.head_dim
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=n_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, attention_dropout=cfg.attention_dropout, bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, use_cache=True,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    return model


def lm_warmup(model, tokenizer, texts: list[str], epochs: float, batch_size: int, learning_rate: float,
              seed: int = 0, max_length: int = 128) -> dict:
    """Train ``model`` as a causal LM on ``texts`` for ``epochs`` (a plain AdamW loop with cosine decay).

    Returns ``{"steps", "loss_first", "loss_last", "seconds", "tokens_per_s"}``.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    n_steps = max(1, math.ceil(epochs * len(texts) / batch_size))
    opt_ = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt_, lambda s: min(1.0, (s + 1) / max(1, n_steps // 20)) * 0.5 * (1 + math.cos(math.pi * s / n_steps)))
    model.train()
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(math.ceil(epochs) + 1)])
    losses, n_tokens, start = [], 0, time.perf_counter()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    for step in tqdm(range(n_steps), desc="LM warm-up", leave=False):
        batch = [texts[i] + tokenizer.eos_token for i in order[step * batch_size:(step + 1) * batch_size]]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt_.step()
        sched.step()
        opt_.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        n_tokens += int(enc["attention_mask"].sum())
    tokenizer.padding_side = padding_side
    model.eval()
    seconds = time.perf_counter() - start
    return {"steps": n_steps, "loss_first": losses[0], "loss_last": float(np.mean(losses[-10:])),
            "seconds": round(seconds, 2), "tokens_per_s": round(n_tokens / max(seconds, 1e-9), 1)}


def init_tiny_model(data_dir: str | Path, out_dir: str | Path, **options) -> Path:
    """Build a tiny Qwen2 + catalogue tokenizer from ``data_dir`` (RUN/data) into ``out_dir``; returns ``out_dir``.

    ``options`` are fields of :class:`TinyModelConfig`. Skipped when ``out_dir`` already holds a model built with
    the same options from the same data (``force=True`` rebuilds).
    """
    return build_tiny_model(TinyModelConfig(data=str(data_dir), out=str(out_dir), **options))


class TinyModelStage(Stage[TinyModelConfig]):
    """A tiny Qwen2 and its tokenizer, trained on the prepared dataset's text (the module docstring).

    The dataset is an input: the model depends on its content (its marker's digest), not on its path, so the same
    data reached through another path (a benchmark arm's symlink) reuses the model instead of rebuilding it.
    """

    name = "init-tiny"
    outputs = ("config.json", "tokenizer_config.json", "tiny_model.json")
    saves_config = False  # tiny_model.json holds the options, beside the model's own config.json

    def inputs(self, cfg: TinyModelConfig) -> dict[str, str | Path | None]:
        return {"data": cfg.data}

    def legacy_view(self, cfg: TinyModelConfig) -> dict:
        return {k: v for k, v in vars(cfg).items() if k not in ("out", "force", "data")} | {
            "data": _legacy_data_identity(Path(cfg.data))}

    def run(self, cfg: TinyModelConfig, out: Path) -> None:
        import torch

        from sidrec.data import load_data

        data = load_data(cfg.data)
        texts = catalogue_texts(data, max_reviews=cfg.lm_max_texts, seed=cfg.seed)
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
        model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
        n_params = sum(p.numel() for p in model.parameters())
        log.info("tiny Qwen2: %d layers, hidden %d, vocab %d, %.2fM parameters", cfg.num_layers, cfg.hidden_size,
                 len(tokenizer), n_params / 1e6)
        warmup = None
        if cfg.lm_epochs > 0:
            torch.manual_seed(cfg.seed)
            warmup = lm_warmup(model, tokenizer, texts[: cfg.lm_max_texts], cfg.lm_epochs, cfg.lm_batch_size,
                               cfg.lm_learning_rate, cfg.seed)
            log.info("LM warm-up: %d steps, loss %.2f -> %.2f in %.0f s", warmup["steps"], warmup["loss_first"],
                     warmup["loss_last"], warmup["seconds"])
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        write_json(out / "tiny_model.json", {"config": vars(cfg), "n_parameters": n_params,
                                             "vocab_size": len(tokenizer), "n_texts": len(texts),
                                             "lm_warmup": warmup})


def _legacy_data_identity(data: Path) -> str:
    """What a pre-format-2 marker recorded for the dataset: its own marker's options hash, else its path."""
    marker = read_marker(data / MARKER_FILE)
    return marker.legacy_hash if marker is not None and marker.legacy_hash else str(data)


def build_tiny_model(cfg: TinyModelConfig) -> Path:
    """:func:`init_tiny_model` from a resolved config."""
    return run_stage(TinyModelStage(), cfg)
