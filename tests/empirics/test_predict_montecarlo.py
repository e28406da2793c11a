"""The predictor against the real engine: 10⁴ independent replicas of an m-worker run are engine
runs with R·m workers and a block-diagonal W (each block one replica, as in
tests/empirics/test_recursion.py), so per-replica averaged models, consensus distances and
error-feedback memories come from the traces. At every step 1..T the Monte-Carlo mean must lie
inside its 99% interval (family-wise over the steps, Bonferroni) around the prediction, and a
deliberately wrong prediction (noise doubled) must fall outside at least one.

Cases: heterogeneous optima on ring / torus / complete W, EASGD (centre rows last in the engine),
heavy-ball momentum, random-k with error feedback.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from empirics.compressors import RandomK
from empirics.configs import configuration, easgd, mdsgd
from empirics.engine import simulate
from empirics.laws import law_for
from empirics.moments import propagate
from empirics.problems.quadratic import Quadratic
from theory.mixing import MixingMatrix, average, easgd_matrix, ring, torus
from theory.schedules import Periodic

pytestmark = pytest.mark.slow

R_MC = 10_000   #: replicas
CHUNK = 500     #: replicas per engine run
T = 12
LR = 0.2
LEVEL = 0.01    #: family-wise over the steps


def base(m: int) -> Quadratic:
    return Quadratic.random(d=3, m=m, condition_number=3.0, heterogeneity=1.5, noise=0.7,
                            x0=0.0, seed=3)


def replicated(p: Quadratic, r: int) -> Quadratic:
    return Quadratic(np.tile(p.H, (r, 1, 1)), np.tile(p.x_stars, (r, 1)),
                    np.tile(p.Sigma, (r, 1, 1)), x0=p.x0, m=r * p.m)


def block_diagonal(Wb: np.ndarray, r: int, layout: np.ndarray | None = None) -> MixingMatrix:
    n = Wb.shape[0]
    big = np.kron(np.eye(r), Wb)
    if layout is not None:  # block position → engine row
        perm = layout.reshape(-1)
        out = np.zeros((r * n, r * n))
        out[np.ix_(perm, perm)] = big
        big = out
    return MixingMatrix(big, rule="replicas", name=f"{r} replicas")


def monte_carlo(p: Quadratic, cfg_fn, layout_fn, m: int, n: int) -> dict[str, np.ndarray]:
    """Per replica and step 1..T: F(ū) − F*, Σ‖x − ū‖² over the replica's n rows, and
    (1/m) Σ‖e_i‖² over its workers."""
    Fs = p.constants.F_star.value
    Hb, hb = p.Hbar, p.h.mean(0)
    cb = p.c0.mean()
    out: dict[str, list[np.ndarray]] = {"suboptimality": [], "consensus": [],
                                        "memory_norm2_workers": []}
    for seed, start in enumerate(range(0, R_MC, CHUNK)):
        r = min(CHUNK, R_MC - start)
        cfg = cfg_fn(r)
        _, tr = simulate(replicated(p, r), cfg, lr=LR, T=T, seed=seed, trace=True,
                         record_every=T, grad_every=0, divergence=math.inf)
        rows = tr.X[1:][:, layout_fn(r)]  # (T, r, n, d)
        u = rows.mean(2)
        F = 0.5 * np.einsum("tra,ab,trb->tr", u, Hb, u) - u @ hb + cb - Fs
        out["suboptimality"].append(F.T)
        out["consensus"].append(((rows - u[:, :, None]) ** 2).sum((2, 3)).T)
        mem = tr.memory[1:].reshape(T, r, m, -1)
        out["memory_norm2_workers"].append((mem**2).sum((2, 3)).T / m)
    return {k: np.concatenate(v) for k, v in out.items()}


def check(mc: np.ndarray, truth: np.ndarray, wrong: np.ndarray) -> None:
    R = mc.shape[0]
    mean, se = mc.mean(0), mc.std(0, ddof=1) / math.sqrt(R)
    z = norm.ppf(1 - LEVEL / (2 * mc.shape[1]))
    lo, hi = mean - z * se, mean + z * se
    assert np.all((lo <= truth) & (truth <= hi)), (mean, se, truth)
    assert np.any((wrong < lo) | (wrong > hi)), (mean, se, wrong)


def workers_only(m: int):
    return lambda r: np.arange(r * m).reshape(r, m)


def with_centre(m: int):
    return lambda r: np.hstack([np.arange(r * m).reshape(r, m), r * m + np.arange(r)[:, None]])


CASES = {
    "ring": (4, lambda: configuration(Periodic(ring(4), 2)),
             lambda r: configuration(Periodic(block_diagonal(ring(4).matrix, r), 2)), False),
    "torus": (4, lambda: configuration(Periodic(torus(2, 2), 1)),
              lambda r: configuration(Periodic(block_diagonal(torus(2, 2).matrix, r), 1)),
              False),
    "complete": (4, lambda: configuration(Periodic(average(4), 3)),
                 lambda r: configuration(Periodic(block_diagonal(average(4).matrix, r), 3)),
                 False),
    "EASGD": (3, lambda: easgd(3, 2, 0.25),
              lambda r: configuration(Periodic(block_diagonal(
                  easgd_matrix(3, 0.25).matrix, r, with_centre(3)(r)), 2), v=r), True),
    "momentum": (4, lambda: configuration(Periodic(ring(4), 2), momentum=0.5),
                 lambda r: configuration(Periodic(block_diagonal(ring(4).matrix, r), 2),
                                         momentum=0.5), False),
    "random-k EF": (4, lambda: mdsgd(4, RandomK(1), W=ring(4), tau=2),
                    lambda r: mdsgd(r * 4, RandomK(1), W=block_diagonal(ring(4).matrix, r),
                                    tau=2), False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_monte_carlo_mean_inside_the_prediction_interval(name: str) -> None:
    m, cfg_one, cfg_rep, centre = CASES[name]
    p = base(m)
    layout = with_centre(m) if centre else workers_only(m)
    mc = monte_carlo(p, cfg_rep, layout, m, m + int(centre))
    pred = propagate(law_for(p), cfg_one(), LR, T)
    loud = Quadratic(p.H, p.x_stars, 2.0 * p.Sigma, x0=p.x0, m=m)  # noise doubled
    wrong = propagate(law_for(loud), cfg_one(), LR, T)
    cols = ["suboptimality", "consensus"] + (["memory_norm2_workers"] if "EF" in name else [])
    for col in cols:
        check(mc[col], pred.columns[col][1:], wrong.columns[col][1:])
