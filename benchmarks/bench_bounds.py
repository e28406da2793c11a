"""Benchmark: ``Bound.grid`` on 10⁶ points, first call (builds the numpy functions with sympy's
lambdify) against later calls on the same Bound (reuses them), measured in the same process.

Cases (Cooperative SGD, JMLR Theorem 1 with its learning-rate condition eq. 145):

* ``grid``: η (1000 values) × τ (1000 values) broadcast to 10⁶ points, other symbols scalar,
  conditions checked (``check="mask"``);
* ``flat``: four arrays of 10⁶ random points (η, σ², τ, ζ), ``check=False``.

Each first call uses a fresh copy of the Bound (empty cache); the cached time is the best of
``--repeat`` calls.

    python benchmarks/bench_bounds.py
    python benchmarks/bench_bounds.py --repeat 20
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import theory


def _time(fn, repeat: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="cached calls (best is reported)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = 10**6
    eta_max = float(theory.largest_eta(1.0, 16, 64, 0.9))
    cases = {
        "grid 1000×1000, check='mask'": dict(
            kw=dict(eta=np.linspace(1e-3, 1, 1000)[:, None] * eta_max,
                    tau=np.arange(1, 1001, dtype=float)[None, :], L=1.0, sigma2=1.0, m=16, v=0,
                    zeta=0.9, K=1e5, F_gap=1.0), check="mask"),
        "flat 4 × 10⁶ arrays, check=False": dict(
            kw=dict(eta=rng.uniform(1e-4, eta_max, n), sigma2=rng.uniform(0, 2, n),
                    tau=rng.integers(1, 64, n).astype(float), zeta=rng.uniform(0, 0.9, n),
                    L=1.0, m=16, v=0, K=1e5, F_gap=1.0), check=False),
    }
    print(f"Bound.grid on 10⁶ points (cooperative_bound, eq. 145), best of {args.repeat}")
    print(f"  {'case':<36}{'first call':>12}{'cached':>12}{'ratio':>9}")
    for name, c in cases.items():
        b = dataclasses.replace(theory.cooperative_bound())  # a fresh, empty cache
        first, cached = _time(lambda b=b, c=c: b.grid(**c["kw"], check=c["check"]), args.repeat)
        print(f"  {name:<36}{first * 1e3:>9.2f} ms{cached * 1e3:>9.2f} ms"
              f"{first / cached:>8.1f}×")


if __name__ == "__main__":
    main()
