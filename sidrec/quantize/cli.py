"""``sidrec quantize`` and ``sidrec sids inspect``: thin wrappers around :mod:`sidrec.quantize`."""

from __future__ import annotations

import click

from sidrec.config import click_options, resolve
from sidrec.quantize.stage import QuantizeConfig


@click.command("quantize")
@click_options(QuantizeConfig)
def quantize(config_path, overrides) -> None:
    """Quantize item embeddings into unique semantic IDs (sids.json, rqvae.pt, stats.json).

    \b
    sidrec quantize --semantics runs/demo/semantics --out runs/demo/sids --config configs/quantize/demo.yaml
    sidrec quantize --config configs/quantize/industrial.yaml --semantics R/semantics --out R/sids
    sidrec quantize --method rq-kmeans --collision extra_level --semantics R/semantics --out R/sids_rqk
    sidrec quantize --semantics R/semantics --data R/data --collaborative-weight 1 --out R/sids_cf
    """
    import json

    from rich.console import Console

    from sidrec.quantize.stage import run_quantize

    cfg = resolve(QuantizeConfig, config_path, overrides, section="quantize")
    out = run_quantize(cfg)
    stats = json.loads((out / "stats.json").read_text())
    console = Console()
    final, before = stats["final"], stats["before_resolution"]
    console.print(f"[bold]quantize[/] -> {out}: {stats['n_items']} items, levels {stats['codebook_sizes']}, "
                  f"recon MSE {stats['reconstruction_mse']:.4f}")
    if stats.get("collaborative"):
        cf = stats["collaborative"]
        console.print(f"  collaborative view: {cf['model']} item table ({cf['dim']} dims, weight {cf['weight']}) "
                      f"from {cf['checkpoint']}; {cf['items_without_training_interactions']} items without a "
                      "training interaction")
    console.print(f"  collisions before resolution: {before['collision_rate']:.2%} of items, largest group "
                  f"{before['largest_collision_group']}; after ({stats['collision_resolution']['strategy']}): "
                  f"{final['unique_fraction']:.0%} unique")
    for lv, level in enumerate(final["levels"]):
        console.print(f"  level {lv}: {level['used_codes']}/{level['codebook_size']} codes used, perplexity "
                      f"{level['perplexity']:.1f}, largest prefix group {level['largest_prefix_group']}")
    if "text_cosine" in final:
        tc = final["text_cosine"]
        console.print(f"  text cosine: same first code {tc['same_first_code_cosine']:.3f} vs random "
                      f"{tc['random_pair_cosine']:.3f}")


@click.group()
def sids() -> None:
    """Inspect semantic IDs."""


@sids.command("inspect")
@click.argument("sids_dir", type=click.Path(exists=True))
@click.option("--prefix", default="", help="code prefix: '<a_3><b_1>' or '3,1' (empty: summarise first-level codes)")
@click.option("--data", "data_dir", default=None, help="RUN/data for item titles (default: from the saved config)")
@click.option("--limit", default=20, show_default=True, help="items / groups shown")
def inspect_command(sids_dir: str, prefix: str, data_dir: str | None, limit: int) -> None:
    """Show the items under a SID prefix and the keywords they share.

    \b
    sidrec sids inspect runs/demo/sids                    # first-level codes: sizes and shared keywords
    sidrec sids inspect runs/demo/sids --prefix '<a_3>'   # the items under <a_3>
    """
    from rich.console import Console

    from sidrec.quantize.inspect import inspect_prefix

    inspect_prefix(Console(), sids_dir, prefix, data_dir, limit)
