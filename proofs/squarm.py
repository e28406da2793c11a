"""Obligations for SQuARM-SGD's compressed gossip (empirics.configs.Gossip, the engine's
``gossip_mix``) and its compressor condition (theory.bounds.squarm). ``empirics`` (torch) is
imported lazily inside the obligations, as in :mod:`proofs.compressors`."""

from __future__ import annotations

import math

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require


@obligation("empirics.compressors.Compose.delta", "empirics.compressors.Rescaled.delta",
            "theory.bounds.squarm.squarm_compressor_condition")
def squarm_compose_contraction() -> object:
    """Top-k then QSGD/(1+ω) meets E‖x − C(x)‖² ≤ (1 − δ)‖x‖² with the declared δ = (k/d)/(1+ω)."""
    import torch

    from empirics.compressors import QSGD, Compose, TopK

    # symbolic: y = top_k(x), ‖y‖² ≥ (k/d)‖x‖²; z = f·Q(y) with f = 1/(1+ω), E Q = y,
    # E‖Q‖² ≤ (1+ω)‖y‖²: E‖x − z‖² = ‖x‖² − ‖y‖² + E‖y − z‖² ≤ ‖x‖² − f‖y‖² ≤ (1 − f k/d)‖x‖²
    x2, y2, w, k, d = sp.symbols("x2 y2 omega k d", positive=True)
    f = 1 / (1 + w)
    e_yz = y2 - 2 * f * y2 + f**2 * (1 + w) * y2          # E‖y − fQ‖² at E‖Q‖² = (1+ω)‖y‖²
    total = x2 - y2 + e_yz
    require(sp.simplify(total - (x2 - f * y2)) == 0, f"E‖x − z‖² ≠ ‖x‖² − f‖y‖²: {total}")
    # with ‖y‖² = (k/d)‖x‖² (the worst case of top-k) this is (1 − δ)‖x‖², δ = f·k/d
    require(sp.simplify((x2 - f * y2).subs(y2, k / d * x2) - (1 - f * k / d) * x2) == 0,
            "worst case of top-k does not give δ = (k/d)/(1+ω)")
    # the code's declared constant, and the exact expectation on random x (QSGD's level
    # distribution in closed form, no sampling)
    g = np.random.default_rng(0)
    n = 0
    for dd, kk, s in ((10, 1, 1), (10, 3, 2), (50, 5, 16), (64, 64, 4), (200, 20, 3)):
        C = Compose(TopK(kk), QSGD(s).as_contraction())
        om = min(kk / s**2, math.sqrt(kk) / s)
        dl = C.delta(dd)
        require(abs(dl - (kk / dd) / (1 + om)) < 1e-15, f"declared δ {dl} ≠ (k/d)/(1+ω)")
        for _ in range(40):
            x = g.standard_normal(dd) * np.exp(2 * g.standard_normal(dd))
            keep = np.argsort(-np.abs(x), kind="stable")[:kk]
            kept = np.zeros(dd, dtype=bool)
            kept[keep] = True
            # the implementation keeps the same coordinates
            out = C(torch.as_tensor(x)[None], generator=torch.Generator().manual_seed(n))[0]
            require(bool(np.all(out.numpy()[~kept] == 0)), "Compose kept other coordinates")
            y = x[keep]
            ny2 = float(y @ y)
            r = np.abs(y) / math.sqrt(ny2)
            low = np.minimum(np.floor(r * s), s - 1)
            var = ny2 * float(np.sum((r - low / s) * ((low + 1) / s - r)))
            fi = 1 / (1 + om)
            exact = float(x @ x) - ny2 + (1 - fi) ** 2 * ny2 + fi**2 * var
            require(exact <= (1 - dl) * float(x @ x) * (1 + 1e-12),
                    f"E‖x − C(x)‖² = {exact:.6g} > (1 − δ)‖x‖² (d={dd}, k={kk}, s={s})")
            n += 1
    return checked(n, "symbolic: E‖x − C‖² ≤ ‖x‖² − f‖top_k(x)‖² ≤ (1 − f k/d)‖x‖²; the declared "
                      "δ of Compose(TopK(k), QSGD(s).as_contraction()) is (k/d)/(1+ω_QSGD(k)), "
                      "and the exact expectation (QSGD levels in closed form) stays below "
                      "(1 − δ)‖x‖² on 200 random heavy-tailed x")


@obligation("empirics.algorithm.GossipStep", "empirics.configs.Gossip")
def squarm_gossip_preserves_average() -> object:
    """x_i += γ((Wᵀx̂)_i − x̂_i) keeps Σ_i x_i when W1 = 1; identity C, γ = 1, c = 0 gives Wᵀx."""
    import torch

    from empirics.compressors import Identity
    from empirics.configs import squarm
    from empirics.engine import RunSpec, Simulator
    from empirics.problems import LeastSquares
    from theory.mixing import ring

    m = 4
    W = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"w_{i}{j}"))
    xh = sp.Matrix(m, 1, lambda i, _: sp.Symbol(f"xh_{i}"))
    gam = sp.Symbol("gamma", positive=True)
    rows = {W[i, m - 1]: 1 - sum(W[i, j] for j in range(m - 1)) for i in range(m)}  # W1 = 1
    term = (gam * (W.T * xh - xh)).subs(rows)
    require(sp.expand(sum(term)) == 0, f"Σ_i consensus term = {sp.expand(sum(term))}")
    x = sp.Matrix(m, 1, lambda i, _: sp.Symbol(f"x_{i}"))
    red = (x + (W.T * x - x)).subs(rows) - (W.T * x).subs(rows)
    require(all(sp.expand(e) == 0 for e in red), "x + (Wᵀx − x) ≠ Wᵀx")
    # the algorithm's gossip step does it: one step from arbitrary X, X̂
    p = LeastSquares(n_samples=40, d=5, m=m, seed=0)
    cfg = squarm(ring(m), 1, compressor=Identity(), gamma=0.37, threshold=0.0)
    sim = Simulator(RunSpec(p, cfg, 0.1, 2))
    comm = sim.comm
    g = torch.Generator().manual_seed(0)
    comm.X.copy_(torch.randn(comm.X.shape, generator=g, dtype=comm.X.dtype))
    comm.Xhat.copy_(torch.randn(comm.Xhat.shape, generator=g, dtype=comm.Xhat.dtype))
    before = comm.X.sum(0).clone()
    A = torch.tensor(np.array(ring(m).matrix, dtype=np.float64), dtype=comm.X.dtype)
    want = comm.X + 0.37 * (A.T @ comm.X - comm.X)
    Xw, _ = comm.worker_rows()
    sim.driver.gossip(comm, Xw, cfg.schedule.W, comm.mixer(cfg.schedule.W), 0, 0.1)
    require(float((comm.X.sum(0) - before).abs().max()) < 1e-12, "engine changed Σ_i x_i")
    require(float((comm.X - want).abs().max()) < 1e-12,
            "engine step ≠ x + γ(Wᵀx − x) at c = 0")
    return proved(f"symbolic for m = {m} with a generic W (rows summing to 1): Σ_i γ((Wᵀx̂)_i "
                  "− x̂_i) = 0 and x + (Wᵀx − x) = Wᵀx; the engine's gossip step agrees")
