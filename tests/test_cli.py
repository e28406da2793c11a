"""The coopsgd command line."""

from click.testing import CliRunner

from empirics.cli import main


def test_tour_prints_bounds_and_spectra():
    r = CliRunner().invoke(main, ["tour"])
    assert r.exit_code == 0, r.output
    assert "0.949253" in r.output  # ζ(ring 16)
    assert "(zeta**2 + 1)/(1 - zeta**2)" in r.output
    assert "19.22" in r.output  # τ_eq for ring(16), digest §1.8
    assert "(1/5, 4/5)" in r.output


def test_spectra_command():
    r = CliRunner().invoke(main, ["spectra", "--m", "16"])
    assert r.exit_code == 0, r.output
    assert "hypercube" in r.output and "torus" in r.output


def test_design_command_prints_certified_table():
    r = CliRunner().invoke(main, ["design", "--graph", "ring", "--n", "8"])
    assert r.exit_code == 0, r.output
    # even cycle: FMMC optimum (1 + c)/(3 − c), c = cos(2π/8) (Boyd, Diaconis, Xiao 2004)
    assert "0.744521" in r.output and "certified" in r.output


def test_proofs_command_exit_code():
    r = CliRunner().invoke(main, ["proofs", "--topic", "spectra"])
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output
    r = CliRunner().invoke(main, ["proofs", "--only", "no-such-obligation"])
    assert r.exit_code == 2
