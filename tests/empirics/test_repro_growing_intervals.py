"""The growing-intervals reproduction (Spiridonoff et al.) at smoke scale: claims, figures,
resume from the run cache; and its building blocks (stacked sampling, replica layout)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirics.configs import configuration
from empirics.engine import simulate
from empirics.reproductions import growing_intervals as gi
from empirics.reproductions.base import VERDICTS, Context, RunCache


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("gi")
    ctx = Context(out, scale="smoke", cache=RunCache(out / "cache"))
    return out, ctx, gi.reproduce(ctx)


def test_claims_at_smoke_scale(smoke: tuple) -> None:
    out, ctx, rep = smoke
    assert rep.name == gi.NAME and rep.scale == "smoke" and len(rep.claims) == 7
    assert all(c.verdict in VERDICTS for c in rep.claims)
    rounds, close, osa_c2, mc, linear, saturation, sqrt_n = rep.claims
    # exact (static schedules, the recursion): robust at any scale
    assert rounds.verdict == "agrees"
    assert rounds.detail["rounds"]["stich"] == 143 and rounds.detail["rounds"]["one_shot"] == 1
    assert close.verdict == "agrees"
    assert max(abs(v) for v in close.detail["relative_to_sync"].values()) < gi.CLOSE_TOL
    assert close.detail["ratio_to_sync_early"]["one_shot"] > 10  # separation early on
    assert osa_c2.verdict == "agrees" and 18 < osa_c2.detail["speedup"] < 21
    # the engine's sample mean agrees with the exact expectation where it is usable
    assert mc.verdict == "agrees"
    assert max(abs(r["z"]) for r in mc.detail["tests"]) < 4
    # speed-up experiment: synchronous SGD is (close to) linear, the slope is negative
    sync = rep.data["speedup"]["synchronous"]["speedup"]
    assert 0.5 * 16 < sync[-1] < 2 * 16
    assert linear.detail["slope"] < -0.5
    assert saturation.detail["osa_speedup"][0] == pytest.approx(2.0, rel=0.5)
    assert sqrt_n.detail["rounds"] == [2, 4] and sqrt_n.verdict in ("agrees", "inconclusive")
    for f in rep.figures:
        assert (out / f.path).stat().st_size > 10_000
    assert ctx.cache.misses > 0


def test_second_run_is_served_from_the_cache(smoke: tuple) -> None:
    out, ctx, rep = smoke
    ctx2 = Context(out, scale="smoke", cache=RunCache(out / "cache"))
    rep2 = gi.reproduce(ctx2)
    assert ctx2.cache.hits == ctx.cache.misses and ctx2.cache.misses == 0
    assert [c.measured for c in rep2.claims] == [c.measured for c in rep.claims]
    np.testing.assert_array_equal(rep2.data["speedup"]["one_shot"]["speedup"],
                                  rep.data["speedup"]["one_shot"]["speedup"])


def test_stacked_problem_has_the_original_law_and_loss() -> None:
    p = gi.quadratic_problem(500, stacked=True)
    q = gi.quadratic_problem(500)
    z1, z2 = p.sample_all(4, p.generator(3))
    assert z1.shape == z2.shape == (500, 4, 3)
    assert abs(float(z1.std()) - p.c) < 0.05 and abs(float(z2.std()) - p.sigma) < 0.02
    x = {"x": torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)}
    assert float(p.loss(x, (z1[0], z2[0]))) == float(q.loss(x, (z1[0], z2[0])))
    # a different seed gives different draws; the same seed the same draws
    assert not torch.equal(z1, p.sample_all(4, p.generator(4))[0])
    assert torch.equal(z1, p.sample_all(4, p.generator(3))[0])
    s = gi.speedup_problem(64, stacked=True)
    (z,) = s.sample_all(2, s.generator(0))
    assert z.shape == (64, 2, 1) and 6 < float(z.std()) < 10


def test_replica_layout_and_block_means() -> None:
    """Block r of the replicated run evolves exactly like an independent N-worker run fed the
    same draws: check with W = J per block against a plain pasgd run of block 0 alone."""
    N, R, T = 3, 4, 12
    sched = gi._replicated("constant_T_over_N", N, R, T, {"constant_T_over_N": 5})
    p = gi.quadratic_problem(N * R, stacked=True)
    _, tr = simulate(p, configuration(sched), lr=0.1, T=T, seed=7, trace=True, grad_every=0)
    u = gi._block_means(tr, N, R, [0, 5, T], T)
    assert u.shape == (3, R, 3)
    np.testing.assert_allclose(u[0], 1.0)
    # block 0 replayed with its own draws: the (N·R, b, d) stack's first N rows
    gen = p.generator(7)
    draws = [p.sample_all(1, gen) for _ in range(T)]
    x = np.ones((N, 3))
    for k in range(T):
        z1, z2 = (t[:N, 0].numpy() for t in draws[k])
        x = x - 0.1 * (p.a * x * (1 + z1) + z2)
        if (k + 1) % 5 == 0 or k + 1 == T:
            x[:] = x.mean(0)
    np.testing.assert_allclose(u[-1, 0], x.mean(0), rtol=1e-12)


def test_chunks_cover_the_repetitions() -> None:
    assert gi._chunks(100, 32, 2000) == [50, 50]
    assert sum(gi._chunks(150, 24, 2000)) == 150 and max(gi._chunks(150, 24, 2000)) * 24 <= 2000
    assert gi._chunks(7, 2, 2000) == [7]
