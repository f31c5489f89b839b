"""``sidrec decode``: constrained beam decoding of a trained model into a predictions file."""

from __future__ import annotations

import click

from sidrec.config import click_options, resolve
from sidrec.decode.run import DecodeConfig


@click.command("decode")
@click_options(DecodeConfig)
def decode(config_path, overrides) -> None:
    """Recommend top-K items per sample by trie-constrained beam search over SIDs; writes predictions JSONL.

    \b
    sidrec decode --model runs/demo/grpo/final --data runs/demo/data   # -> runs/demo/predictions/grpo.jsonl
    sidrec decode --model runs/demo/sft/final --sids runs/demo/sids --data runs/demo/data \\
        --backend torch --beams 50 --topk 20 --split test --out runs/demo/predictions/sft.jsonl
    """
    from sidrec.decode.run import decode as run_decode

    cfg = resolve(DecodeConfig, config_path, overrides, section="decode")
    click.echo(str(run_decode(cfg)))
