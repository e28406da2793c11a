"""Bounds of the four papers, one module per paper (each formula carries its Source)."""

from theory.bounds.cooperative import (
    PASGD_LR,
    cooperative_bound,
    decentralized_periodic_bound,
    dpsgd_bound,
    easgd_bound,
    easgd_network_factor,
    easgd_optimal_alpha,
    easgd_zeta,
    error_floor,
    optimal_tau_runtime,
    pasgd_bound,
    pasgd_dpsgd_crossover,
    runtime_bound,
    synchronous_bound,
)
from theory.bounds.local_pl import (
    ASSUMPTIONS,
    G2,
    RATE_TABLE,
    Assumption,
    RateRow,
    TauChoice,
    alpha_pl,
    compare_rates,
    pl_bound,
    pl_bound_intervals,
    tau_choice,
)
from theory.bounds.memory import (
    TransformationEquation,
    delta_from_omega,
    ef_step,
    memory_bound,
    transformation_equation,
)
from theory.bounds.one_shot import (
    ABSTRACT_CLAIMS,
    Scaling,
    extra_error,
    required_rounds,
    speedup_term,
    sum_H_over_t_approx,
)
from theory.bounds.runtime import (
    JointChoice,
    TopologyChoice,
    best_topology_and_tau,
    decentralized_runtime_bound,
    iterations_within,
    optimal_tau_decentralized,
    topology_delay,
)
from theory.bounds.squarm import (
    SQUARM_CLAIMS,
    squarm_compressor_condition,
    squarm_rate,
    squarm_trigger_condition,
)

__all__ = [
    "ABSTRACT_CLAIMS", "ASSUMPTIONS", "G2", "RATE_TABLE", "Assumption", "JointChoice", "RateRow",
    "Scaling", "TauChoice", "TopologyChoice", "TransformationEquation", "alpha_pl",
    "best_topology_and_tau", "compare_rates", "decentralized_runtime_bound", "delta_from_omega",
    "ef_step", "extra_error", "iterations_within", "memory_bound", "optimal_tau_decentralized",
    "pl_bound", "pl_bound_intervals", "required_rounds", "speedup_term", "sum_H_over_t_approx",
    "tau_choice", "topology_delay", "transformation_equation",
    "PASGD_LR", "cooperative_bound", "decentralized_periodic_bound", "dpsgd_bound", "easgd_bound",
    "easgd_network_factor", "easgd_optimal_alpha", "easgd_zeta", "error_floor",
    "optimal_tau_runtime", "pasgd_bound", "pasgd_dpsgd_crossover", "runtime_bound",
    "synchronous_bound",
    "SQUARM_CLAIMS", "squarm_compressor_condition", "squarm_rate", "squarm_trigger_condition",
]
