"""GPU benchmark: the stacked engine against a Python loop over m worker modules and one model
on the same total batch, for the digits CNN and a ResNet-18-sized model, at m ∈ {8, 32}.

For each (model, m) it prints samples per second of

* the stacked engine (a :class:`~empirics.problems.ModuleProblem`: vmap over the workers of
  the forward through ``torch.func.functional_call``, one reverse pass; PASGD with τ = 4),
* a Python loop over m ``nn.Module`` copies with ``torch.optim.SGD`` (averaging every τ steps),
* one model trained with SGD on the m·B concatenated batch (the floor),

the ratios engine/loop and engine/one-model, and the peak GPU memory of each. Targets at
m = 32: engine ≥ 5× the loop and ≥ 0.5× the one-model throughput. Data are synthetic for the
ResNet (3×32×32 images, 10 classes: no download) and scikit-learn's digits for the CNN. Runs
in well under five minutes on one recent NVIDIA GPU (times are wall clock after a device
sync; best of ``--repeats``)::

    python benchmarks/bench_gpu.py                  # cuda:0, float32
    python benchmarks/bench_gpu.py --autocast bf16  # all three under bf16 autocast
    python benchmarks/bench_gpu.py --quick          # fewer steps (a check that it runs)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_module import compare


def _problem(kind: str, m: int, device: str, autocast: str | None, n: int):
    from empirics.problems import ModuleProblem

    if kind == "cnn":
        return ModuleProblem("empirics.problems.models:small_cnn", "digits", m=m,
                             device=device, autocast=autocast)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return ModuleProblem("empirics.problems.models:resnet18", (x, y), m=m, device=device,
                         autocast=autocast, eval_batch=512)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
    ap.add_argument("--ms", default="8,32", help="worker counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a few steps only")
    ap.add_argument("--n", type=int, default=2048, help="synthetic images for the ResNet")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run on the CPU anyway (a check of the script, not a benchmark)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.allow_cpu and dev.type == "cpu":
        torch.set_num_threads(1)
    elif dev.type != "cuda" or not torch.cuda.is_available():
        sys.exit(f"bench_gpu.py needs a CUDA device (got {args.device!r}, "
                 f"cuda available: {torch.cuda.is_available()})")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (script check)"
    print(f"{name}, torch {torch.__version__}, autocast "
          f"{args.autocast or 'off (float32, TF32 allowed)'}")
    ms = [int(v) for v in args.ms.split(",")]
    cases = [("cnn", 32, 60 if not args.quick else 10), ("resnet18", 32, 12 if not args.quick
                                                          else 3)]
    t_all = time.perf_counter()
    rows = []
    for kind, batch, steps in cases:
        for m in ms:
            t0 = time.perf_counter()
            prob = _problem(kind, m, args.device, args.autocast, n=max(args.n, m * batch))
            r = compare(prob, m, batch, 4, steps, 0.05, args.repeats)
            pk = {k: (v if v is not None else float("nan")) for k, v in r["peak_gib"].items()}
            rows.append((kind, m, r))
            print(f"{kind:<9} m = {m:<3} d = {prob.n_trainable:>9,}  engine {r['engine']:9.0f}  "
                  f"loop {r['loop']:9.0f}  one model {r['single']:9.0f} samples/s | engine/loop "
                  f"{r['engine_over_loop']:5.2f}  engine/one {r['engine_over_single']:5.2f} | "
                  f"peak GiB engine {pk['engine']:.2f} loop {pk['loop']:.2f} one "
                  f"{pk['single']:.2f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
            del prob
            torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - t_all:.0f} s")
    for kind, m, r in rows:
        if m == 32:
            ok = r["engine_over_loop"] >= 5 and r["engine_over_single"] >= 0.5
            print(f"targets at m = 32 ({kind}): engine/loop >= 5 and engine/one >= 0.5: "
                  f"{'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
