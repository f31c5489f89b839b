"""``sidrec data prepare`` and ``sidrec data stats``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sidrec.config import click_options, resolve
from sidrec.data.prepare import PrepareConfig


@click.group()
def data() -> None:
    """Prepare canonical datasets and inspect them."""


@data.command("prepare")
@click_options(PrepareConfig)
def prepare_command(config_path, overrides) -> None:
    """Convert a source (synthetic, amazon2018, amazon2023, minionerec, seqfile, lcrec) into RUN/data.

    \b
    sidrec data prepare --source synthetic --seed 0 --out runs/demo/data
    sidrec data prepare --source minionerec --path ../shared/data/minionerec-amazon18 \\
        --dataset Industrial_and_Scientific --out runs/industrial/data
    sidrec data prepare --source amazon2018 --reviews reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --out R/data
    """
    from sidrec.data.prepare import prepare

    cfg = resolve(PrepareConfig, config_path, overrides, section="data")
    out = prepare(cfg)
    _print_stats(out)


@data.command("stats")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw stats.json.")
def stats_command(data_dir: str, as_json: bool) -> None:
    """Show the statistics of a prepared dataset (users, items, samples per split, history lengths)."""
    if as_json:
        from sidrec.data.store import load_data

        click.echo(json.dumps(load_data(data_dir).stats, indent=2))
        return
    _print_stats(data_dir)


def _print_stats(data_dir) -> None:
    from rich.console import Console
    from rich.table import Table

    from sidrec.data.store import load_data

    stats = load_data(data_dir).stats
    try:
        table = _stats_table(Table, data_dir, stats)
    except (KeyError, TypeError, ValueError) as e:
        from sidrec.errors import InputError

        raise InputError(f"damaged: {type(e).__name__} {e} (prepare the data again with --force)",
                         Path(data_dir) / "stats.json") from None
    console = Console()
    console.print(table)
    for note in stats.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    for rep in stats.get("read_reports", []):
        if rep["skipped"]:
            console.print(f"[yellow]skipped {rep['skipped']} bad lines in {rep['path']}:[/] {rep['first_skipped']}")


def _stats_table(Table, data_dir, stats: dict):
    table = Table(title=f"{data_dir} ({stats['source']}, split: {stats['split_protocol']})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("n_users", "n_items", "n_items_in_train", "n_interactions", "n_reviews"):
        table.add_row(key, f"{stats[key]:,}")
    table.add_row("density", f"{stats['density']:.5f}")
    table.add_row("mean sequence length", f"{stats['sequence_length']['mean']:.2f}")
    for name in ("train", "valid", "test"):
        table.add_row(f"{name} samples (users)", f"{stats['samples'][name]:,} ({stats['users_in'][name]:,})")
    return table
