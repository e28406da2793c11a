"""Memory-based distributed SGD, M-DSGD (Zhao, Gao, Li, arXiv:1905.12960) — identities and the
memory-norm bound.

Everything here is **derived** (this toolkit's reconstruction from the standard error-feedback
construction): the paper's notation, indexing and constants are not known; only its abstract (a
"transformation equation" relating M-DSGD to DSGD, with and without momentum) is verified.

M-DSGD, p workers k = 1..p, memory ``m_{0,k} = 0``, step sizes η_t::

    u_{t,k}   = m_{t,k} + η_t d_{t,k}          d = g (vanilla) or v_{t,k} = β v_{t−1,k} + g_{t,k}
    m_{t+1,k} = u_{t,k} − C(u_{t,k})            (error feedback: what was not sent)
    w_{t+1}   = w_t − (1/p) Σ_k C(u_{t,k})

Transformation equation: the virtual iterate ``w̃_t = w_t − (1/p) Σ_k m_{t,k}`` satisfies
``w̃_{t+1} = w̃_t − η_t (1/p) Σ_k d_{t,k}`` exactly, for *any* compressor outputs: DSGD (with
heavy-ball momentum on the averaged gradient, in the momentum variant) on the virtual sequence.
:func:`transformation_equation` builds both sides by symbolic unrolling with every ``C(u)`` an
arbitrary symbol.

The memory-norm bound :func:`memory_bound` is the standard error-feedback lemma (Stich, Cordonnier
& Jaggi 2018, "Sparsified SGD with memory"; Karimireddy et al. 2019, "Error feedback fixes
SignSGD"), re-derived here; it is *not* a statement of Zhao et al.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from theory import checks
from theory.bound import Bound, Source, Status
from theory.bounds.local_pl import G2
from theory.bounds.registry import register
from theory.symbols import delta, eta, omega

ZHAO = "Zhao, Gao, Li, On the Convergence of Memory-Based Distributed SGD (arXiv:1905.12960)"
EF_LITERATURE = ("Stich, Cordonnier, Jaggi 2018 (Sparsified SGD with memory); Karimireddy, "
                 "Rebjock, Stich, Jaggi 2019 (Error feedback fixes SignSGD)")

#: ρ > 0 of Young's inequality ‖a + b‖² ≤ (1+ρ)‖a‖² + (1+1/ρ)‖b‖²
rho = sp.Symbol("rho", positive=True)


@dataclass(frozen=True)
class TransformationEquation:
    """Both sides of the transformation equation for steps t = 0..n.

    ``virtual[t]`` is ``w̃_t = w_t − (1/p) Σ_k m_{t,k}`` computed from the M-DSGD recursion;
    ``dsgd[t]`` is the DSGD (momentum-DSGD) iterate with the same gradients and step sizes, started
    at ``w_0``. Entries are sympy matrices of shape (d, 1). ``compressed`` are the symbols used for
    the compressor outputs C(u_{t,k}).
    """

    p: int
    n: int
    d: int
    momentum: bool
    virtual: tuple[sp.Matrix, ...]
    dsgd: tuple[sp.Matrix, ...]
    memory: tuple[tuple[sp.Matrix, ...], ...]
    compressed: tuple[sp.Symbol, ...]

    def differences(self) -> list[sp.Matrix]:
        """``virtual[t] − dsgd[t]`` expanded; all zero iff the identity holds."""
        return [(a - b).applyfunc(sp.expand) for a, b in zip(self.virtual, self.dsgd, strict=True)]

    def holds(self) -> bool:
        """True iff every difference expands to exactly 0 (a symbolic proof for these p, n, d)."""
        return all(all(e == 0 for e in diff) for diff in self.differences())


def transformation_equation(p: int, n: int, *, d: int = 1, momentum: bool = False
                            ) -> TransformationEquation:
    """Unroll M-DSGD and DSGD symbolically for ``n`` steps with ``p`` workers in dimension ``d``.

    Gradients ``g_{t,k}`` (arbitrary: the identity does not use where they are evaluated), step
    sizes ``η_t``, momentum β and every compressor output ``C(u_{t,k})`` are independent symbols,
    so the identity is proved for every compressor (biased or not) and every gradient oracle.
    With ``momentum=True`` each worker keeps heavy-ball ``v_{t,k} = β v_{t−1,k} + g_{t,k}``
    (``v_{−1,k} = 0``) and DSGD is heavy-ball on the average gradient,
    ``v̄_t = β v̄_{t−1} + (1/p) Σ_k g_{t,k}``, ``w̃_{t+1} = w̃_t − η_t v̄_t`` [derived].
    """
    p, n, d = (checks.integer(name, val, lo=1) for name, val in (("p", p), ("n", n), ("d", d)))
    beta_m = sp.Symbol("beta_m")
    w0 = sp.Matrix(sp.symbols(f"w0_0:{d}"))
    g = [[sp.Matrix(sp.symbols(f"g_{t}_{k}_0:{d}")) for k in range(p)] for t in range(n)]
    c = [[sp.Matrix(sp.symbols(f"C_{t}_{k}_0:{d}")) for k in range(p)] for t in range(n)]
    etas = sp.symbols(f"eta_0:{n}")
    zero = sp.zeros(d, 1)

    # --- M-DSGD ---
    w = w0
    mem = [zero for _ in range(p)]
    vel = [zero for _ in range(p)]
    virtual = [w - sum(mem, zero) / p]
    memory = [tuple(mem)]
    for t in range(n):
        sent = []
        for k in range(p):
            vel[k] = beta_m * vel[k] + g[t][k] if momentum else g[t][k]
            u = mem[k] + etas[t] * vel[k]
            mem[k] = u - c[t][k]
            sent.append(c[t][k])
        w = w - sum(sent, zero) / p
        virtual.append(w - sum(mem, zero) / p)
        memory.append(tuple(mem))

    # --- DSGD (heavy ball on the average gradient) ---
    wt = w0
    vbar = zero
    dsgd = [wt]
    for t in range(n):
        gbar = sum(g[t], zero) / p
        vbar = beta_m * vbar + gbar if momentum else gbar
        wt = wt - etas[t] * vbar
        dsgd.append(wt)

    comp = tuple(s for row in c for mat in row for s in mat)
    return TransformationEquation(p, n, d, momentum, tuple(virtual), tuple(dsgd),
                                  tuple(memory), comp)


# --- compressor constants ------------------------------------------------------------------------
def delta_from_omega(omega_: sp.Expr = omega) -> sp.Expr:
    """Contraction of the rescaled unbiased compressor ``C/(1+ω)``: ``δ = 1/(1+ω)`` [derived].

    If ``E C(x) = x`` and ``E‖C(x) − x‖² ≤ ω‖x‖²`` then
    ``E‖x − C(x)/(1+ω)‖² = ‖x‖² − 2‖x‖²/(1+ω) + E‖C(x)‖²/(1+ω)² ≤ (1 − 1/(1+ω))‖x‖²``.
    """
    return 1 / (1 + sp.sympify(omega_))


def ef_step() -> tuple[sp.Expr, sp.Expr]:
    """One step of the error-feedback recursion [derived, EF literature]:
    ``E‖m_{t+1}‖² ≤ (1−δ)‖m_t + ηg_t‖² ≤ q E‖m_t‖² + r``, with Young's inequality
    ``q = (1−δ)(1+ρ)``, ``r = (1−δ)(1+1/ρ)η²G²`` (E‖g‖² ≤ G²). Returns ``(q, r)`` in ρ."""
    return (1 - delta) * (1 + rho), (1 - delta) * (1 + 1 / rho) * eta**2 * G2


#: Young's parameter used by :func:`memory_bound`: ρ = δ/(2(1−δ)) makes q = 1 − δ/2.
RHO_STAR = delta / (2 * (1 - delta))


def memory_bound(compressor: str = "contraction") -> Bound:
    """Bound on the memory ``sup_t E‖m_t‖²`` (each worker; hence also on
    ``E‖(1/p) Σ_k m_{t,k}‖²`` by Jensen) for constant η, bounded second moment ``E‖g‖² ≤ G²``.

    ``compressor="contraction"`` (``E‖u − C(u)‖² ≤ (1−δ)‖u‖²``, e.g. top-k with δ = k/d):
    ``2(1−δ)(2−δ) η²G²/δ²`` (≤ the familiar ``4(1−δ)η²G²/δ²``). It is the fixed point
    ``r/(1−q)`` of :func:`ef_step` at ``ρ = δ/(2(1−δ))``; with ``m_0 = 0`` induction gives the
    bound for every t. ``compressor="unbiased"`` (variance ω, used after rescaling by 1/(1+ω)):
    the same with ``δ = 1/(1+ω)``, i.e. ``2ω(2ω+1)η²G²``.

    Source: error-feedback memory lemma, re-derived (Young with ρ = δ/(2(1−δ))) — **derived**
    (EF literature: Stich et al. 2018, Karimireddy et al. 2019); Zhao et al.'s own constant is not
    known.
    """
    q, r = ef_step()
    fixed = sp.factor(sp.simplify((r / (1 - q)).subs(rho, RHO_STAR)))
    src = Source(EF_LITERATURE, "error-feedback memory lemma, re-derived (Young with ρ = "
                 "δ/(2(1−δ)))", Status.DERIVED, digest="2.3",
                 note="not a statement of Zhao et al. (their constant is not known)")
    if compressor == "contraction":
        return Bound("EF memory norm (δ-contraction)", fixed, src, {"memory": fixed},
                     lhs="sup_t E‖m_t‖²")
    if compressor == "unbiased":
        e = sp.factor(sp.simplify(fixed.subs(delta, delta_from_omega())))
        return Bound("EF memory norm (unbiased ω, rescaled by 1/(1+ω))", e, src, {"memory": e},
                     lhs="sup_t E‖m_t‖²", definitions={delta: delta_from_omega()})
    raise ValueError(f"compressor must be 'contraction' or 'unbiased'; got {compressor!r}")


__all__ = [
    "EF_LITERATURE", "RHO_STAR", "ZHAO", "TransformationEquation", "delta_from_omega", "ef_step",
    "memory_bound", "rho", "transformation_equation",
]


register("memory", memory_bound, "contraction", aliases=("ef",),
         description="error-feedback memory sup_t E‖m_t‖², δ-contraction compressor")
register("memory-unbiased", memory_bound, "unbiased",
         description="error-feedback memory sup_t E‖m_t‖², unbiased ω compressor")
