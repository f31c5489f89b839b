"""``sidrec semantics text|sensory|fuse|all``: thin wrappers around :func:`sidrec.semantics.run_semantics`."""

from __future__ import annotations

import click

from sidrec.config import click_options, resolve
from sidrec.semantics.stage import SemanticsConfig


@click.group()
def semantics() -> None:
    """Item semantics: sensory attributes (teacher + student), text embeddings and their fusion.

    \b
    sidrec semantics all --data runs/demo/data --out runs/demo/semantics
    sidrec semantics all --config configs/semantics/industrial.yaml
    sidrec semantics sensory --teacher llm --teacher-model Qwen/Qwen2.5-0.5B-Instruct --data R/data --out R/semantics
    """


def _run(config_path, overrides, parts) -> None:
    from rich.console import Console

    from sidrec.semantics.stage import run_semantics

    cfg = resolve(SemanticsConfig, config_path, overrides, section="semantics")
    out = run_semantics(cfg, parts)
    _summary(Console(), out)


def _summary(console, out) -> None:
    import json

    path = out / "stats.json"
    if not path.is_file():
        return
    stats = json.loads(path.read_text())
    console.print(f"[bold]semantics[/] -> {out}")
    for part in ("sensory", "text", "fuse"):
        s = stats.get(part)
        if not s:
            continue
        line = f"  {part:8s} {s.get('wall_s', 0):6.1f}s"
        if part == "sensory":
            cov = s["teacher_coverage"]
            line += f"  teacher={s['teacher']} coverage={cov['items_with_attributes']:.2%} " \
                    f"pairs/item={cov['mean_pairs_per_item']:.2f}"
            if "teacher_parse" in s:
                p = s["teacher_parse"]
                line += f"  answers ok={p['ok']} empty={p['empty']} malformed={p['malformed']}"
            for key in ("teacher_vs_truth", "student_vs_truth_holdout"):
                if key in s:
                    line += f"  {key}: facet_acc={s[key]['facet_accuracy']:.3f} F1@0.6={s[key]['value_f1']:.3f}"
        else:
            line += f"  dim={s.get('dim')}"
        console.print(line)


@semantics.command("all")
@click_options(SemanticsConfig)
def all_command(config_path, overrides) -> None:
    """Run sensory, text and fuse (parts already done with the same options are skipped)."""
    _run(config_path, overrides, ("sensory", "text", "fuse"))


@semantics.command("sensory")
@click_options(SemanticsConfig)
def sensory_command(config_path, overrides) -> None:
    """Extract sensory attributes with the teacher and distil the student (sensory.jsonl, sensory_emb.npy)."""
    _run(config_path, overrides, ("sensory",))


@semantics.command("text")
@click_options(SemanticsConfig)
def text_command(config_path, overrides) -> None:
    """Embed item texts with the text encoder (text_emb.npy)."""
    _run(config_path, overrides, ("text",))


@semantics.command("fuse")
@click_options(SemanticsConfig)
def fuse_command(config_path, overrides) -> None:
    """Fuse text and sensory embeddings into item_emb.npy + item_index.json."""
    _run(config_path, overrides, ("fuse",))
