"""Obligations for the closed-form spectra and ζ (theory.spectral, theory.mixing)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import sympy as sp

from proofs.core import checked, obligation, proved, require
from theory import mixing, spectral


@obligation(spectral.zeta_exact, spectral.spectrum_exact, mixing.ring)
def ring_zeta_closed_form() -> object:
    """Ring, weights 1/3: DFT eigenpairs λ_k = 1/3 + (2/3)cos(2πk/m); ζ = 1/3 + (2/3)cos(2π/m)."""
    m_, k, j = sp.symbols("m k j", integer=True, positive=True)
    w = sp.exp(2 * sp.pi * sp.I * k / m_)
    # (W x)_j = (x_{j-1} + x_j + x_{j+1})/3 for x_j = w^j  →  λ x_j with λ = (1 + w + 1/w)/3
    lam = (w ** (j - 1) + w**j + w ** (j + 1)) / 3 / w**j
    claim = sp.Rational(1, 3) + sp.Rational(2, 3) * sp.cos(2 * sp.pi * k / m_)
    require(sp.simplify(sp.expand_complex(lam - claim)) == 0, "ring DFT eigenvalue")
    n = 0
    for m in range(3, 25):
        z_code = float(spectral.zeta_exact("ring", m))
        z_num = spectral.zeta(mixing.ring(m))
        require(abs(z_code - z_num) < 1e-12, f"ring({m}): ζ closed form {z_code} vs {z_num}")
        spec = sorted(float(x) for x, c in spectral.spectrum_exact("ring", m) for _ in range(c))
        require(np.allclose(spec, np.sort(np.linalg.eigvalsh(np.asarray(mixing.ring(m)))),
                            atol=1e-12), f"ring({m}) spectrum")
        n += 1
    return proved(f"DFT eigenpairs proved for symbolic m, k; which λ_k attains ζ (and the full "
                  f"spectrum) checked against eigvalsh for m = 3..24 ({n} sizes)")


@obligation(spectral.zeta_exact, spectral.spectrum_exact, mixing.hypercube)
def hypercube_zeta_closed_form() -> object:
    """Hypercube with weights 1/(d+1): λ = 1 − 2k/(d+1) (mult. C(d,k)); ζ = (d−1)/(d+1)."""
    n = 0
    for d in range(1, 8):
        # Walsh characters χ_S(x) = (−1)^{|S∩x|}: W χ_S = (1 + Σ_i (−1)^{[i∈S]})/(d+1) χ_S
        walsh = sorted(sp.Rational(1 + d - 2 * s, d + 1) for s in range(d + 1)
                       for _ in range(int(sp.binomial(d, s))))
        code = sorted(x for x, c in spectral.spectrum_exact("hypercube", d) for _ in range(c))
        require(walsh == code, f"hypercube({d}) exact spectrum")
        num = np.sort(np.linalg.eigvalsh(np.asarray(mixing.hypercube(d))))
        require(np.allclose(num, [float(x) for x in walsh], atol=1e-12),
                f"hypercube({d}) numeric spectrum")
        require(spectral.zeta_exact("hypercube", d) == sp.Rational(d - 1, d + 1),
                f"hypercube({d}) ζ")
        require(abs(spectral.zeta(mixing.hypercube(d)) - (d - 1) / (d + 1)) < 1e-12,
                f"hypercube({d}) numeric ζ")
        n += 1
    return checked(n, "Walsh-character spectrum = spectrum_exact = eigvalsh, ζ = (d−1)/(d+1), "
                      "d = 1..7")


@obligation(spectral.spectrum_exact, spectral.zeta_exact, mixing.easgd_matrix)
def easgd_zeta_closed_form() -> object:
    """W_α: characteristic polynomial (λ−1)(λ−1+α)^{m−1}(λ−1+(m+1)α), symbolic in α."""
    a, lam = sp.symbols("alpha lambda")
    for m in range(1, 7):
        Wa = sp.zeros(m + 1, m + 1)
        for i in range(m):
            Wa[i, i] = 1 - a
            Wa[i, m] = Wa[m, i] = a
        Wa[m, m] = 1 - m * a
        cp = sp.factor(Wa.charpoly(lam).as_expr())
        code = spectral.spectrum_exact("easgd", m, alpha=a)
        expected = sp.Mul(*[(lam - x) ** c for x, c in code])
        require(sp.expand(cp - expected) == 0, f"W_α spectrum, m={m}: {cp}")
    rng = np.random.default_rng(1)
    n = 0
    for _ in range(30):
        m = int(rng.integers(1, 40))
        al = float(rng.uniform(0.01, 1.0))
        z = float(spectral.zeta_exact("easgd", m, alpha=al))
        require(abs(z - spectral.zeta(mixing.easgd_matrix(m, al))) < 1e-10,
                f"easgd ζ at m={m}, α={al}")
        n += 1
    return proved(f"characteristic polynomial of W_α symbolic in α for m = 1..6; ζ agrees "
                  f"numerically on {n} random (m, α)")


@obligation(spectral.zeta)
def zeta_is_operator_norm() -> object:
    """ζ(W) = ‖W − J‖₂ = max(|λ₂|, |λ_n|) on random graphs with Metropolis–Hastings weights."""
    rng = np.random.default_rng(2)
    n_ok = 0
    for i in range(25):
        n = int(rng.integers(3, 30))
        G = nx.erdos_renyi_graph(n, float(rng.uniform(0.2, 0.8)), seed=int(rng.integers(1e9)))
        if not nx.is_connected(G):
            continue
        W = mixing.metropolis_hastings(G)
        A = np.asarray(W)
        norm = np.linalg.norm(A - np.full_like(A, 1.0 / n), 2)
        lam = np.sort(np.linalg.eigvalsh(A))
        require(abs(spectral.zeta(W) - norm) < 1e-10, f"ζ vs ‖W − J‖₂ on graph {i}")
        require(abs(norm - max(abs(lam[0]), abs(lam[-2]))) < 1e-10, f"‖W − J‖₂ vs λ on {i}")
        n_ok += 1
    require(n_ok >= 10, "too few connected random graphs")
    return checked(n_ok, "ζ = ‖W − J‖₂ = max(|λ₂|, |λ_n|) (Erdős–Rényi, Metropolis–Hastings)")
