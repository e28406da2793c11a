"""The coopsgd command line: values against independent computations, exit codes, help text."""

import json

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

import theory
from empirics import cli
from empirics.cli import main
from theory.bounds import registry

BOUNDS = registry.names()  # every registered bound is reachable from the CLI

PASGD_ARGS = ["--eta", "0.01", "--L", "1", "--sigma2", "1", "--m", "16", "--tau", "4",
              "--K", "10000", "--F-gap", "10"]
PASGD_VALUES = dict(eta=0.01, L=1, sigma2=1, m=16, tau=4, K=10000, F_gap=10)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def invoke_json(*args: str, code: int = 0) -> dict:
    r = invoke(*args, "--json")
    assert r.exit_code == code, r.output
    return json.loads(r.stdout)


# --- existing commands -----------------------------------------------------------------------
def test_tour_prints_bounds_and_spectra():
    r = invoke("tour")
    assert r.exit_code == 0, r.output
    assert "0.949253" in r.output  # ζ(ring 16)
    assert "(zeta**2 + 1)/(1 - zeta**2)" in r.output
    assert "19.22" in r.output  # τ_eq for ring(16), JMLR eq. 30
    assert "(1/5, 4/5)" in r.output


def test_spectra_command():
    r = invoke("spectra", "--m", "16")
    assert r.exit_code == 0, r.output
    assert "hypercube" in r.output and "torus" in r.output


def test_proofs_command_exit_code():
    r = invoke("proofs", "--topic", "spectra")
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output
    r = invoke("proofs", "--only", "no-such-obligation")
    assert r.exit_code == 2


# --- help ------------------------------------------------------------------------------------
def test_top_level_help_lists_commands_examples_and_exit_codes():
    r = invoke("--help")
    assert r.exit_code == 0, r.output
    for cmd in ("tour", "spectra", "bound", "design", "proofs"):
        assert f"  {cmd} " in r.output
    assert "Examples:" in r.output and "coopsgd bound pasgd" in r.output
    assert "Exit codes:" in r.output
    for line in ("0  ok", "1  a check failed", "2  usage error", "3  a bound's condition fails"):
        assert line in r.output


@pytest.mark.parametrize("cmd", ["bound", "design", "proofs", "spectra"])
def test_command_help_has_examples(cmd):
    r = invoke(cmd, "--help")
    assert r.exit_code == 0, r.output
    assert "Examples:" in r.output and f"coopsgd {cmd}" in r.output
    if cmd != "spectra":
        assert "Exit codes:" in r.output


def test_bound_help_names_every_bound():
    r = invoke("bound", "--help")
    for name in BOUNDS:
        assert name in r.output.replace("-\n  ", "-")  # click may wrap at a hyphen


def test_proofs_help_shows_the_proofs_options():
    r = invoke("proofs", "--help")
    assert r.exit_code == 0, r.output
    assert "--topic" in r.output and "1 if any fails" in r.output


# --- bound: values ---------------------------------------------------------------------------
def test_bound_pasgd_value_terms_and_source():
    expected = theory.pasgd_bound().evaluate(**PASGD_VALUES)
    terms = theory.pasgd_bound().evaluate_terms(**PASGD_VALUES)
    r = invoke("bound", "pasgd", *PASGD_ARGS)
    assert r.exit_code == 0, r.output
    assert f"value: {expected!r}" in r.output
    assert "learning-rate condition of Corollary 2 (JMLR)" in r.output and "HOLDS" in r.output
    assert "status: quoted" in r.output and "Corollary 2, eq. 24" in r.output
    assert "Wang & Joshi" in r.output and "JMLR 22(213)" in r.output and "digest" not in r.output
    out = invoke_json("bound", "pasgd", *PASGD_ARGS)
    assert out["value"] == pytest.approx(expected, rel=1e-14)
    assert out["valid"] is True and out["exit_code"] == 0 and out["missing"] == []
    assert set(out["terms"]) == set(terms)
    for k, t in out["terms"].items():
        assert t["value"] == pytest.approx(terms[k], rel=1e-14)
    assert out["source"]["status"] == "quoted" and "digest" not in out["source"]
    assert out["source"]["where"] == theory.pasgd_bound().source.where
    assert out["conditions"][0]["status"] == "holds"
    # ηL + η²L²τ(τ−1) at η = 0.01, L = 1, τ = 4
    assert out["conditions"][0]["lhs"] == pytest.approx(0.01 + 1e-4 * 12)


def test_bound_accepts_name_and_parameter_spellings():
    expected = theory.pasgd_bound().evaluate(**PASGD_VALUES)
    args = ["--eta=1/100", "--l", "1", "--sigma2", "1", "--m", "16", "--tau", "4.0",
            "--K", "1e4", "--F_gap", "10"]
    for name in ("pasgd", "PASGD_bound", "local-sgd"):
        out = invoke_json("bound", name, *args)
        assert out["bound"] == "pasgd"
        assert out["value"] == pytest.approx(expected, rel=1e-12)


def test_bound_topology_computes_zeta():
    z = theory.zeta(theory.ring(16))
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, K=10_000, F_gap=10)
    out = invoke_json("bound", "dpsgd", "--topology", "ring", "--m", "16", "--eta", "0.01",
                      "--L", "1", "--sigma2", "1", "--K", "10000", "--F-gap", "10")
    assert out["derived"]["zeta"]["value"] == pytest.approx(z, abs=1e-12)
    assert out["value"] == pytest.approx(theory.dpsgd_bound().evaluate(zeta=z, **vals),
                                         rel=1e-12)
    # the same ζ through --zeta-of, and an explicit --zeta
    out2 = invoke_json("bound", "dpsgd", "--zeta-of", "ring:16", "--m", "16", "--eta", "0.01",
                       "--L", "1", "--sigma2", "1", "--K", "10000", "--F-gap", "10")
    assert out2["value"] == pytest.approx(out["value"], rel=1e-12)


def test_bound_topology_fills_in_the_auxiliary_variables():
    """Theorem 1's v: a W on n nodes with --m workers has v = n − m auxiliary variables."""
    args = ("--eta", "0.01", "--L", "1", "--sigma2", "1", "--tau", "4", "--K", "1000",
            "--F-gap", "1")
    out = invoke_json("bound", "cooperative", "--topology", "ring", "--m", "8", *args)
    assert out["derived"]["v"]["value"] == 0 and out["missing"] == []
    z = theory.zeta(theory.ring(8))
    expected = theory.cooperative_bound().evaluate(zeta=z, m=8, v=0, eta=0.01, L=1, sigma2=1,
                                                   tau=4, K=1000, F_gap=1)
    assert out["value"] == pytest.approx(expected, rel=1e-12)
    out = invoke_json("bound", "cooperative", "--zeta-of", "ring:9", "--m", "8", *args)
    assert out["derived"]["v"]["value"] == 1
    r = invoke("bound", "cooperative", "--zeta-of", "ring:9", "--m", "8", "--v", "2", *args)
    assert r.exit_code != 0 and "W has 9 nodes but --m 8 + --v 2" in r.output


@pytest.mark.parametrize(("spec", "rule", "W"), [
    ("torus:4x4", "default", lambda: theory.torus(4, 4)),
    ("torus:16", "default", lambda: theory.torus(4, 4)),
    ("path:10", "default", lambda: theory.path(10)),
    ("hypercube:8", "default", lambda: theory.hypercube(3)),
    ("ring:12:max_degree", "default", lambda: theory.ring(12, "max_degree")),
    ("star:6", "best_constant", lambda: theory.star(6, "best_constant")),
])
def test_bound_zeta_of_specs(spec, rule, W):
    out = invoke_json("bound", "decentralized-periodic", "--zeta-of", spec, "--rule", rule)
    assert out["derived"]["zeta"]["value"] == pytest.approx(theory.zeta(W()), abs=1e-12)
    assert out["parameters"]["zeta"] == pytest.approx(theory.zeta(W()), abs=1e-12)


def test_bound_partial_lists_missing_and_exits_0():
    r = invoke("bound", "pasgd", "--eta", "0.01", "--tau", "4")
    assert r.exit_code == 0, r.output
    assert "missing: F_gap, K, L, m, sigma2" in r.output
    assert "partial:" in r.output and "UNDECIDED (needs L)" in r.output
    out = invoke_json("bound", "pasgd", "--eta", "0.01", "--tau", "4")
    assert out["value"] is None and out["valid"] is False
    expected_missing = {"F_gap", "K", "L", "m", "sigma2"}
    assert set(out["missing"]) == expected_missing
    assert out["conditions"][0] == {**out["conditions"][0], "status": "undecided",
                                    "missing": ["L"]}
    # the partial expression is the bound with η and τ substituted
    b = theory.pasgd_bound()
    expr = b.expr.subs({theory.symbol("eta"): 0.01, theory.symbol("tau"): 4})
    assert out["partial"] == sp.sstr(expr)
    # no parameters at all: the symbolic bound, every parameter missing
    out = invoke_json("bound", "cooperative")
    assert set(out["missing"]) == {"eta", "L", "sigma2", "m", "v", "tau", "zeta", "K", "F_gap"}
    assert out["expr"] == sp.sstr(theory.cooperative_bound().expr)
    (c,) = out["conditions"]  # Theorem 1's learning-rate condition, undecided without values
    assert "eq. 145" in c["name"] and c["status"] == "undecided"
    assert set(c["missing"]) == {"eta", "L", "m", "v", "tau", "zeta"}


def test_bound_pl_memory_runtime_values():
    pl = dict(p=4, T=1000, tau=10, mu=0.1, L=1, sigma2=1, B=1, F_gap=1, alpha_pl=1)
    out = invoke_json("bound", "pl", *[f"--{k}={v}" for k, v in pl.items()])
    assert out["value"] == pytest.approx(theory.pl_bound().evaluate(**pl), rel=1e-12)
    out = invoke_json("bound", "memory", "--delta", "0.1", "--eta", "0.1", "--G2", "1")
    assert out["value"] == pytest.approx(
        theory.memory_bound().evaluate(delta=0.1, eta=0.1, G2=1), rel=1e-12)
    out = invoke_json("bound", "memory-unbiased", "--omega", "2", "--eta", "0.1", "--G2", "1")
    assert out["value"] == pytest.approx(2 * 2 * 5 * 0.01, rel=1e-12)  # 2ω(2ω+1)η²G²
    rt = dict(eta=0.01, L=1, sigma2=1, m=16, T_wall=1000, Y=0.1, D=1, F_gap=10, tau=5)
    out = invoke_json("bound", "runtime", *[f"--{k}={v}" for k, v in rt.items()])
    assert out["value"] == pytest.approx(theory.runtime_bound().evaluate(**rt), rel=1e-12)
    out = invoke_json("bound", "easgd-optimal", "--m", "8", "--tau", "4", "--eta", "0.01",
                      "--L", "1", "--sigma2", "1", "--K", "10000", "--F-gap", "10")
    assert out["value"] == pytest.approx(theory.easgd_bound("optimal").evaluate(
        m=8, tau=4, eta=0.01, L=1, sigma2=1, K=10000, F_gap=10), rel=1e-12)


def test_bound_minimize_matches_theory():
    vals = dict(eta=0.01, L=1, sigma2=1, m=16, T_wall=1000, Y=0.1, D=1, F_gap=10)
    opt = theory.runtime_bound().minimize("tau", **vals)
    out = invoke_json("bound", "runtime", *[f"--{k}={v}" for k, v in vals.items()],
                      "--minimize", "tau")
    assert out["minimum"]["argmin"] == opt.argmin
    assert out["minimum"]["value"] == pytest.approx(opt.value, rel=1e-12)
    r = invoke("bound", "runtime", "--minimize", "tau")  # closed form τ*
    assert r.exit_code == 0, r.output
    assert "sqrt(D)" in r.output and "closed-form" in r.output


def test_bound_list():
    r = invoke("bound", "--list")
    assert r.exit_code == 0, r.output
    for name in BOUNDS:
        assert name in r.output
    rows = invoke_json("bound", "--list")
    params = {row["name"]: set(row["parameters"]) for row in rows}
    assert params["pasgd"] == {"eta", "L", "sigma2", "m", "tau", "K", "F_gap"}
    assert "alpha" in params["easgd"] and "zeta" in params["dpsgd"]


def test_bound_new_jmlr_bounds_match_theory():
    cases = {
        "cooperative-noniid": (theory.cooperative_noniid_bound(),
                               dict(eta=0.004, L=2, sigma2=0.3, m=8, v=0, tau=4, zeta=0.5,
                                    K=2000, F_gap=1.5, kappa2=0.8)),
        "lemma2": (theory.lemma2_bound(), dict(eta=0.02, L=3, sigma2=0.7, m=8, v=1, K=500,
                                               F_gap=2, consensus_avg=0.013)),
        "easgd-paper": (theory.easgd_paper_bound(), dict(eta=1e-4, L=1, sigma2=2, m=8, tau=6,
                                                         K=1e5, F_gap=3)),
        "corollary1": (theory.corollary1_bound(), dict(L=2, F_gap=3, sigma2=0.5, m=8, K=1e6,
                                                       v=1, tau=4, zeta=0.5)),
        "cooperative-relaxed": (theory.cooperative_bound("relaxed"),
                                dict(eta=0.001, L=1, sigma2=1, m=16, v=0, tau=4, zeta=0.5,
                                     K=1e4, F_gap=1)),
    }
    for name, (b, vals) in cases.items():
        out = invoke_json("bound", name, *[f"--{k.replace('_', '-')}={v}" for k, v in
                                           vals.items()])
        assert out["value"] == pytest.approx(b.evaluate(**vals), rel=1e-12), name
        assert out["source"]["where"] == b.source.where and out["source"]["status"] == "quoted"
    out = invoke_json("bound", "cooperative-beta", "--eta", "0.001", "--L", "1", "--m", "16",
                      "--v", "0", "--tau", "4", "--zeta", "0.5", "--beta", "3")
    assert "eq. 143" in out["conditions"][0]["name"]
    assert out["conditions"][0]["status"] == "holds"


# --- bound: exit codes -----------------------------------------------------------------------
def test_bound_cooperative_outside_eq145_exits_3_with_the_largest_eta():
    """The issue's example: ηL = 0.05 on ring(16) (ζ = 0.9493) at τ = 1 is outside eq. 145."""
    args = ["bound", "cooperative", "--eta", "0.05", "--L", "1", "--m", "16", "--v", "0",
            "--tau", "1", "--zeta", "0.9493"]
    e = float(theory.largest_eta(1, 16, 1, 0.9493))
    assert round(e, 4) == 0.0357
    r = invoke(*args)
    assert r.exit_code == 3, r.output
    assert "eq. 145" in r.stderr and f"largest admissible η = {e:.6g}" in r.stderr
    assert "FAILS" in r.output and f"largest admissible η = {e:.6g}" in r.output
    out = invoke_json(*args, code=3)
    (c,) = out["conditions"]
    assert "eq. 145" in c["name"] and c["status"] == "fails"
    assert c["largest_eta"] == pytest.approx(e, rel=1e-12)
    assert c["source"]["where"] == "Appendix D, eq. 145 (JMLR)"
    # D-PSGD on the same ring: Corollary 3's condition, the same η
    out = invoke_json("bound", "dpsgd", "--topology", "ring", "--m", "16", "--eta", "0.061",
                      "--L", "1", code=3)
    assert "Corollary 3" in out["conditions"][0]["name"]
    assert out["conditions"][0]["largest_eta"] == pytest.approx(
        float(theory.dpsgd_bound().largest_eta(L=1, zeta=theory.ring(16))), rel=1e-12)



def test_bound_failed_condition_exits_3():
    assert theory.pasgd_bound().check(eta=0.5, L=1, tau=8)  # independently: the condition fails
    r = invoke("bound", "pasgd", "--eta", "0.5", "--L", "1", "--tau", "8")
    assert r.exit_code == 3, r.output
    assert "FAILS" in r.output
    assert "condition fails: learning-rate condition of Corollary 2" in r.stderr
    # the largest η with ηL + η²L²τ(τ−1) ≤ 1 at L = 1, τ = 8: 2/(1 + √(1 + 4·56))
    assert f"largest admissible η = {2 / (1 + np.sqrt(225)):.6g}" in r.stderr
    out = invoke_json("bound", "pasgd", "--eta", "0.5", "--L", "1", "--tau", "8", code=3)
    assert out["exit_code"] == 3 and out["conditions"][0]["status"] == "fails"
    assert out["conditions"][0]["lhs"] == pytest.approx(0.5 + 0.25 * 56)
    # with every value given the value is still printed, flagged as not valid
    vals = {**PASGD_VALUES, "eta": 0.5, "tau": 8}
    out = invoke_json("bound", "pasgd", *[f"--{k}={v}" for k, v in vals.items()], code=3)
    assert out["valid"] is False
    with pytest.warns(UserWarning):
        assert out["value"] == pytest.approx(theory.pasgd_bound().evaluate(**vals, check=False))
    # EASGD with α outside (0, 2/(m+1))
    r = invoke("bound", "easgd", "--m", "8", "--alpha", "0.3")
    assert r.exit_code == 3 and "ζ(W_α) < 1" in r.output


@pytest.mark.parametrize(("args", "needles"), [
    (["pasd"], ["unknown bound 'pasd'", "did you mean 'pasgd'?", "valid bounds:", "dpsgd"]),
    ([], ["missing bound NAME", "pasgd"]),
    (["pasgd", "--foo", "3"], ["unknown parameter --foo", "--eta", "--F-gap", "--tau"]),
    (["pasgd", "--zeta", "0.3"], ["does not depend on zeta", "--eta"]),
    (["pasgd", "--eta"], ["--eta needs a value"]),
    (["pasgd", "0.01"], ["unexpected argument '0.01'"]),
    (["pasgd", "--eta", "abc"], ["'abc' is not a number"]),
    (["pasgd", "--eta", "0.1", "--eta", "0.2"], ["given twice"]),
    (["pasgd", "--tau", "4.5"], ["tau must be an integer"]),
    (["pasgd", "--eta", "-1"], ["eta must be a real number > 0"]),
    (["dpsgd", "--zeta", "1"], ["zeta must be", "disconnected"]),
    (["pasgd", "--topology", "ring", "--m", "8"], ["has no ζ"]),
    (["dpsgd", "--topology", "ring"], ["needs the number of workers --m"]),
    (["dpsgd", "--topology", "hypercube", "--m", "12"], ["power of 2"]),
    (["dpsgd", "--zeta-of", "geometric:16"], ["--save W.npy"]),
    (["dpsgd", "--zeta-of", "torus:12"], ["not a square"]),
    (["dpsgd", "--zeta", "0.5", "--zeta-of", "ring:8"], ["not both"]),
    (["runtime", "--tau", "4", "--minimize", "tau"], ["do not also give --tau"]),
])
def test_bound_usage_errors_exit_2(args, needles):
    r = invoke("bound", *args)
    assert r.exit_code == 2, r.output
    for s in needles:
        assert s in r.output, (s, r.output)


# --- design ----------------------------------------------------------------------------------
def test_design_command_prints_certified_table(tmp_path):
    # even cycle: FMMC optimum (1 + c)/(3 − c), c = cos(2π/8) (Boyd, Diaconis, Xiao 2004)
    c = np.cos(2 * np.pi / 8)
    opt = f"{(1 + c) / (3 - c):.6f}"
    assert opt == "0.744521"
    for args in (["ring", "--n", "8"], ["--graph", "ring", "--n", "8"], ["ring", "--m", "8"]):
        r = invoke("design", *args)
        assert r.exit_code == 0, r.output
        assert "ring: 8 nodes, 8 edges" in r.output
        assert opt in r.output and "certified" in r.output
    path = tmp_path / "W"  # no .npy suffix: written to exactly this name
    out = invoke_json("design", "ring", "--n", "8", "--save", str(path), "--save-kind", "fmmc")
    W = np.load(path)
    assert W.shape == (8, 8) and np.allclose(W, W.T) and np.allclose(W.sum(1), 1)
    assert (W >= -1e-9).all()  # FMMC: non-negative weights
    assert theory.zeta(W) == pytest.approx((1 + c) / (3 - c), abs=1e-5)
    assert out["saved"]["zeta"] == pytest.approx(theory.zeta(W), abs=1e-9)
    assert {row["rule"] for row in out["rows"]} >= {"metropolis_hastings", "fmmc", "fdla"}
    # the saved W feeds a bound
    b = invoke_json("bound", "dpsgd", "--zeta-of", str(path))
    assert b["parameters"]["zeta"] == pytest.approx(theory.zeta(W), abs=1e-12)


def test_design_hypercube_sizes():
    for args in (["hypercube", "--dim", "2"], ["hypercube", "--n", "4"]):
        r = invoke("design", *args)
        assert r.exit_code == 0, r.output
        assert "hypercube: 4 nodes, 4 edges" in r.output


def test_design_progress_only_on_a_terminal(monkeypatch):
    seen = []
    real = theory.compare_weights

    def spy(*a, **k):
        seen.append(k.get("progress"))
        return real(*a, **k)

    monkeypatch.setattr(theory, "compare_weights", spy)
    assert invoke("design", "ring", "--n", "6").exit_code == 0  # stderr is not a terminal here
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    assert invoke("design", "ring", "--n", "6", "--quiet").exit_code == 0
    r = invoke("design", "ring", "--n", "6")
    assert r.exit_code == 0 and "certificate" in r.stderr  # the status line
    assert seen == [False, False, True]


def test_design_random_topologies_from_the_table():
    out = invoke_json("design", "erdos-renyi", "--n", "12", "--p", "0.4", "--seed", "3")
    G = theory.erdos_renyi_graph(12, 0.4, seed=3)
    assert out["edges"] == G.number_of_edges() and out["topology"] == "erdos-renyi"


@pytest.mark.parametrize(("args", "needle"), [
    (["ring", "--graph", "path"], "disagree"),
    (["torus", "--n", "12"], "not a square"),
    (["hypercube", "--n", "12"], "power of 2"),
    (["ring", "--dim", "3"], "hypercube only"),
    (["ring", "--rows", "3"], "torus and grid only"),
    (["moebius"], "moebius"),
    (["ring", "--eps", "2"], "--eps"),
])
def test_design_usage_errors_exit_2(args, needle):
    r = invoke("design", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output


def test_verify_only_help_lists_every_reproduction():
    from empirics import cli
    from empirics.reproductions import REPRODUCTIONS

    assert cli._REPRO_NAMES == tuple(REPRODUCTIONS)
