"""coopsgd.theory — bounds, mixing matrices, spectra, topology design and schedules.

Never imports torch. Everything a REPL user needs is re-exported here::

    import theory
    W = theory.ring(16)
    theory.zeta(W)                      # 0.9493
    b = theory.cooperative_bound()     # JMLR Theorem 1, with its learning-rate condition eq. 145
    b.largest_eta(L=1, m=16, v=0, tau=4, zeta=W)          # ≈ 0.0090: the admissible η
    b.evaluate(eta=0.005, L=1, sigma2=1, m=16, v=0, tau=4, zeta=W, K=10_000, F_gap=10)
"""

from theory import checks, stepsizes, symbols, topologies
from theory.bound import (
    Bound,
    Condition,
    ConditionError,
    Optimum,
    Source,
    Status,
    UnusedParameterWarning,
)
from theory.bounds import *  # noqa: F403
from theory.bounds import __all__ as _bounds_all
from theory.mixing import (
    MixingMatrix,
    as_matrix,
    as_mixing,
    average,
    best_constant,
    complete,
    complete_graph,
    contiguous_groups,
    easgd_matrix,
    erdos_renyi_graph,
    exponential,
    exponential_graph,
    generalized_easgd_matrix,
    grid,
    grid_graph,
    group_average,
    hypercube,
    hypercube_graph,
    identity,
    max_degree,
    metropolis_hastings,
    mixing_matrix,
    path,
    path_graph,
    random_geometric_graph,
    ring,
    ring_graph,
    star,
    star_graph,
    torus,
    torus_graph,
    uniform,
    validate_graph,
    validate_mixing,
)
from theory.schedule_library import (
    AdaComm,
    AdaptiveLUPA,
    OneShot,
    adacomm,
    adaptive_lupa,
    haddadpour_conditions,
    linear_growth,
    linear_growth_alpha,
    linear_growth_periods,
    one_shot,
    periodic,
    spiridonoff,
    spiridonoff_comm_times,
    spiridonoff_comparison,
    sum_H_over_t,
    synchronous,
)
from theory.schedules import FromCallable, Hierarchical, Intervals, Periodic, Round, Schedule
from theory.spectral import (
    consensus_rounds,
    eigenvalues,
    spectral_gap,
    spectrum_exact,
    zeta,
    zeta_exact,
)
from theory.stepsizes import (
    Constant,
    InverseTime,
    LRFunction,
    PLStepsize,
    Stagewise,
    as_lr,
    pl_stepsize,
    stepsize_from_dict,
)
from theory.symbols import SYMBOLS, symbol
from theory.topologies import TOPOLOGIES, build_graph, build_mixing

#: topology design (cvxpy, scipy) is loaded on first use to keep ``import theory`` fast
_LAZY = {
    "fastest_mixing": "theory.design", "fastest_averaging": "theory.design",
    "compare_weights": "theory.design", "certify": "theory.design",
    "design_schedule": "theory.design", "DesignResult": "theory.design",
    "WeightTable": "theory.design", "WeightRow": "theory.design", "edge_orbits": "theory.design",
    "ScheduleDesign": "theory.design", "spectral_bundle": "theory.design",
    "extreme_eigs": "theory.design",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "design":
        import importlib

        return importlib.import_module("theory.design")
    raise AttributeError(f"module 'theory' has no attribute {name!r}")


def hierarchical(m: int, n_groups: int, tau1: int, tau2: int) -> Hierarchical:
    """Two-level hierarchical averaging of m workers in ``n_groups`` contiguous groups: group
    average every τ₁ steps, global average every τ₂ steps (time-varying W_k).

    This scheme is **this toolkit's own design**. Cooperative SGD's "elastic hierarchical
    averaging" (JMLR §6.3) is different — one auxiliary (elastic) node per group, the auxiliary
    nodes averaging among themselves — and the paper gives no bound for it; no bound is encoded
    for either."""
    return Hierarchical(group_average(contiguous_groups(m, n_groups)), average(m), tau1, tau2)


__all__ = [
    "SYMBOLS", "TOPOLOGIES", "Bound", "Condition", "ConditionError", "FromCallable",
    "Hierarchical", "UnusedParameterWarning", "build_graph", "build_mixing", "checks",
    "topologies", "stepsizes",
    "Constant", "InverseTime", "LRFunction", "PLStepsize", "Stagewise", "as_lr", "pl_stepsize",
    "stepsize_from_dict",
    "Intervals", "MixingMatrix", "Optimum", "Periodic", "Round", "Schedule", "Source", "Status",
    "as_matrix", "as_mixing", "average", "best_constant", "complete", "complete_graph",
    "consensus_rounds", "contiguous_groups", "easgd_matrix", "eigenvalues", "erdos_renyi_graph",
    "generalized_easgd_matrix",
    "exponential", "exponential_graph", "grid", "grid_graph", "group_average", "hierarchical",
    "hypercube", "hypercube_graph", "identity", "max_degree", "metropolis_hastings",
    "mixing_matrix", "path", "path_graph", "random_geometric_graph", "ring", "ring_graph",
    "spectral_gap", "spectrum_exact", "star", "star_graph", "symbol", "symbols", "torus",
    "torus_graph", "uniform", "validate_graph", "validate_mixing", "zeta", "zeta_exact",
    "AdaComm", "AdaptiveLUPA", "OneShot", "adacomm", "adaptive_lupa", "haddadpour_conditions",
    "linear_growth", "linear_growth_alpha", "linear_growth_periods", "one_shot", "periodic",
    "spiridonoff", "spiridonoff_comm_times", "spiridonoff_comparison", "sum_H_over_t",
    "synchronous",
    *_bounds_all,
    *_LAZY,
]
