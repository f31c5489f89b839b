"""GRPO stage as a script (TRL-style): reinforce an SFT model's next-item SIDs with recommendation rewards.

    python scripts/grpo.py --config configs/grpo/demo.yaml
    python scripts/grpo.py --config configs/grpo/demo.yaml --learning_rate 5e-5 --rollout sample
    accelerate launch --cpu --num_processes 1 scripts/grpo.py --config configs/grpo/demo.yaml
    accelerate launch --config_file deepspeed_configs/<accelerate zero2 yaml> scripts/grpo.py \\
        --config configs/grpo/industrial.yaml          # multi-GPU

Options: sidrec's ``GrpoArgs`` and TRL's ``GRPOConfig`` (``--help`` lists both); a misspelt YAML key is an error.
Same stage as ``sidrec grpo``.
"""

from __future__ import annotations

import sys


def make_parser():
    """``TrlParser`` over (``GrpoArgs``, ``GRPOConfig``)."""
    from sidrec.train.grpo import make_parser as grpo_parser

    return grpo_parser()


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: the command line) and run the GRPO stage; a bad option or input exits with 2."""
    import logging

    from sidrec.errors import SidrecError
    from sidrec.train.grpo import parse_args, run_grpo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args, trainer_args = parse_args(argv)
        final = run_grpo(args, trainer_args)
    except SidrecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"model: {final}")


if __name__ == "__main__":
    main()
