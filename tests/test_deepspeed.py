"""DeepSpeed for real, on the CPU: SFT under ZeRO-2 and ZeRO-3 and GRPO under ZeRO-2, each launched through
``accelerate launch`` exactly as the README says, killed (SIGKILL) right after its first checkpoint, relaunched,
and checked to end at the same weights as an uninterrupted run.

Marked ``slow`` (about nine launches of ~20 s each; the first DeepSpeed run on a machine also builds a
shared-memory op, ~40 s) and ``deepspeed``: ``bash scripts/test.sh`` (CI) runs them once, a plain ``pytest`` does
not. Run alone: ``pytest tests/test_deepspeed.py -m deepspeed -p no:xdist``.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DS_DIR = ROOT / "deepspeed_configs"
pytestmark = [pytest.mark.slow, pytest.mark.deepspeed]

# Runs the script named by argv[1] as __main__, with a callback hook that SIGKILLs the process right after the
# checkpoint of step SIDREC_KILL_AFTER_SAVE is saved (after every on_save callback): a hard kill at a known point.
KILLER = """
import os, runpy, signal, sys
from transformers.trainer_callback import CallbackHandler

kill_at = int(os.environ["SIDREC_KILL_AFTER_SAVE"])
on_save = CallbackHandler.on_save

def on_save_then_die(self, args, state, control, **kwargs):
    control = on_save(self, args, state, control, **kwargs)
    if state.global_step == kill_at:
        print(f"killing myself after the checkpoint of step {kill_at}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return control

CallbackHandler.on_save = on_save_then_die
sys.argv.pop(0)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def launch(accelerate_config: str, script: Path, config: Path, out: Path, kill_after_save: int | None = None
           ) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file deepspeed_configs/<accelerate_config>.yaml <script> --config <config>``."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(ROOT)}
    program = [str(script)]
    if kill_after_save is not None:
        killer = out.parent / "kill_after_save.py"
        killer.write_text(KILLER)
        program = [str(killer), str(script)]
        env["SIDREC_KILL_AFTER_SAVE"] = str(kill_after_save)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(DS_DIR / f"{accelerate_config}.yaml"), *program, "--config", str(config), "--output_dir", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()


def zero_stage_of(checkpoint: Path) -> int:
    """The ZeRO stage recorded in a checkpoint's DeepSpeed optimizer states (``global_step*/``)."""
    [states] = glob.glob(str(checkpoint / "global_step*" / "*optim_states.pt"))
    return int(torch.load(states, map_location="cpu", weights_only=False)["optimizer_state_dict"]["zero_stage"])


def kill_resume_and_compare(accelerate_config: str, script: Path, config: Path, start: Path, tmp_path: Path,
                            stage: int, resumed_line: str) -> None:
    """Uninterrupted run; a run SIGKILLed after checkpoint-2; the same command again: it resumes from the DeepSpeed
    checkpoint and ends at the uninterrupted run's weights (``start``: the model training starts from)."""
    full = launch(accelerate_config, script, config, tmp_path / "full")
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert zero_stage_of(tmp_path / "full" / "checkpoint-2") == stage  # DeepSpeed ran, at that stage

    out = tmp_path / "interrupted"
    killed = launch(accelerate_config, script, config, out, kill_after_save=2)
    assert killed.returncode != 0 and "killing myself after the checkpoint of step 2" in killed.stdout, \
        killed.stdout[-3000:] + killed.stderr[-3000:]
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists() and not (out / "final").exists()

    resumed = launch(accelerate_config, script, config, out)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "resuming from" in log and "checkpoint-2" in log and resumed_line in log, log[-3000:]
    want, got = weights(tmp_path / "full" / "final"), weights(out / "final")
    start = weights(start)
    assert want.keys() == got.keys()
    moved = max(float((want[k] - start[k]).abs().max()) for k in want)
    assert moved > 1e-3  # the four steps did train: comparing the end points says something
    for key in want:  # the resumed run ends where the uninterrupted one did
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("stage", [2, 3])
def test_sft_under_zero_resumes_after_a_kill(align_dir, tmp_path, stage):
    """scripts/sft.py under deepspeed_configs/zero{2,3}_cpu.yaml: 4 steps, a checkpoint every 2."""
    config = tmp_path / "sft_tiny.yaml"
    config.write_text(yaml.safe_dump({
        "align_dir": str(align_dir), "val_samples": 0, "max_steps": 4, "per_device_train_batch_size": 8,
        "learning_rate": 1e-2, "lr_scheduler_type": "cosine", "max_length": 256, "bf16": False, "use_cpu": True,
        "save_strategy": "steps", "save_steps": 2, "logging_steps": 1, "report_to": "none", "disable_tqdm": True,
        "seed": 0}))
    kill_resume_and_compare(f"zero{stage}_cpu", ROOT / "scripts" / "sft.py", config, align_dir / "model", tmp_path,
                            stage, "sft: 4 steps")


def test_grpo_under_zero2_resumes_after_a_kill(align_dir, synthetic_data, tmp_path):
    """scripts/grpo.py under deepspeed_configs/zero2_cpu.yaml: constrained beam rollouts, 4 steps, a checkpoint
    every 2 (TRL wraps the policy in ZeRO-2 and the reference model in a ZeRO engine of its own)."""
    from sidrec.decode.tiny import save_tiny_lm
    from sidrec.sid import SidTable

    # Peaked next-SID distributions (unlike the SA-initialised align model), so groups differ in reward, the
    # advantages are not all zero and the four steps move the weights.
    sft_model = save_tiny_lm(tmp_path / "sft_model", SidTable.load(align_dir / "sids"))
    config = tmp_path / "grpo_tiny.yaml"
    config.write_text(yaml.safe_dump({
        "sft_model": str(sft_model), "data": str(synthetic_data), "sids": str(align_dir / "sids"),
        "rollout": "beam", "rewards": ["exact", "ndcg", "prefix", "validity"], "reward_weights": [1.0, 1.0, 0.5, 0.1],
        "max_train_samples": 16, "valid_samples": 0, "torch_threads": 1, "num_generations": 4,
        "per_device_train_batch_size": 8, "max_steps": 4, "learning_rate": 5e-3, "beta": 0.04,
        "max_completion_length": 8, "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
        "logging_steps": 1, "save_strategy": "steps", "save_steps": 2, "report_to": "none", "seed": 0,
        "disable_tqdm": True}))
    kill_resume_and_compare("zero2_cpu", ROOT / "scripts" / "grpo.py", config, sft_model, tmp_path, 2,
                            "2 steps resumed at step 2")
