"""Every obligation of proofs/ passes, and a changed formula makes the right obligation fail."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from proofs import REGISTRY, ProofStatus, format_table, load_all, run_all
from proofs.__main__ import main

load_all()
NAMES = sorted(REGISTRY)


def test_registry_covers_the_issue_list():
    required = {
        "easgd_spectrum_and_alpha_star", "averaged_model_identity", "special_cases_reduce",
        "pasgd_dpsgd_crossover", "spiridonoff_sums_to_T", "haddadpour_tau_gives_cube_root_rounds",
        "mdsgd_transformation_vanilla", "mdsgd_transformation_momentum",
        "ring_zeta_closed_form", "hypercube_zeta_closed_form", "easgd_zeta_closed_form",
        "topk_contraction", "randomk_unbiased_variance", "geometric_series_network_term",
    }
    assert required <= set(REGISTRY)
    for o in REGISTRY.values():
        assert o.protects and all("." in p for p in o.protects), o.name


@pytest.mark.parametrize("name", NAMES)
def test_obligation_holds(name):
    (r,) = run_all(names=[name])
    assert r.status is not ProofStatus.FAILED, f"{name}: {r.detail}"
    if r.status is ProofStatus.CHECKED:
        assert r.instances and r.instances > 0


def test_changed_crossover_formula_fails(monkeypatch):
    import theory.bounds.cooperative as coop

    z = sp.Symbol("zeta", nonnegative=True)
    monkeypatch.setattr(coop, "pasgd_dpsgd_crossover", lambda zeta_=z: (1 + zeta_) / (1 - zeta_))
    (r,) = run_all(names=["pasgd_dpsgd_crossover"])
    assert r.status is ProofStatus.FAILED and "crossover" in r.detail


def test_changed_memory_bound_fails(monkeypatch):
    import theory.bounds.memory as mem
    from theory.bound import Bound, Source
    from theory.bounds.local_pl import G2
    from theory.symbols import delta, eta

    wrong = (1 - delta) * eta**2 * G2 / delta  # not the fixed point of the EF recursion
    monkeypatch.setattr(mem, "memory_bound", lambda compressor="contraction": Bound(
        "wrong", wrong, Source("x", "y", "derived")))
    (r,) = run_all(names=["ef_memory_fixed_point"])
    assert r.status is ProofStatus.FAILED and "fixed point" in r.detail


def test_changed_spiridonoff_schedule_fails(monkeypatch):
    import theory.schedule_library as lib

    orig = lib.spiridonoff_comm_times
    monkeypatch.setattr(lib, "spiridonoff_comm_times",
                        lambda T, R: [round(x) for x in [T * r * (r + 1) / (R * (R + 1))
                                                         for r in range(R + 1)]])
    (r,) = run_all(names=["spiridonoff_sums_to_T"])
    assert r.status is ProofStatus.FAILED
    assert orig(1000, 20)[:3] == [0, 4, 14]


def test_changed_transformation_fails(monkeypatch):
    import theory.bounds.memory as mem

    orig = mem.transformation_equation

    def broken(p, n, *, d=1, momentum=False):
        te = orig(p, n, d=d, momentum=momentum)
        # "forget" the memory correction: compare w_t itself with DSGD
        w = tuple(v + sum(ms, sp.zeros(d, 1)) / p for v, ms in zip(te.virtual, te.memory,
                                                                    strict=True))
        return mem.TransformationEquation(te.p, te.n, te.d, te.momentum, w, te.dsgd, te.memory,
                                          te.compressed)

    monkeypatch.setattr(mem, "transformation_equation", broken)
    (r,) = run_all(names=["mdsgd_transformation_vanilla"])
    assert r.status is ProofStatus.FAILED and "DSGD" in r.detail


def test_main_exit_codes(monkeypatch, capsys):
    assert main(["--only", "pasgd_dpsgd_crossover"]) == 0
    out = capsys.readouterr().out
    assert "pasgd_dpsgd_crossover" in out and "0 failed" in out
    assert main(["--only", "no_such_obligation"]) == 2
    assert "unknown obligation" in capsys.readouterr().err
    import theory.bounds.cooperative as coop

    monkeypatch.setattr(coop, "pasgd_dpsgd_crossover", lambda zeta_=None: sp.Integer(3))
    assert main(["--only", "pasgd_dpsgd_crossover"]) == 1
    assert "1 failed" in capsys.readouterr().out


def test_python_dash_m_proofs_runs():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run([sys.executable, "-m", "proofs", "--topic", "local_pl"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "local_pl.haddadpour_tau_gives_cube_root_rounds" in r.stdout


def test_format_table_counts():
    rs = run_all(topics=["memory"])
    txt = format_table(rs)
    assert f"{len(rs)} obligations" in txt and "0 failed" in txt


def test_unknown_topic_rejected():
    with pytest.raises(ValueError, match="unknown topic"):
        run_all(topics=["nope"])
