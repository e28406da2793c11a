"""Smoke-scale reproduction of memory-based distributed SGD (empirics.reproductions.memory):
robust verdicts, figures on disk, a cached rerun with identical numbers, and the helpers."""

from __future__ import annotations

import numpy as np
import pytest

from empirics.reproductions import VERDICTS
from empirics.reproductions import memory as mem


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_twice):
    return smoke_twice("memory", tmp_path_factory)


def test_claims(runs):
    _, rep, *_ = runs
    assert rep.name == mem.NAME == "memory"
    assert all(c.verdict in VERDICTS for c in rep.claims)
    comparable = [c for c in rep.claims if "comparable" in c.claim]
    memory = [c for c in rep.claims if "memory stays bounded" in c.claim]
    assert len(comparable) == 4 and len(memory) == 4
    for c in comparable:  # the bits actually sent match k(32 + ⌈log₂ d⌉) per message
        assert c.detail["bits_ratio"] == pytest.approx(c.detail["bits_ratio_predicted"])
        assert c.detail["bits_ratio"] < 0.15
    for c in memory:  # the derived EF bound is loose by more than an order of magnitude
        assert c.verdict == "holds", c
        assert c.tightness is not None and c.tightness > 5
        assert "NOT Zhao" in c.paper
        assert c.detail["G2"] >= c.detail["G2_at_x_star"] > 0


def test_figures_exist(runs, repro_checks):
    out, rep, *_ = runs
    repro_checks.figures(out, rep, 2)


def test_cached_rerun_is_identical(runs, repro_checks):
    repro_checks.cached_rerun(runs)


def test_memory_verdict():
    rng = np.random.default_rng(0)
    x = 1.0 + 0.1 * rng.standard_normal((5, 20))
    assert mem.memory_verdict(x, bound=2.0)[0] == "holds"
    assert mem.memory_verdict(x, bound=0.5)[0] == "violated"
    # the worst column is the one with the largest mean
    x[:, 7] += 3.0
    status, p, worst = mem.memory_verdict(x, bound=2.0)
    assert status == "violated" and worst == 7 and p < 0.05
    # one seed: no test, so neither holds nor violated
    assert mem.memory_verdict(x[:1], bound=100.0)[0] == "untested"
    assert mem.memory_verdict(x[:1], bound=0.5)[0] == "untested"


def test_methods_cover_the_grid():
    ms = mem.methods()
    assert len(ms) == 6
    assert {m["compressor"] for m in ms.values()} == {None, "topk", "randk"}
    assert {m["beta"] for m in ms.values()} == {0.0, mem.BETA}
