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
