"""How a torch stage runs: which device, how many threads, and seeded determinism.

Every stage that computes with a network (fine-tuning, importance, retraining, profiling)
starts here, so the same config gives the same numbers on a CPU.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def set_determinism(seed: int, threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(int(threads))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # warn_only: a few CUDA kernels have no deterministic version; on CPU nothing warns
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
