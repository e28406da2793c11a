"""The design problem as a semidefinite programme (cvxpy; Clarabel or SCS), eq. (3).

minimise s subject to −sI ⪯ W(w) − J ⪯ sI (``form="full"``, sparse coefficients) or
−sI ⪯ QᵀW(w)Q ⪯ sI with Q an orthonormal basis of 1⊥ (``form="projected"``, LMIs of size n − 1),
plus the linear constraints of the problem, with the edge weights (or their orbit values) and s as
the only variables. The duals of the two LMIs give the certificate's Y
(:func:`theory.design.certificate.lower_bound`). cvxpy is imported on first use.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sps

from theory import checks
from theory.design.certificate import lower_bound
from theory.design.first_order import eigenvector_bound
from theory.design.problem import DesignProblem, DesignResult, Progress, ProgressFn, make_result
from theory.spectral import zeta

#: above this many nodes Clarabel is refused (measured: 2.7 GB at n = 100, 6–13 GB at n = 200)
CLARABEL_MAX_N = 120
#: SDP forms (see the module doc)
FORMS = ("projected", "full")


def _basis(n: int) -> np.ndarray:
    """Orthonormal basis Q (n × (n−1)) of 1⊥: columns 1..n−1 of the Householder reflector that
    maps e_n to −1/√n (closed form, no SVD)."""
    s = math.sqrt(n)
    Q = np.zeros((n, n - 1))
    Q[: n - 1] = np.eye(n - 1) - 1.0 / (n + s)
    Q[n - 1] = -1.0 / s
    return Q


def _sdp(prob: DesignProblem, solver: str, *, form: str = "projected", eps: float | None = None,
         time_limit: float | None = None, verbose: bool = False
         ) -> tuple[np.ndarray | None, str, list, float]:
    """Solve (3) with cvxpy. Returns (w or None, status, dual parts for the certificate,
    seconds)."""
    import cvxpy as cp

    n, m = prob.n, prob.m
    if prob.orbits is not None:
        k = int(prob.orbits.max()) + 1
        v = cp.Variable(k)
        P = sps.csr_matrix((np.ones(m), (np.arange(m), prob.orbits)), shape=(m, k))
        w = P @ v
    else:
        v = w = cp.Variable(m)
    s = cp.Variable()
    Bs = sps.csr_matrix((np.concatenate([np.ones(m), -np.ones(m)]),
                         (np.concatenate([prob.edges[:, 0], prob.edges[:, 1]]),
                          np.concatenate([np.arange(m), np.arange(m)]))), shape=(n, m))
    W0 = prob.W0().toarray()
    if form == "projected":
        Q = _basis(n)
        C = Q.T @ Bs  # (n−1) × m dense
        M0 = Q.T @ W0 @ Q
        V = Q
    else:
        C = Bs
        M0 = W0 - 1.0 / n
        V = np.eye(n)
    M0 = (M0 + M0.T) / 2
    M = M0 - C @ cp.diag(w) @ C.T
    k = M0.shape[0]
    I = np.eye(k)
    lmi_hi = cp.Constant(I) * s - M >> 0
    lmi_lo = M + cp.Constant(I) * s >> 0
    cons = [lmi_hi, lmi_lo]
    A, b, lo, hi, nx_ = prob.lp_rows(None)
    if nx_ > m:
        t = cp.Variable(m)
        x = cp.hstack([w, t])
    else:
        x = w
    fl, fh = np.isfinite(lo), np.isfinite(hi)
    if fl.any():
        cons.append(x[np.flatnonzero(fl)] >= lo[fl])
    if fh.any():
        cons.append(x[np.flatnonzero(fh)] <= hi[fh])
    if A.shape[0]:
        cons.append(A @ x <= b)
    sdp = cp.Problem(cp.Minimize(s), cons)
    opts: dict[str, Any] = {}
    if solver == "SCS":
        opts = {"eps_abs": eps or 1e-7, "eps_rel": eps or 1e-7, "max_iters": 200_000}
        if time_limit:
            opts["time_limit_secs"] = float(time_limit)
    elif solver == "CLARABEL" and time_limit:
        opts = {"time_limit": float(time_limit)}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # the status is handled (retry with the other solver)
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            sdp.solve(solver=solver, verbose=verbose, **opts)
    except cp.error.SolverError as e:
        return None, f"solver_error: {e}", [], time.perf_counter() - t0
    dt = time.perf_counter() - t0
    status = str(sdp.status)
    if w.value is None:
        return None, status, [], dt
    parts = []
    if lmi_hi.dual_value is not None and lmi_lo.dual_value is not None:
        parts = [(V, np.asarray(lmi_hi.dual_value), 1.0), (V, np.asarray(lmi_lo.dual_value), -1.0)]
    return np.asarray(w.value, float).ravel(), status, parts, dt


def _pick_solver(n: int, solver: str | None) -> list[str]:
    if solver is not None:
        solver = checks.one_of("solver", str(solver).upper(), ["CLARABEL", "SCS"])
        if solver == "CLARABEL" and n > CLARABEL_MAX_N:
            raise ValueError(f"solver='CLARABEL' needs GBs of memory at n = {n} > "
                             f"{CLARABEL_MAX_N} (measured 2.7 GB at n = 100, 6–13 GB at n = 200): "
                             "use 'SCS' or method='first_order'")
        other = "SCS" if solver == "CLARABEL" else "CLARABEL"
        return [solver] + ([other] if other == "SCS" or n <= CLARABEL_MAX_N else [])
    return ["CLARABEL", "SCS"] if n <= 60 else ["SCS"] + (["CLARABEL"] if n <= CLARABEL_MAX_N
                                                           else [])


def solve_sdp(prob: DesignProblem, solver: str | None, method: str, t0: float, *,
              form: str = "projected", time_limit: float | None = None, verbose: bool = False,
              progress: ProgressFn | None = None) -> DesignResult:
    """Solve ``prob`` as an SDP (Clarabel/SCS by size, the other on failure), certify the answer
    (the LMI duals; the extreme-eigenvector bound for orbit-reduced or loose duals) and return
    the :class:`~theory.design.problem.DesignResult` (``t0``: start time of the whole design)."""
    form = checks.one_of("form", form, FORMS)
    tried = []
    best = None

    def report(phase: str, message: str, **kw: Any) -> None:
        if progress is not None:
            progress(Progress(phase, message, elapsed=time.perf_counter() - t0, **kw))

    for sv in _pick_solver(prob.n, solver):
        nvar = prob.m if prob.orbits is None else int(prob.orbits.max()) + 1
        report("sdp", f"solving the SDP with {sv} (n = {prob.n}, {nvar} weight variables)")
        w, status, parts, _dt = _sdp(prob, sv, form=form, time_limit=time_limit,
                                     verbose=verbose)
        tried.append(f"{sv}: {status}")
        if w is None or status not in ("optimal", "optimal_inaccurate"):
            continue
        try:
            w = prob.repair(w)
        except RuntimeError as e:
            tried[-1] += f" ({e})"
            continue
        rho = zeta(prob.W(w))
        report("certificate", f"{sv}: {status}, ζ = {rho:.8f}; computing the certificate",
               zeta=rho)
        lb = lower_bound(prob, parts, rho) if parts else -math.inf
        if prob.orbits is not None or lb < rho - 1e-6 * (1 - rho):
            lb = max(lb, eigenvector_bound(prob, w, rho))
        if best is None or rho < best[4] - 1e-12:
            best = (w, lb, sv, status, rho)
        if status == "optimal":
            break
    if best is None:
        raise RuntimeError("the SDP solve failed with every solver (" + "; ".join(tried) + ")")
    w, lb, sv, status, _rho = best
    return make_result(prob, w, lb, method=method, solver=sv, status=status, t0=t0,
                       info={"attempts": tried, "form": form})


__all__ = ["CLARABEL_MAX_N", "FORMS", "solve_sdp"]
