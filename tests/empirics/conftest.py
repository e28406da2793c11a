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


@pytest.fixture(scope="session")
def smoke_twice() -> Callable[[str, pytest.TempPathFactory], tuple]:
    """``smoke_twice(name, tmp_path_factory)``: see :func:`_smoke_twice`."""
    return _smoke_twice


def _smoke_twice(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Run reproduction ``name`` at smoke scale twice on one cache folder (the second run must be
    served from the cache): ``(out, first, first_ctx, again, again_ctx)``."""
    from empirics.reproductions import Context, RunCache, module

    out = tmp_path_factory.mktemp(name)
    first_ctx = Context(out=out, scale="smoke", cache=RunCache(out / "cache"))
    first = module(name).reproduce(first_ctx)
    again_ctx = Context(out=out, scale="smoke", cache=RunCache(out / "cache"))
    again = module(name).reproduce(again_ctx)
    return out, first, first_ctx, again, again_ctx
