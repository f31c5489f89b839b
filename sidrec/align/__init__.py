"""Stage ``align``: SID tokens in the LLM's vocabulary, SA-Init, TS-Align data, and the one prompt formatter.

- :func:`init_tiny_model` -- a small local Qwen2 with a tokenizer trained on the catalogue (``sidrec model init-tiny``)
- :func:`run_align` / :class:`AlignConfig` -- SID tokens + SA-Init + keywords + SFT dataset into ``RUN/align``
- :func:`build_prompts` -- THE place prompts are formatted (SFT, decoding, GRPO), in the model's prompt format
  (``sequence`` or ``instruction``, :class:`PromptSettings`, saved as ``sidrec.json`` in every model folder)
- :func:`add_sid_tokens`, :func:`sa_init` -- the building blocks, for other base models
"""

from sidrec.align.prompts import PromptSettings, build_prompts, task_prompts
from sidrec.align.stage import AlignConfig, run_align
from sidrec.align.tiny import TinyModelConfig, init_tiny_model
from sidrec.align.tokens import add_sid_tokens, keyword_token_ids, sa_init

__all__ = ["AlignConfig", "PromptSettings", "TinyModelConfig", "add_sid_tokens", "build_prompts", "init_tiny_model",
           "keyword_token_ids", "run_align", "sa_init", "task_prompts"]
