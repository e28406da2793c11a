"""Throughput of every compressor on a stacked (m, d) batch (default 64 × 10⁶ float32).

Prints, per compressor, the median wall time of ``C(x, g)`` and of ``decode(encode(x, g))``,
the throughput in input GB/s, and the ratio to a baseline measured in the same process: one
elementwise pass over x (``x.abs()``), the least any compressor must do.

The allocator is tuned as the engine tunes it (``empirics.algorithm.auto_tune_allocator``):
every temporary of a compressor on a 256 MB input is far above glibc's 32 MiB mmap threshold,
and untuned, each call page-faults all of them in afresh — what this benchmark mostly measured
before (issue 21). ``--compare-allocator`` also runs the calls in a child process with the
allocator left alone (``COOPSGD_TUNE_ALLOCATOR=0``) and prints untuned ÷ tuned per compressor.
Usage:

    python benchmarks/bench_compressors.py [--m 64] [--d 1000000] [--repeat 3] [--threads 1]
                                           [--compare-allocator]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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
    ap.add_argument("--compare-allocator", action="store_true",
                    help="also time the calls with the allocator left alone (child process)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from empirics.algorithm import auto_tune_allocator

    tuned = auto_tune_allocator(torch.device("cpu"))
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
    if a.json:  # the child of --compare-allocator: call times only
        times = {repr(c): _median_time(lambda c=c: c(x, torch.Generator().manual_seed(1)),
                                       a.repeat) for c in comps}
        print(json.dumps({"base": base, "times": times}))
        return
    untuned = _untuned(a) if a.compare_allocator else None
    print(f"x: ({a.m}, {a.d}) {a.dtype}, {gb:.3f} GB, {a.threads} thread(s), k = d/100 = {k}, "
          f"allocator tuned: {tuned}")
    print(f"baseline one elementwise pass x.abs(): {base * 1e3:.1f} ms ({gb / base:.2f} GB/s)")
    head = f"{'compressor':48s} {'call ms':>9s} {'GB/s':>6s} {'×base':>6s}"
    head += "" if a.no_wire else f" {'enc+dec ms':>11s} {'×call':>6s} {'bits/coord':>10s}"
    head += "" if untuned is None else f" {'untuned ms':>11s} {'÷tuned':>7s}"
    print(head)
    for c in comps:
        g = torch.Generator().manual_seed(1)
        t = _median_time(lambda c=c, g=g: c(x, g), a.repeat)
        line = f"{c!r:48s} {t * 1e3:9.1f} {gb / t:6.2f} {t / base:6.1f}"
        if not a.no_wire:
            tw = _median_time(lambda c=c, g=g: c.decode(c.encode(x, g)), a.repeat)
            line += f" {tw * 1e3:11.1f} {tw / t:6.1f} {c.bits(a.d) / a.d:10.3f}"
        if untuned is not None:
            tu = untuned["times"].get(repr(c), float("nan"))
            line += f" {tu * 1e3:11.1f} {tu / t:6.2f}x"
        print(line, flush=True)
    if untuned is not None:
        print(f"baseline x.abs() with the allocator left alone: {untuned['base'] * 1e3:.1f} ms "
              f"({untuned['base'] / base:.2f}x the tuned {base * 1e3:.1f} ms)")


def _untuned(a: argparse.Namespace) -> dict:
    """The call times in a child process with the allocator left alone."""
    env = dict(os.environ, COOPSGD_TUNE_ALLOCATOR="0")
    cmd = [sys.executable, __file__, "--json", "--m", str(a.m), "--d", str(a.d), "--repeat",
           str(a.repeat), "--threads", str(a.threads), "--dtype", a.dtype]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
