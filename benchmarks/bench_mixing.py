"""The automatic mixing kernel against the best of dense, gather and block, measured side by side.

For ring, torus, hypercube, exponential and random geometric graphs (their default weights) at
m ∈ {64, 512} and a range of widths d (float32 by default), one X ← WᵀX by each kernel of
:class:`empirics.mixers.Mixer` — ``dense`` (one GEMM), ``gather`` (chunked gather/scale/
scatter-add), ``block`` (small GEMMs per block of rows, where W has index locality), ``csr``
(sparse × dense, in column panels) — and by the automatic choice (``mixing="auto"``). Target
(issue 21): auto never more than 1.1× slower than the best of dense, gather and block.

Timings are thread CPU seconds (``time.thread_time``: a shared machine's other processes do not
inflate them), best of ``--repeats`` interleaved rounds, the allocator tuned as the engine tunes
it. ``--calibrate`` also fits the cost-model constants of :mod:`empirics.mixers` to the
measurements (least squares of log time per kernel) and prints them with the regret of the
fitted choice.

    python benchmarks/bench_mixing.py [--quick] [--dtype float32] [--repeats 3] [--calibrate]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from empirics.algorithm import tune_allocator
from empirics.mixers import Mixer
from theory.topologies import build_mixing

KERNELS = ("dense", "gather", "block", "csr")


def graphs(m: int) -> dict:
    rc = {64: (8, 8), 512: (16, 32)}.get(m)
    out = {"ring": build_mixing("ring", m)}
    if rc is not None:
        out["torus"] = build_mixing("torus", m, rows=rc[0], cols=rc[1])
    if m & (m - 1) == 0:
        out["hypercube"] = build_mixing("hypercube", m)
    out["exponential"] = build_mixing("exponential", m)
    out["geometric"] = build_mixing("geometric", m)
    return out


def cpu_time(fn: Callable[[], object], budget: float) -> float:
    """Thread CPU seconds per call of ``fn`` over about ``budget`` seconds (≥ 2 calls)."""
    fn()
    n, t0 = 0, time.thread_time()
    while True:
        fn()
        n += 1
        el = time.thread_time() - t0
        if n >= 2 and el >= budget:
            return el / n


def measure(W, d: int, dtype: torch.dtype, repeats: int, budget: float) -> dict[str, float]:
    dev = torch.device("cpu")
    X = torch.randn(W.n, d, dtype=dtype, generator=torch.Generator().manual_seed(0))
    buf = torch.empty_like(X)
    mixers = {"auto": Mixer(W, dev, dtype)}
    for k in KERNELS:
        try:
            mixers[k] = Mixer(W, dev, dtype, k)
        except ValueError:  # block without index locality
            pass
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved
        for k, mx in mixers.items():
            t = cpu_time(lambda mx=mx: mx(X, buf), budget)
            best[k] = min(best.get(k, math.inf), t)
    best["auto_kernel"] = mixers["auto"].strategy_for(d)  # type: ignore[assignment]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="d ∈ {1000, 100000} only")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.05, help="seconds per measurement")
    ap.add_argument("--ms", default="64,512")
    ap.add_argument("--ds", default=None)
    ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tuned = tune_allocator()
    dtype = getattr(torch, a.dtype)
    ds = [int(x) for x in a.ds.split(",")] if a.ds else (
        [1000, 100_000] if a.quick else [100, 1000, 10_000, 100_000])
    print(f"torch {torch.__version__}, 1 thread, {a.dtype}, allocator tuned: {tuned}, thread "
          f"CPU time, best of {a.repeats}")
    hdr = (f"{'graph':<12} {'m':>4} {'d':>7} " + " ".join(f"{k:>9}" for k in KERNELS)
           + f" {'auto':>9} {'kernel':>7} {'auto/best(d,g,b)':>17}")
    print(hdr + "   (ms per mixing)")
    print("-" * len(hdr))
    rows, worst = [], 0.0
    for m in (int(x) for x in a.ms.split(",")):
        for gname, W in graphs(m).items():
            for d in ds:
                t = measure(W, d, dtype, a.repeats, a.budget)
                base = min(t[k] for k in ("dense", "gather", "block") if k in t)
                r = t["auto"] / base
                worst = max(worst, r)
                rows.append((gname, W, d, t))
                cells = " ".join(f"{t[k] * 1e3:9.3f}" if k in t else f"{'—':>9}"
                                 for k in KERNELS)
                print(f"{gname:<12} {m:>4} {d:>7} {cells} {t['auto'] * 1e3:9.3f} "
                      f"{t['auto_kernel']:>7} {r:16.2f}x", flush=True)
    print(f"\ntarget: auto within 1.1x of the best of dense, gather and block in every case: "
          f"worst {worst:.2f}x  {'reached' if worst <= 1.1 else 'NOT reached'}")
    if a.calibrate:
        calibrate(rows, dtype)


def calibrate(rows: list, dtype: torch.dtype) -> None:
    """Fit each kernel's modelled time to the measurements (least squares in log time over
    the module's cost terms) and report the regret of the model's choice."""
    import empirics.mixers as mm

    elem = torch.empty((), dtype=dtype).element_size()
    names = ("CALL_S", "GEMM_S", "CSR_CACHE_S", "STREAM_S")
    start = np.log([getattr(mm, k) for k in names])

    def predict(logc: np.ndarray, k: str, W, d: int) -> float:
        for name, v in zip(names, np.exp(logc), strict=True):
            setattr(mm, name, float(v))
        mx = Mixer(W, torch.device("cpu"), dtype, "sparse")
        calls = rows_read = 0
        if mx.blocks is not None:
            calls = sum(len(r) for _, _, r in mx.blocks)
            rows_read = sum(int(r1 - r0) for _, _, r in mx.blocks for r0, r1, _ in r)
        return mm.mixing_cost(k, W.n, d, mx.nnz, elem, calls, rows_read)

    from scipy.optimize import minimize

    def loss(logc: np.ndarray) -> float:
        err = 0.0
        for _, W, d, t in rows:
            for k in ("dense", "block", "csr"):
                if k in t:
                    err += (math.log(predict(logc, k, W, d)) - math.log(t[k])) ** 2
        return err

    fit = minimize(loss, start, method="Nelder-Mead", options={"maxiter": 400})
    print("\nfitted constants (seconds):")
    for name, v in zip(names, np.exp(fit.x), strict=True):
        print(f"  {name} = {v:.3g}")
    worst = 0.0
    for _, W, d, t in rows:
        cand = {k: predict(fit.x, k, W, d) for k in ("dense", "block", "csr") if k in t}
        pick = min(cand, key=lambda k: (cand[k], k))
        base = min(t[k] for k in ("dense", "gather", "block") if k in t)
        worst = max(worst, t[pick] / base)
    print(f"  fitted model's worst auto/best = {worst:.2f}x")
    for name, v in zip(names, start, strict=True):  # restore
        setattr(mm, name, float(np.exp(v)))


if __name__ == "__main__":
    main()
