"""A tiny random Qwen2 with a locally trained byte-level BPE tokenizer plus SID tokens: nothing is downloaded.

For tests and CPU benchmarks of the decoders (and anything else that needs a causal LM that knows the SID tokens).
The tokenizer is a byte-level BPE trained with ``tokenizers`` on a small generated corpus (initial alphabet
``ByteLevel.alphabet()``), so that saved next to a ``model_type=qwen2`` config it reloads identically through
``AutoTokenizer`` and vLLM (STACK_NOTES: transformers 5.x pitfalls).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sidrec.sid import SidTable

_WORDS = ("user history next item bought viewed rated liked the a of and for with to in on soft vanilla red blue "
          "lotion shampoo brush cable sensor meter tool kit box set pack small large light dark").split()


def build_tokenizer(sid_table: SidTable, vocab_size: int = 400, special: bool = False):
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) with ``sid_table.tokens()`` added, left padding.

    ``special=True`` adds the SID tokens as special tokens (what some alignment recipes do); default: ordinary
    added tokens (they still never split).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [" ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(12)) + ": Next item" for i in range(200)]
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    if special:
        fast.add_special_tokens({"additional_special_tokens": sid_table.tokens()})
    else:
        fast.add_tokens(sid_table.tokens())
    fast.padding_side = "left"
    return fast


def build_tiny_qwen2(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, head_dim: int = 32,
                     seed: int = 0, dtype: torch.dtype = torch.float32):
    """A random-init ``Qwen2ForCausalLM`` (2 heads of ``head_dim``, 1 KV head; head_dim >= 32 for vLLM on CPU)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=hidden_size // head_dim,
                         num_key_value_heads=1, head_dim=head_dim, max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(dtype)
    # Larger output weights than the default init make the next-token distribution peaked, so decoding has a
    # clear order (and ties between items are rare) instead of a near-uniform one.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
    return model.eval()


def save_tiny_lm(out: str | Path, sid_table: SidTable, seed: int = 0, **model_kwargs) -> Path:
    """Build and save tokenizer + model into ``out`` (loadable by ``AutoTokenizer`` / ``AutoModelForCausalLM``
    and vLLM); returns ``out``."""
    out = Path(out)
    tokenizer = build_tokenizer(sid_table)
    model = build_tiny_qwen2(len(tokenizer), seed=seed, **model_kwargs)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
