"""Shared fixtures: tiny synthetic datasets prepared once per session (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(os.environ.get("SIDREC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small prepared synthetic dataset (200 users, 60 items, leave-one-out)."""
    from sidrec.data import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("synthetic") / "data"
    return prepare(PrepareConfig(source="synthetic", out=str(out), n_users=200, n_items=60, seed=0))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ../shared/data (skip when this checkout has none beside it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def align_dir(synthetic_data, tmp_path_factory) -> Path:
    """RUN/align of the session's synthetic set (tests/test_sft.py, tests/test_deepspeed.py): SIDs of 3 levels x
    4 codes, a tiny tied Qwen2, SA-Init, TS-Align."""
    import json

    import numpy as np

    from sidrec.align import AlignConfig, init_tiny_model, run_align
    from sidrec.data import load_data

    run = tmp_path_factory.mktemp("sft_run")
    items = load_data(synthetic_data).item_ids
    codes = np.random.default_rng(0).permutation(64)[: len(items)]
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps(
        {item: [int(c) // 16, int(c) // 4 % 4, int(c) % 4] for item, c in zip(items, codes)}))
    init_tiny_model(synthetic_data, run / "base", vocab_size=400, hidden_size=64, num_layers=1, head_dim=32,
                    num_kv_heads=1, intermediate_size=128, lm_epochs=0.0)
    return run_align(AlignConfig(data=str(synthetic_data), sids=str(run / "sids"), model=str(run / "base"),
                                 out=str(run / "align"), max_history=5, valid_samples=20, max_train_samples=300))
