"""coopsgd.empirics — the torch side: problems with known constants, compressors, the stacked-worker
engine that runs every Cooperative SGD configuration, and the torch.distributed backend.

Names are re-exported lazily (PEP 562), so ``import empirics`` and the ``coopsgd`` CLI do not load
torch until something that needs it is touched::

    import empirics, theory
    prob = empirics.LogisticRegression(n_samples=2000, d=20, m=8, seed=0)
    cfg = empirics.decentralized_periodic(theory.ring(8), tau=4)
    res = empirics.simulate(prob, cfg, lr=0.05, T=500, batch_size=8, seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "empirics.problems": (
        "Constants", "Estimate", "FiniteSumProblem", "LeastSquares", "LogisticRegression",
        "MLPClassifier", "ModuleProblem", "NoisyQuadratic", "PiecewiseQuadratic1D",
        "PlantedReLU", "Problem", "seed_for",
    ),
    "empirics.testing": ("check_compressor",),
    "empirics.compressors": (
        "QSGD", "Compose", "Compressor", "Identity", "Payload", "RandomK", "Rescaled",
        "ScaledSign", "TopK", "index_bits",
    ),
    "empirics.configs": (
        "Config", "configuration", "decentralized_periodic", "dpsgd", "easgd", "hierarchical",
        "local_sgd", "lupa", "mdsgd", "one_shot", "pasgd", "qsgd", "spiridonoff_sgd",
        "synchronous", "Gossip", "PowerThreshold", "choco_sgd", "squarm",
    ),
    "empirics.engine": (
        "Constant", "DivergenceError", "InverseTime", "LRFunction", "Simulator", "Stagewise",
        "as_lr", "compressor_seed", "register_fast_grad", "run", "simulate", "tune_allocator",
        "gossip_seed",
    ),
    "empirics.spec": ("RunSpec",),
    "empirics.records": ("Result", "RunCache", "Trace", "load_result"),
    "empirics.stats": ("bound_test", "mean_ci", "paired_p"),
    "empirics.recursion": ("Moments", "exact_moments"),
    "empirics.experiment": ("ExperimentResult", "ExperimentSpec", "Verdict", "run_experiment",
                            "sweep", "sweep2"),
    "empirics.verify": ("verify",),
    "empirics.distributed": (
        "DistributedError", "DistributedResult", "RoundTiming", "fit_runtime", "run_distributed",
    ),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
#: submodules reachable as attributes (``empirics.compressors.make``)
_SUBMODULES = {"problems", "compressors", "configs", "engine", "records", "distributed", "launch",
               "data", "cli", "recursion", "experiment", "report", "reproductions", "plots",
               "algorithm", "driver", "mixers", "collectives", "fastgrads", "spec", "stats",
               "match", "testing", "predict", "moments", "laws", "falsify"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"empirics.{name}")
    raise AttributeError(f"module 'empirics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | _SUBMODULES)
