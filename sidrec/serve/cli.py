"""``sidrec add-items``, ``sidrec recommend`` and ``sidrec serve``: thin commands over :mod:`sidrec.serve`."""

from __future__ import annotations

import click

from sidrec.config import click_options, resolve
from sidrec.serve.config import ServeConfig


@click.command("add-items")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory (RUN)")
@click.option("--items", "items_file", required=True, type=click.Path(dir_okay=False),
              help="JSONL of new items: item_id, title (required), description, brand, categories, price")
def add_items_command(run_dir: str, items_file: str) -> None:
    """Give new (cold-start) items SIDs with the trained quantizer, no retraining; they can be recommended at once.

    \b
    sidrec add-items --run runs/demo --items new_items.jsonl
    sidrec recommend --run runs/demo --history i0001,i0042 --topk 10
    curl -X POST http://127.0.0.1:8000/reload      # a running `sidrec serve` picks them up
    """
    from sidrec.serve.catalog import add_items
    from sidrec.sid import sid_token

    new = add_items(run_dir, items_file)
    for item, codes in new.items():
        click.echo(f"{item}\t{''.join(sid_token(lvl, c) for lvl, c in enumerate(codes))}")
    click.echo(f"{len(new)} items added to {run_dir}")


@click.command("recommend")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory (RUN)")
@click.option("--history", required=True, help="item ids, oldest first, comma-separated")
@click.option("--topk", default=10, show_default=True, type=click.IntRange(min=1), help="items to show")
@click.option("--beams", default=20, show_default=True, type=click.IntRange(min=1), help="beam width (>= topk)")
@click.option("--model", "model_dir", default=None, help="checkpoint (default: RUN/grpo/final, else RUN/sft/final)")
@click.option("--exclude-history", is_flag=True, help="leave the history's own items out")
def recommend_command(run_dir: str, history: str, topk: int, beams: int, model_dir: str | None,
                      exclude_history: bool) -> None:
    """Recommend the next items for a history with the run's generative model (constrained decoding)."""
    from sidrec.errors import InputError
    from sidrec.serve.recommender import Query, Recommender

    items = [h.strip() for h in history.split(",") if h.strip()]
    if not items:
        raise InputError("--history: empty; give at least one item id")
    recommender = Recommender.load(run_dir, model_dir=model_dir, beams=beams, device="cpu")
    (ranked,) = recommender.recommend([Query(tuple(items), topk, exclude_history)])
    catalogue = recommender.catalogue
    for rank, (item, score) in enumerate(ranked, start=1):
        title = (catalogue.items.get(item) or {}).get("title") or ""
        click.echo(f"{rank:>3}  {item}  {score:8.3f}  {title}")


@click.command("serve")
@click_options(ServeConfig)
def serve_command(config_path, overrides) -> None:
    """Serve the run's model over HTTP: POST /recommend, POST /recommend/batch, GET /health, GET /items/{id},
    POST /reload; OpenAPI docs at /docs. Concurrent requests are decoded together (dynamic batching).

    \b
    sidrec serve --run runs/demo                       # http://127.0.0.1:8000
    curl -s localhost:8000/recommend -H 'content-type: application/json' \\
         -d '{"history": ["S00001", "S00017"], "topk": 5}'
    """
    cfg = resolve(ServeConfig, config_path, overrides, section="serve")
    from sidrec.serve.app import serve

    serve(cfg)
