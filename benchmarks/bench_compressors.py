"""Throughput of every compressor on a stacked (m, d) batch (default 64 × 10⁶ float32).

Prints, per compressor, the median wall time of ``C(x, g)`` and of ``decode(encode(x, g))``,
the throughput in input GB/s, and the ratio to a baseline measured in the same process: one
elementwise pass over x (``x.abs()``), the least any compressor must do. Usage:

    python benchmarks/bench_compressors.py [--m 64] [--d 1000000] [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from empirics.compressors import QSGD, Compose, Identity, RandomK, ScaledSign, TopK


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--no-wire", action="store_true", help="skip encode/decode timings")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    x = torch.randn(a.m, a.d, generator=torch.Generator().manual_seed(0), dtype=dtype)
    gb = x.numel() * x.element_size() / 1e9
    k = max(1, a.d // 100)
    comps = [
        Identity(),
        TopK(k),
        RandomK(k),
        RandomK(k, unbiased=True),
        QSGD(1),
        QSGD(15),
        ScaledSign(),
        Compose(TopK(k), QSGD(4)),
        Compose(RandomK(k, unbiased=True), QSGD(4)),
    ]
    base = _median_time(lambda: x.abs(), a.repeat)
    print(f"x: ({a.m}, {a.d}) {a.dtype}, {gb:.3f} GB, {a.threads} thread(s), k = d/100 = {k}")
    print(f"baseline one elementwise pass x.abs(): {base * 1e3:.1f} ms ({gb / base:.2f} GB/s)")
    head = f"{'compressor':48s} {'call ms':>9s} {'GB/s':>6s} {'×base':>6s}"
    head += "" if a.no_wire else f" {'enc+dec ms':>11s} {'×call':>6s} {'bits/coord':>10s}"
    print(head)
    for c in comps:
        g = torch.Generator().manual_seed(1)
        t = _median_time(lambda c=c, g=g: c(x, g), a.repeat)
        line = f"{c!r:48s} {t * 1e3:9.1f} {gb / t:6.2f} {t / base:6.1f}"
        if not a.no_wire:
            tw = _median_time(lambda c=c, g=g: c.decode(c.encode(x, g)), a.repeat)
            line += f" {tw * 1e3:11.1f} {tw / t:6.1f} {c.bits(a.d) / a.d:10.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
