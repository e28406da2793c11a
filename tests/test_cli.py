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
