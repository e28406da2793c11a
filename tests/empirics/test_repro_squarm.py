"""Smoke-scale reproduction of SQuARM-SGD (empirics.reproductions.squarm): verdicts, the bits
actually sent against the engine's convention, the figure on disk, a cached rerun with identical
numbers, and the bits-to-target helper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from empirics.reproductions import VERDICTS
from empirics.reproductions import squarm as sq


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, smoke_twice):
    return smoke_twice("squarm", tmp_path_factory)


def test_claims_agree_at_smoke_scale(runs):
    _, rep, *_ = runs
    assert rep.name == sq.NAME == "squarm" and rep.scale == "smoke"
    assert all(c.verdict in VERDICTS for c in rep.claims)
    saving, vs_choco = rep.claims
    assert saving.verdict == "agrees", saving.measured
    assert saving.detail["saving"] >= sq.SAVING_MIN
    assert 0 < saving.detail["silent_fraction"] < 1  # the trigger both fired and stayed silent
    assert vs_choco.verdict == "agrees", vs_choco.measured
    assert "third-party" in saving.paper and "not known" in saving.paper


def test_bits_follow_the_convention(runs):
    """Uncompressed: 2 neighbours × 32·d per node and step; SQuARM: C.bits(d) per fire and
    neighbour (ring: every node has 2)."""
    _, rep, *_ = runs
    d = rep.data["settings"]
    curves = rep.data["curves"]
    T = d["T"]
    base, choco, sqm = (curves[n] for n in sq._configs())
    assert base["bits"][-1] == T * sq.M * 2 * 32 * sq.D
    assert choco["bits"][-1] == sum(choco["fires_per_node"]) * 2 * d["compressor_bits"]
    assert sqm["bits"][-1] == pytest.approx(sum(sqm["fires_per_node"]) * 2 * d["compressor_bits"])
    assert d["compressor_bits"] == 5 * 6 + 32 + 5 * (1 + 5)  # top-5 indices, norm, sign+level
    assert sqm["rounds"] == T // sq.TAU and choco["rounds"] == T


def test_figure_exists(runs):
    out, rep, *_ = runs
    (f,) = rep.figures
    assert f.path == "figures/squarm_error_vs_bits.png"
    p = Path(out) / f.path
    assert p.exists() and p.stat().st_size > 5000


def test_cached_rerun_is_identical(runs):
    _, first, first_ctx, again, again_ctx = runs
    assert first_ctx.cache.misses == 3 and again_ctx.cache.misses == 0
    assert [c.measured for c in first.claims] == [c.measured for c in again.claims]
    assert first.to_dict()["data"] == again.to_dict()["data"]


def test_bits_to_target():
    e = np.array([1.0, 0.4, 0.6, 0.3, 0.2])
    b = np.array([0, 10, 20, 30, 40])
    assert sq.bits_to_target(e, b, 0.5) == 30  # stays below from the 4th record on
    assert sq.bits_to_target(e, b, 2.0) == 0
    assert math.isinf(sq.bits_to_target(e, b, 0.1))
    assert math.isinf(sq.bits_to_target(np.array([0.1, 0.9]), np.array([0, 1]), 0.5))
