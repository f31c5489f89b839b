"""Options of ``sidrec serve`` (flags, or a YAML file's ``serve:`` section through ``--config``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidrec.config import opt


@dataclass
class ServeConfig:
    """Options of ``sidrec serve``."""

    run: str = opt("", "run directory (RUN) of a finished pipeline")
    model: str | None = opt(None, "checkpoint folder (default: RUN/grpo/final, else RUN/sft/final)")
    host: str = opt("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = opt(8000, "TCP port")
    backend: Literal["torch", "hf", "vllm"] = opt(
        "torch", "decoder: torch (exact beam search, KV cache), hf (transformers generate), vllm")
    device: str = opt("auto", "torch device: auto (CUDA when available), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt("auto", "model dtype (auto: bf16 on GPU)")
    beams: int = opt(20, "beam width (a request's topk widens it: max(beams, topk), as `sidrec recommend`)")
    max_topk: int = opt(100, "largest topk a request may ask for (also capped by the catalogue size)")
    max_batch: int = opt(32, "most users decoded together in one batch")
    max_wait_ms: float = opt(2.0, "how long the first request of a batch waits for others to join it")
    max_users: int = opt(256, "most users in one POST /recommend/batch request")
    max_body_bytes: int = opt(1_048_576, "largest request body accepted (413 above it)")
    threads: int | None = opt(None, "torch CPU threads (default: torch's choice)")
    access_log: bool = opt(False, "log every request (off: only startup, reloads and errors)")

    def problems(self) -> list[str]:
        p = []
        if not self.run:
            p.append("run: required (the run directory, e.g. runs/demo)")
        elif not Path(self.run).is_dir():
            p.append(f"run: {self.run} is not a directory")
        if not 0 <= self.port <= 65535:
            p.append(f"port: {self.port} is not a TCP port (0-65535)")
        for name in ("beams", "max_topk", "max_batch", "max_users", "max_body_bytes"):
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1")
        if self.max_wait_ms < 0:
            p.append("max_wait_ms: must be >= 0")
        if self.threads is not None and self.threads < 1:
            p.append("threads: must be >= 1")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device or ""):
            p.append(f"device: {self.device!r} is not one of auto, cpu, mps, cuda, cuda:N")
        return p
