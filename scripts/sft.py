"""SFT stage as a script (TRL-style): fine-tune the aligned model on history -> next SID plus the TS-Align tasks.

    # CPU, one process (the demo; a few minutes on 2 cores)
    accelerate launch --config_file deepspeed_configs/cpu.yaml scripts/sft.py --config configs/sft/demo.yaml
    accelerate launch scripts/sft.py --config configs/sft/demo.yaml --num_train_epochs 2 --use_lora true
    # one GPU / several GPUs (DDP) / DeepSpeed ZeRO-2 / ZeRO-3
    accelerate launch --config_file deepspeed_configs/single_gpu.yaml scripts/sft.py --config configs/sft/industrial.yaml
    accelerate launch --config_file deepspeed_configs/multi_gpu.yaml scripts/sft.py --config configs/sft/industrial.yaml
    accelerate launch --config_file deepspeed_configs/zero2.yaml scripts/sft.py --config configs/sft/industrial.yaml
    accelerate launch --config_file deepspeed_configs/zero3.yaml scripts/sft.py --config configs/sft/industrial.yaml

Options: sidrec's ``SftArgs`` and TRL's ``SFTConfig`` (``--help`` lists both), from the YAML file and overridden
by flags; a misspelt YAML key is an error. Same stage as ``sidrec sft``.
"""

from __future__ import annotations

import sys


def make_parser():
    """``TrlParser`` over (``SftArgs``, ``SFTConfig``)."""
    from sidrec.train.sft import make_parser as sft_parser

    return sft_parser()


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run the SFT stage; a bad option or input exits with 2."""
    import logging

    from sidrec.errors import SidrecError
    from sidrec.train.sft import parse_args, run_sft

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args, trainer_args = parse_args(argv)
        final = run_sft(args, trainer_args)
    except SidrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"model: {final}")


if __name__ == "__main__":
    main()
