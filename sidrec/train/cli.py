"""``sidrec sft``: the SFT stage in one process (the same function as ``scripts/sft.py``)."""

from __future__ import annotations

import click


@click.command("sft", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                        "help_option_names": []})
@click.pass_context
def sft(ctx: click.Context) -> None:
    """Fine-tune the aligned model with TRL's SFTTrainer (options: sidrec's SftArgs and TRL's SFTConfig).

    \b
    sidrec sft --config configs/sft/demo.yaml
    sidrec sft --config configs/sft/demo.yaml --num_train_epochs 2 --use_lora true --output_dir runs/x/sft
    sidrec sft --help                     # every option (TRL's SFTConfig and sidrec's SftArgs)
    For several processes or DeepSpeed: accelerate launch scripts/sft.py --config ... (see its docstring).
    """
    from sidrec.train.sft import make_parser, parse_args, run_sft

    argv = list(ctx.args)
    if "-h" in argv or "--help" in argv:
        click.echo(ctx.get_help())
        click.echo()
        make_parser().print_help()
        return
    final = run_sft(*parse_args(argv))
    click.echo(f"model: {final}")
