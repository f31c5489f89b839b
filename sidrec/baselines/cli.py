"""``sidrec baseline``: train a discriminative sequential recommender (or a sanity baseline) and write predictions."""

from __future__ import annotations

import click

from sidrec.baselines.config import BaselineConfig
from sidrec.config import click_options, resolve


@click.command("baseline")
@click_options(BaselineConfig)
def baseline(config_path, overrides) -> None:
    """Train a baseline on RUN/data, rank every item for each test sample, write predictions JSONL.

    \b
    sidrec baseline --model popularity --data runs/demo/data --out runs/demo/predictions/popularity.jsonl
    sidrec baseline --model sasrec --fusion id --data RUN/data --out RUN/predictions/sasrec_id.jsonl \\
        --config configs/baselines/sasrec.yaml --seed 0 --device auto
    sidrec baseline --model sasrec --fusion llmesr --data RUN/data --semantics RUN/semantics \\
        --config configs/baselines/sasrec.yaml
    """
    from sidrec.baselines.train import train_baseline

    cfg = resolve(BaselineConfig, config_path, overrides, section="baseline")
    path = train_baseline(cfg)
    click.echo(f"predictions: {path}")
