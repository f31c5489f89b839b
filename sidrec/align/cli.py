"""``sidrec model init-tiny`` and ``sidrec align``."""

from __future__ import annotations

import json

import click

from sidrec.align.stage import AlignConfig
from sidrec.align.tiny import TinyModelConfig
from sidrec.config import click_options, resolve


@click.group()
def model() -> None:
    """Base models for the LLM stages."""


@model.command("init-tiny")
@click_options(TinyModelConfig)
def init_tiny_command(config_path, overrides) -> None:
    """Build a small Qwen2 locally, with a byte-level BPE tokenizer trained on the catalogue text.

    \b
    sidrec model init-tiny --data runs/demo/data --out runs/demo/base_model
    sidrec model init-tiny --data runs/industrial/data --out runs/industrial/base_model \\
        --hidden-size 256 --num-layers 4 --vocab-size 8000
    """
    from sidrec.align.tiny import build_tiny_model

    cfg = resolve(TinyModelConfig, config_path, overrides, section="model")
    out = build_tiny_model(cfg)
    info = json.loads((out / "tiny_model.json").read_text())
    click.echo(f"{out}: {info['n_parameters'] / 1e6:.2f}M parameters, vocabulary {info['vocab_size']}")


@click.command("align")
@click_options(AlignConfig)
def align(config_path, overrides) -> None:
    """Add SID tokens to a base model (SA-Init) and build the TS-Align / SFT dataset into RUN/align.

    \b
    sidrec align --data runs/demo/data --sids runs/demo/sids --model runs/demo/base_model --out runs/demo/align
    sidrec align --data R/data --sids R/sids --model Qwen/Qwen2.5-0.5B-Instruct --out R/align
    sidrec align ... --no-sa-init --no-ts-align        # ablation: random init, main task only
    """
    from sidrec.align.stage import run_align

    cfg = resolve(AlignConfig, config_path, overrides, section="align")
    out = run_align(cfg)
    stats = json.loads((out / "stats.json").read_text())
    click.echo(f"{out}: vocabulary {stats['vocab_size']} ({stats['n_sid_tokens']} SID tokens), "
               f"SA-Init {stats['sa_init']['initialised']} tokens")
    for split, info in stats["dataset"].items():
        tasks = ", ".join(f"{t} {n}" for t, n in info["per_task"].items())
        click.echo(f"  {split}: {info['n']} examples ({tasks})")
