"""The torch device a user names, checked once (the same message everywhere)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_device"]


def check_device(device: Any) -> torch.device:
    """The torch device named by ``device``; ValueError naming it if torch does not know it or
    this machine cannot use it (e.g. ``"cuda"`` on a CPU-only torch)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (got {device!r})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available to this torch "
                             f"({torch.__version__}; torch.cuda.is_available() is False): use "
                             f"device='cpu' or install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (got {device!r})")
    return dev
