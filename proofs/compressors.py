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


def _require_mc_moments(Y: object, x: object, omega: float, what: str) -> None:
    """Rows of ``Y`` are independent draws of an unbiased C(x): their mean is x and their mean
    ‖C(x) − x‖²/‖x‖² is ``omega``, each within 5 standard errors."""
    rows = Y.shape[0]
    err = ((Y - x) ** 2).sum(-1) / (x**2).sum()
    se = 5 * float(err.std()) / rows**0.5
    require(abs(float(err.mean()) - omega) < se + 1e-12,
            f"MC E‖C−x‖²/‖x‖² = {float(err.mean()):.4g} vs {omega:.4g} ({what})")
    bias = float((Y.mean(0) - x).norm() / x.norm())
    require(bias < 5 * (omega / rows) ** 0.5 + 1e-12, f"MC mean of C(x) off by {bias:.3g} ({what})")


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
        _require_mc_moments(Y, x, C.omega(d), f"RandomK({k}), d={d}")
        n += rows
    return checked(n, "E(C_i−x_i)² = (1/q−1)x_i² symbolically; exact expectation over all "
                      "k-subsets for 4 (d, k) = declared ω = d/k − 1; Monte Carlo on the seeded "
                      "compressor within 5 standard errors")


@obligation("empirics.compressors.QSGD.omega", "empirics.compressors.QSGD.__call__")
def qsgd_unbiased_variance() -> object:
    """QSGD: E Q(x) = x, and the exact variance ‖x‖² Σ_i (r_i − l_i/s)((l_i+1)/s − r_i) (two-point
    stochastic rounding of r_i = |x_i|/‖x‖ between l_i/s and (l_i+1)/s) is ≤ the declared
    ω = min(d/s², √d/s) (the paper's Lemma 3.1, recalled) — on random and adversarial x; Monte
    Carlo on the real compressor agrees with the exact variance."""
    import torch

    from empirics.compressors import QSGD

    # per coordinate, a ≤ r ≤ a + 1/s: (r − a)(a + 1/s − r) ≤ 1/(4s²) (its maximum, at the midpoint)
    r, a, s_ = sp.symbols("r a s", positive=True)
    f = (r - a) * (a + 1 / s_ - r)
    (rstar,) = sp.solve(sp.diff(f, r), r)
    require(sp.simplify(f.subs(r, rstar) - 1 / (4 * s_**2)) == 0, "max of the rounding variance")

    def exact_ratio(x: np.ndarray, s: int) -> float:  # independent of the code: numpy only
        nrm = np.linalg.norm(x)
        rr = np.abs(x) / nrm
        lo = np.floor(rr * s) / s
        return float(np.sum((rr - lo) * (lo + 1 / s - rr)))

    rng = np.random.default_rng(7)
    n = 0
    for d in (1, 2, 5, 16, 100, 1000):
        for s in (1, 2, 4, 16, 255):
            om = QSGD(s).omega(d)
            require(om == min(d / s**2, np.sqrt(d) / s), f"QSGD({s}).omega({d}) = {om}")
            xs = [rng.standard_normal(d), np.ones(d), np.eye(d)[0] + 1e-3 * rng.random(d),
                  rng.standard_cauchy(d), np.full(d, 1.0) / np.sqrt(d) * (1 + 1e-9)]
            for x in xs:
                v = exact_ratio(x, s)
                require(v <= om * (1 + 1e-12), f"exact variance {v:.4g}‖x‖² > ω = {om:.4g} "
                                               f"(d={d}, s={s})")
                n += 1
    g = torch.Generator().manual_seed(3)
    for d, s in ((10, 1), (50, 4), (300, 16)):
        x = torch.randn(d, generator=g, dtype=torch.float64)
        rows = 20_000
        Y = QSGD(s)(x.expand(rows, d).clone(), generator=g)
        _require_mc_moments(Y, x, exact_ratio(x.numpy(), s), f"QSGD({s}), d={d}")
        n += rows
    return checked(n, "max rounding variance 1/(4s²) symbolically; exact variance ≤ declared ω on "
                      "150 random/adversarial x (30 (d, s)); Monte Carlo on the seeded compressor "
                      "= exact variance within 5 standard errors, unbiased")


@obligation("empirics.compressors.ScaledSign.delta", "empirics.compressors.ScaledSign.__call__")
def scaled_sign_contraction() -> object:
    """Scaled sign C(x) = (‖x‖₁/d)·sign(x): ‖x − C(x)‖² = ‖x‖² − ‖x‖₁²/d exactly, and
    ‖x‖₁ ≥ ‖x‖₂ gives the declared δ = 1/d (tight at x = e₁)."""
    import torch

    from empirics.compressors import ScaledSign

    N2, S, d = sp.symbols("N2 S d", positive=True)  # ‖x‖², ‖x‖₁ = Σ x_i sign(x_i), d
    expand = N2 - 2 * (S / d) * S + d * (S / d) ** 2  # Σ (x_i − (S/d) sign x_i)², sign² = 1
    require(sp.simplify(expand - (N2 - S**2 / d)) == 0, "‖x − C(x)‖² identity")
    g = torch.Generator().manual_seed(4)
    n = 0
    for dd in (1, 2, 7, 64, 1000):
        C = ScaledSign()
        require(C.delta(dd) == 1 / dd, f"ScaledSign().delta({dd}) = {C.delta(dd)} ≠ 1/d")
        X = torch.randn(300, dd, generator=g, dtype=torch.float64)
        X[0] = 0.0
        X[1] = torch.nn.functional.one_hot(torch.tensor(0), dd).double()  # tight case
        Y = C(X)
        err = ((X - Y) ** 2).sum(-1)
        n2, n1 = (X**2).sum(-1), X.abs().sum(-1)
        require(torch.allclose(err, n2 - n1**2 / dd, rtol=1e-12, atol=1e-12),
                f"identity fails on the real compressor (d={dd})")
        require(bool((err <= (1 - 1 / dd) * n2 * (1 + 1e-12) + 1e-15).all()),
                f"contraction δ = 1/d violated (d={dd})")
        require(abs(float(err[1]) - (1 - 1 / dd)) < 1e-12, f"not tight at e₁ (d={dd})")
        n += 300
    return checked(n, "‖x − C(x)‖² = ‖x‖² − ‖x‖₁²/d symbolically and on the real compressor "
                      "(float64, incl. x = 0); δ = 1/d holds, with equality at e₁")
