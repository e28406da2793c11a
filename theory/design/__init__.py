"""Topology design: the fastest-mixing symmetric weights on a graph, with a certificate.

Problem (Boyd, Diaconis & Xiao 2004, "Fastest mixing Markov chain on a graph", SIAM Rev. 46;
Xiao & Boyd 2004, "Fast linear iterations for distributed averaging", Syst. Control Lett. 53 —
both *recalled*, not quoted). For a connected graph G = (V, E), n = |V|, edge weights w ∈ R^E,

    W(w) = I − Σ_{e=(i,j)∈E} w_e a_e a_eᵀ,   a_e = e_i − e_j,                      (1)

is symmetric with W1 = 1 for every w, supported on E plus self-loops, W_ii = 1 − Σ_{j~i} w_ij.

    minimise ζ(W) = ‖W − J‖₂ = max(λ₂(W), −λ_n(W))   over w ∈ C,                      (2)

* FMMC (``fastest_mixing``): C = {w ≥ 0, Σ_{j~i} w_ij ≤ 1} (W non-negative: a Markov chain);
* FDLA (``fastest_averaging``, symmetric case): C = R^E (entries may be negative);

intersected with the optional practitioner constraints (self-weight caps, edge caps, forced-zero
and fixed edges, a cost budget). As an SDP (derived): minimise s subject to

    −s I ⪯ Qᵀ W(w) Q ⪯ s I,   Q ∈ R^{n×(n−1)} orthonormal basis of 1⊥,               (3)

two linear matrix inequalities of size n − 1 with the edge weights and s as the only variables.

**Certificate** (derived here; weak duality). For any symmetric Y with nuclear norm ‖Y‖_* and any
feasible w, ζ(W(w)) = ‖W − J‖₂ ≥ ⟨Y, W − J⟩ / ‖Y‖_*, and ⟨Y, W(w)⟩ = ⟨Y, W₀⟩ − Σ_e w_e d_e(Y)
with d_e(Y) = Y_ii + Y_jj − 2Y_ij (W₀: the part of W fixed by the constraints). Hence

    ζ* ≥ ( ⟨Y, W₀ − J⟩ − max_{w∈C_ρ} Σ_e w_e d_e(Y) ) / ‖Y‖_*                        (4)

where C_ρ = C ∩ {w : ζ(W(w)) ≤ ρ}-implied box (ρ = ζ of any feasible W, so the optimum lies in
C_ρ): on 1⊥ the Laplacian L = I − W has spectrum in [1 − ρ, 1 + ρ], so
L_ii ∈ [(1−ρ)(1−1/n), (1+ρ)(1−1/n)] and |w_e| = |L_ij| ≤ (1+ρ)(1−1/n). The inner maximum is a
linear programme; we bound it from above by *any* non-negative LP multiplier vector y (the one
HiGHS returns, clipped at 0) together with the finite box, so (4) holds for every Y, however
inaccurate the solver that produced it — the bound is rigorous up to floating-point rounding
(~1e−13). Y comes from the SDP's dual (Y = Q(U − V)Qᵀ) or, for the first-order method, from a
small SDP over extreme eigenvectors. We report ``lower_bound`` and
``relative_gap = (ζ − lower_bound)/(1 − ζ)``.

Cost budgets: the number (or total cost) of *active* edges is non-convex; we use the standard
convex relaxation Σ_e c_e |w_e| ≤ B (an ℓ1 budget) and certify the relaxed problem exactly.

Modules (each imports only those above it):

* :mod:`~theory.design.problem` — :class:`DesignProblem` (edge variables, constraints,
  feasibility), :func:`design_problem`, :class:`DesignResult`, progress events;
* :mod:`~theory.design.certificate` — the lower bound (4) from any Y;
* :mod:`~theory.design.first_order` — extreme eigenpairs, the small subspace SDP, the proximal
  spectral bundle method, the certificate from eigenvectors of a given W;
* :mod:`~theory.design.sdp` — the SDP (3) with cvxpy (Clarabel/SCS);
* :mod:`~theory.design.symmetry` — edge orbits of automorphisms;
* :mod:`~theory.design.solve` — :func:`fastest_mixing`, :func:`fastest_averaging`,
  :func:`certify` (method choice);
* :mod:`~theory.design.compare` — :func:`compare_weights`; :mod:`~theory.design.schedule` —
  :func:`design_schedule`.
"""

from theory.design.compare import WeightRow, WeightTable, compare_weights
from theory.design.first_order import DENSE_MAX_N, Extremes, extreme_eigs, spectral_bundle
from theory.design.problem import (
    FEAS_TOL,
    DesignProblem,
    DesignResult,
    Progress,
    design_problem,
)
from theory.design.schedule import ScheduleDesign, design_schedule
from theory.design.sdp import CLARABEL_MAX_N
from theory.design.solve import METHODS, certify, fastest_averaging, fastest_mixing
from theory.design.symmetry import edge_orbits

__all__ = [
    "CLARABEL_MAX_N", "DENSE_MAX_N", "FEAS_TOL", "METHODS", "DesignProblem", "DesignResult",
    "Extremes", "Progress", "ScheduleDesign", "WeightRow", "WeightTable", "certify",
    "compare_weights", "design_problem", "design_schedule", "edge_orbits", "extreme_eigs",
    "fastest_averaging", "fastest_mixing", "spectral_bundle",
]
