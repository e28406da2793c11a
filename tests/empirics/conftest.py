"""Shared setup for the torch tests: one thread (2-core CI machines), seeded generators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def check_figures(out: Any, rep: Any, n: int) -> None:
    """``rep`` lists ``n`` figures, each a non-trivial PNG under ``out``."""
    from pathlib import Path

    assert len(rep.figures) == n
    for f in rep.figures:
        p = Path(out) / f.path
        assert p.exists() and p.stat().st_size > 5000, f.path


def check_cached_rerun(runs: tuple) -> None:
    """The second run of :func:`_smoke_twice` came from the cache and repeats the first."""
    _, first, first_ctx, again, again_ctx = runs
    assert first_ctx.cache.misses > 0
    assert again_ctx.cache.misses == 0
    assert again_ctx.cache.hits == first_ctx.cache.hits + first_ctx.cache.misses
    assert [c.measured for c in first.claims] == [c.measured for c in again.claims]
    assert [c.verdict for c in first.claims] == [c.verdict for c in again.claims]
    assert first.to_dict()["data"] == again.to_dict()["data"]


@pytest.fixture(scope="session")
def repro_checks() -> Any:
    """``repro_checks.figures(out, rep, n)`` and ``repro_checks.cached_rerun(runs)``."""
    from types import SimpleNamespace

    return SimpleNamespace(figures=check_figures, cached_rerun=check_cached_rerun)
