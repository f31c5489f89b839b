"""The ``sidrec`` command line. Thin: each command parses options and calls one stage function.

Commands are registered lazily (module path strings) so ``sidrec --help`` stays fast and a stage's heavy imports
(torch, transformers, vLLM) load only when that stage runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from sidrec.errors import SidrecError

# name -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "data": "sidrec.data.cli:data",
    "evaluate": "sidrec.eval.cli:evaluate",
    "compare": "sidrec.eval.cli:compare",
    "baseline": "sidrec.baselines.cli:baseline",
    "semantics": "sidrec.semantics.cli:semantics",
    "quantize": "sidrec.quantize.cli:quantize",
    "sids": "sidrec.quantize.cli:sids",
    "model": "sidrec.align.cli:model",
    "align": "sidrec.align.cli:align",
    "sft": "sidrec.train.cli:sft",
    "grpo": "sidrec.train.grpo_cli:grpo",
    "decode": "sidrec.decode.cli:decode",
    "pipeline": "sidrec.pipeline:pipeline_command",
    "explain": "sidrec.pipeline:explain_command",
    "add-items": "sidrec.serve.cli:add_items_command",
    "recommend": "sidrec.serve.cli:recommend_command",
    "serve": "sidrec.serve.cli:serve_command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if self._load(n, quiet=True) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str, quiet: bool = False) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if quiet and e.name and e.name.startswith("sidrec"):
                return None  # stage not installed in this build
            raise
        return getattr(module, attr, None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """sidrec: generative recommendation with semantic IDs.

    \b
    Quick start (offline demo):   sidrec pipeline --config configs/demo.yaml
    One stage:                    sidrec data prepare --source synthetic --out runs/demo/data
    Evaluate any model:           sidrec evaluate --predictions P.jsonl --data runs/demo/data --split test
    """
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=True)], force=True)
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    """Console entry point: user-facing errors print one clear message and exit with status 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1") if os.environ.get("SIDREC_OFFLINE", "1") == "1" else None
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except SidrecError as e:
        click.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
