"""``sidrec evaluate`` and ``sidrec compare``."""

from __future__ import annotations

from pathlib import Path

import click

from sidrec.config import click_options, resolve
from sidrec.eval.evaluator import EvalConfig


def metrics_table(metrics: dict, title: str, ks=(5, 10, 20)):
    """A rich table: rows = overall and groups, columns = HR/NDCG at each K and MRR@10."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("group")
    table.add_column("n", justify="right")
    cols = [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks if f"{m}@{k}" in metrics["overall"]]
    cols += ["MRR@10"] if "MRR@10" in metrics["overall"] else []
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row("overall", str(metrics["n_samples"]), *[f"{metrics['overall'][c]:.4f}" for c in cols])
    for name, group in metrics.get("groups", {}).items():
        table.add_row(name, str(group["n_samples"]), *[f"{group[c]:.4f}" for c in cols])
    return table


@click.command("evaluate")
@click_options(EvalConfig)
def evaluate(config_path, overrides) -> None:
    """Score a predictions JSONL against a split: HR/NDCG/MRR@K overall and for head/tail items and users.

    \b
    sidrec evaluate --predictions runs/demo/predictions/popularity.jsonl --data runs/demo/data --split test \\
        --out runs/demo/metrics/popularity.json
    sidrec evaluate --predictions runs/demo/predictions/sft.jsonl --data runs/demo/data --limit 500  # a smoke run
    """
    from rich.console import Console

    from sidrec.artifacts import check_output_file, write_json
    from sidrec.eval.evaluator import evaluate as run_evaluate

    cfg = resolve(EvalConfig, config_path, overrides, section="evaluate")
    check_output_file(cfg.out)
    metrics = run_evaluate(cfg.predictions, cfg.data, cfg.split, cfg.ks, cfg.head_item_frac, cfg.head_user_frac,
                           cfg.allow_missing, cfg.limit)
    if cfg.out:
        write_json(cfg.out, metrics)
    title = f"{Path(cfg.predictions).name} on {cfg.split}"
    if "limit" in metrics:
        title += f", first {metrics['n_samples']} of {metrics['split_samples']} samples (--limit {cfg.limit})"
    Console(width=max(120, Console().width)).print(metrics_table(metrics, title))
    if metrics["n_missing"]:
        click.secho(f"{metrics['n_missing']} samples had no prediction and count as misses", fg="yellow")
    if max(cfg.ks) > metrics["min_list_length"] > 0:
        click.secho(f"some lists hold only {metrics['min_list_length']} items: @K above that counts a target "
                    "ranked past the list's end as a miss", fg="yellow")


@click.command("compare")
@click.argument("predictions", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="RUN/data folder.")
@click.option("--split", default="test", show_default=True, help="Split to compare on.")
@click.option("--names", default=None,
              help="Comma-separated model names (default: file stems, with as much of the path as tells them apart).")
@click.option("--reference", default=None, help="Model the others are tested against (default: the first).")
@click.option("--test", "test_kind", type=click.Choice(["ttest", "bootstrap"]), default="ttest", show_default=True,
              help="Paired significance test over samples.")
@click.option("--out", default=None, help="Write the markdown table here (and the JSON beside it).")
@click.option("--plot", default=None, help="Save a PNG bar chart here.")
@click.option("--allow-missing", is_flag=True, help="Count samples without a prediction as misses.")
def compare(predictions, data, split, names, reference, test_kind, out, plot, allow_missing) -> None:
    """Compare several prediction files on one split: markdown table + paired tests + PNG bar chart.

    \b
    sidrec compare runs/demo/predictions/*.jsonl --data runs/demo/data --plot runs/demo/plots/compare.png
    """
    from sidrec.artifacts import check_output_file, write_json, write_text
    from sidrec.eval.compare import compare as run_compare
    from sidrec.eval.compare import plot_bars, to_markdown

    check_output_file(out)
    check_output_file(plot, "--plot")
    try:
        result = run_compare(predictions, data, split, names.split(",") if names else None, reference, test_kind,
                             allow_missing=allow_missing)
    except ValueError as e:  # names or reference that do not fit the files given
        raise click.UsageError(str(e)) from None
    table = to_markdown(result)
    click.echo(table)
    if out:
        write_text(out, table + "\n")
        write_json(Path(out).with_suffix(".json"), result)
    if plot:
        click.echo(f"plot: {plot_bars(result, plot)}")
