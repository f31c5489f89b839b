"""``sidrec grpo``: the GRPO stage from the command line (same parser as ``scripts/grpo.py``)."""

from __future__ import annotations

import dataclasses

import click


def _sidrec_options() -> str:
    from sidrec.train.grpo import GrpoArgs

    rows = []
    for f in dataclasses.fields(GrpoArgs):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"  --{f.name} ({default}): {f.metadata.get('help', '')}")
    return "\n".join(rows)


@click.command("grpo", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                         "help_option_names": []})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def grpo(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """GRPO after SFT: constrained rollouts (trie), recommendation rewards, TRL's GRPOTrainer.

    \b
    sidrec grpo --config configs/grpo/demo.yaml
    sidrec grpo --config configs/grpo/demo.yaml --rollout sample --learning_rate 5e-5 --beta 0.02
    accelerate launch scripts/grpo.py --config configs/grpo/industrial.yaml   (multi-GPU)

    Options are sidrec's GrpoArgs (below) and TRL's GRPOConfig fields (--help-trainer lists them), from a YAML
    file (--config) and overridden by flags; an unknown key is an error.
    """
    if "--help-trainer" in argv:
        from sidrec.train.grpo import make_parser

        click.echo(make_parser().format_help())
        return
    if "-h" in argv or "--help" in argv:
        click.echo(ctx.get_help())
        click.echo("\nsidrec options (GrpoArgs):\n" + _sidrec_options())
        return
    from sidrec.train.grpo import parse_args, run_grpo

    args, trainer_args = parse_args(list(argv))
    final = run_grpo(args, trainer_args)
    click.echo(f"model: {final}")
