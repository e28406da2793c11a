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

__all__ = [
    "PASGD_LR", "cooperative_bound", "decentralized_periodic_bound", "dpsgd_bound", "easgd_bound",
    "easgd_network_factor", "easgd_optimal_alpha", "easgd_zeta", "error_floor",
    "optimal_tau_runtime", "pasgd_bound", "pasgd_dpsgd_crossover", "runtime_bound",
    "synchronous_bound",
]
