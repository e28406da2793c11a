"""Shared setup for the torch tests: one thread (2-core CI machines), seeded generators."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def make_gen() -> Callable[[int], torch.Generator]:
    """``make_gen(seed)``: a CPU ``torch.Generator`` seeded with ``seed``."""

    def _make(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return _make
