"""Obligations for the declared compressor constants (empirics.compressors).

This is the only topic that imports ``empirics`` (torch), lazily inside each obligation, so the rest
of ``proofs`` and ``theory`` stay torch-free.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import sympy as sp

from proofs.core import checked, obligation, require


@obligation("empirics.compressors.TopK.delta", "empirics.compressors.TopK.__call__")
def topk_contraction() -> object:
    """Top-k: declared δ = k/d and ‖x − top_k(x)‖² ≤ (1 − k/d)‖x‖² for every x (tight at x = 1)."""
    import torch

    from empirics.compressors import TopK

    g = torch.Generator().manual_seed(0)
    n = 0
    for d, k in ((1, 1), (5, 1), (10, 3), (64, 8), (100, 100), (1000, 17)):
        C = TopK(k)
        dl = C.delta(d)
        require(dl == k / d, f"TopK({k}).delta({d}) = {dl}, expected k/d = {k / d}")
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(200, d, generator=g, dtype=dtype) * torch.rand(200, 1, generator=g,
                                                                           dtype=dtype) * 10
            y = C(x)
            err = ((x - y) ** 2).sum(-1).double()
            nx2 = (x**2).sum(-1).double()
            tol = 1e-5 if dtype == torch.float32 else 1e-12
            require(bool((err <= (1 - dl) * nx2 * (1 + tol) + tol).all()),
                    f"contraction violated for d={d}, k={k}, {dtype}")
            # independent: the kept entries are the k largest |x_i| (compare with numpy sort)
            xa = x.double().numpy()
            kept = np.sort(np.abs(xa), axis=-1)[:, d - k:]
            require(np.allclose(np.sort(np.abs(y.double().numpy()), axis=-1)[:, d - k:], kept),
                    f"top-k does not keep the k largest entries (d={d}, k={k})")
            n += 200
        ones = torch.ones(1, d, dtype=torch.float64)
        e1 = float(((ones - C(ones)) ** 2).sum())
        require(abs(e1 - (1 - k / d) * d) < 1e-12, f"not tight at x = 1 (d={d}, k={k})")
    return checked(n, "declared δ = k/d for 6 (d, k); contraction holds on random float32/64 "
                      "rows; equality at x = 1; kept entries = the k largest |x_i|")


@obligation("empirics.compressors.RandomK.omega", "empirics.compressors.RandomK.__call__")
def randomk_unbiased_variance() -> object:
    """Unbiased random-k: E C(x) = x and E‖C(x) − x‖² = (d/k − 1)‖x‖² = declared ω‖x‖²."""
    import torch

    from empirics.compressors import RandomK

    # symbolic: per coordinate, kept with probability q = k/d and scaled by 1/q
    q, xi = sp.symbols("q x_i", positive=True)
    var = q * (xi / q - xi) ** 2 + (1 - q) * xi**2
    require(sp.simplify(var - (1 / q - 1) * xi**2) == 0, f"per-coordinate variance {var}")
    # exact expectation over all k-subsets for small d (independent of the code)
    rng = np.random.default_rng(6)
    for d, k in ((4, 1), (5, 2), (6, 3), (7, 2)):
        x = [Fraction(int(v)) for v in rng.integers(-9, 10, size=d)]
        nx2 = sum(v * v for v in x)
        subsets = list(itertools.combinations(range(d), k))
        tot = Fraction(0)
        mean = [Fraction(0)] * d
        for S in subsets:
            c = [Fraction(d, k) * x[i] if i in S else Fraction(0) for i in range(d)]
            tot += sum((a - b) ** 2 for a, b in zip(c, x, strict=True))
            mean = [m_ + a for m_, a in zip(mean, c, strict=True)]
        require(tot / len(subsets) == (Fraction(d, k) - 1) * nx2, f"exact E‖C−x‖², d={d}, k={k}")
        require([m_ / len(subsets) for m_ in mean] == x, f"exact E C(x) ≠ x, d={d}, k={k}")
        om = RandomK(k, unbiased=True).omega(d)
        require(om == d / k - 1, f"RandomK({k}, unbiased=True).omega({d}) = {om} ≠ d/k − 1")
    # Monte Carlo on the real compressor (seeded)
    n = 0
    g = torch.Generator().manual_seed(1)
    for d, k in ((10, 2), (50, 5), (2048, 64)):
        C = RandomK(k, unbiased=True)
        x = torch.randn(d, generator=g, dtype=torch.float64)
        rows = 20_000 if d <= 50 else 4000
        X = x.expand(rows, d).clone()
        Y = C(X, generator=g)
        require(bool(((Y != 0).sum(-1) <= k).all()), "more than k non-zeros")
        ratio = float(((Y - X) ** 2).sum(-1).mean() / (x**2).sum())
        om = C.omega(d)
        se = 5 * float(((Y - X) ** 2).sum(-1).std() / (x**2).sum()) / rows**0.5
        require(abs(ratio - om) < se, f"MC E‖C−x‖²/‖x‖² = {ratio:.4f} vs ω = {om} (d={d}, k={k})")
        bias = float((Y.mean(0) - x).norm() / x.norm())
        require(bias < 5 * (om / rows) ** 0.5, f"MC mean of C(x) off by {bias:.3g} (d={d})")
        n += rows
    return checked(n, "E(C_i−x_i)² = (1/q−1)x_i² symbolically; exact expectation over all "
                      "k-subsets for 4 (d, k) = declared ω = d/k − 1; Monte Carlo on the seeded "
                      "compressor within 5 standard errors")
