"""Bad input is refused clearly (the exception type and the argument in the message, or exit
code 2 and no traceback from the CLI); divergence is caught and named; nothing is written where
it should not be."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

from empirics.experiment import ExperimentSpec, run_experiment, sweep, sweep2
from empirics.records import RunCache
from empirics.spec import RunSpec

LOGREG = {"kind": "logistic_regression", "n_samples": 200, "d": 5, "l2": 0.01,
          "sampling": "shared"}


def _spec(**kw):
    base = dict(name="t", problem=LOGREG, algorithm={"name": "pasgd", "m": 4, "tau": 2},
                lr=0.1, steps=20, seeds=3, record_every=5)
    base.update(kw)
    return ExperimentSpec(**base)


# --- the spec vocabulary ---------------------------------------------------------------------
@pytest.mark.parametrize("algorithm, needle", [
    ({"name": "pasgd", "m": 4}, r"'pasgd' needs 'tau'"),
    ({"name": "pasgd", "m": 4, "tua": 2}, r"'pasgd' needs 'tau' \('tua' is given: a "
                                          r"misspelling of 'tau'\?\)"),
    ({"name": "pasgd", "m": 4, "tau": 2, "zeta": 1}, r"unknown key 'zeta' for 'pasgd'"),
    ({"name": "pasgdd", "m": 4, "tau": 2}, r"algorithm.name must be one of .* did you mean "
                                           r"'pasgd'\?"),
    ({"name": "pasgd", "tau": 2}, r"algorithm.m must be an integer >= 1 \(got None\)"),
    ({"name": "local_sgd", "m": 4, "schedule": {"kind": "periodic"}},
     r"algorithm.schedule: schedule 'periodic' needs 'tau'"),
    ({"name": "easgd", "m": 4, "tau": 2}, r"'easgd' needs 'alpha'"),
])
def test_algorithm_keys_named(algorithm, needle):
    with pytest.raises(ValueError, match=needle):
        _spec(algorithm=algorithm)


@pytest.mark.parametrize("kw, needle", [
    ({"problem": {"kind": "logistic_regresion"}}, r"did you mean 'logistic_regression'"),
    ({"problem": {**LOGREG, "n_sample": 10}}, r"unknown key 'n_sample' .*did you mean "
                                              r"'n_samples'"),
    ({"lr": {"kind": "stagewise", "etas": [0.1]}}, r"lr 'stagewise' needs 'boundaries'"),
    ({"lr": {"kind": "cosine"}}, r"lr must be a number > 0 or a table with kind one of"),
    ({"lr": 0.0}, r"lr must be a finite number > 0 \(got 0.0\)"),
    ({"grad_every": 0}, r"grad_every = 0 turns off the running average"),
    ({"grad_every": -1}, r"grad_every must be an integer >= 0 \(got -1\)"),
    ({"record_every": 0}, r"record_every must be an integer >= 1"),
    ({"seeds": 0}, r"seeds must be >= 1"),
    ({"device": "nonsense"}, r"device must be 'cpu', 'cuda' or 'cuda:N' \(got 'nonsense'\)"),
    ({"name": "../../x"}, r"name must be letters, digits"),
    ({"name": "a/b"}, r"name must be .* path separator"),
    ({"dtype": "float16"}, r"dtype must be 'float32' or 'float64'"),
])
def test_spec_fields_named(kw, needle):
    with pytest.raises(ValueError, match=needle):
        _spec(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_cuda_names_the_device():
    with pytest.raises(ValueError, match=r"device 'cuda': CUDA is not available to this torch"):
        _spec(device="cuda")


def test_from_dict_names_missing_and_misspelled_fields():
    d = _spec().to_dict()
    d["step"] = d.pop("steps")
    with pytest.raises(ValueError, match=r"missing the field 'steps' \('step' is given"):
        ExperimentSpec.from_dict(d)
    with pytest.raises(ValueError, match=r"unknown experiment field\(s\) \['seed'\]; did you "
                                         r"mean 'seeds'\?"):
        ExperimentSpec.from_dict({**_spec().to_dict(), "seed": 1})
    with pytest.raises(ValueError, match=r"a table of fields .* got list"):
        ExperimentSpec.from_dict([1, 2])


def test_malformed_files_name_line_and_column(tmp_path):
    t = tmp_path / "bad.toml"
    t.write_text('name = "x"\nlr = \n')
    with pytest.raises(ValueError, match=r"bad.toml: malformed TOML: .*line 2, column 6"):
        ExperimentSpec.load(t)
    y = tmp_path / "bad.yaml"
    y.write_text("name: x\nproblem: {kind: [\n")
    with pytest.raises(ValueError, match=r"bad.yaml: malformed YAML at line 3, column 1"):
        ExperimentSpec.load(y)
    j = tmp_path / "bad.json"
    j.write_text('{"name": "x",\n "lr": }')
    with pytest.raises(ValueError, match=r"bad.json: malformed JSON at line 2, column 8"):
        ExperimentSpec.load(j)


def test_replace_refuses_a_misspelled_nested_key():
    s = _spec()
    with pytest.raises(ValueError, match=r"unknown key 'tua' for 'pasgd'; did you mean 'tau'\? "
                                         r"\(valid: \['compressor', 'momentum', 'nesterov', "
                                         r"'tau'\]\)"):
        s.replace("algorithm.tua", 4)
    with pytest.raises(ValueError, match=r"'algoritm' is not a section of the spec \(sections: "
                                         r"\['algorithm', 'bound_values', 'problem'\]\)"):
        s.replace("algoritm.tau", 4)
    assert s.replace("algorithm.tau", 4).algorithm["tau"] == 4


def test_sweeps_refuse_empty_values():
    with pytest.raises(ValueError, match=r"sweep over 'lr' needs at least one value"):
        sweep(_spec(), "lr", [])
    with pytest.raises(ValueError, match=r"sweep2 over 'algorithm.tau' needs at least one"):
        sweep2(_spec(), "lr", [0.1], "algorithm.tau", [])


def test_tau_beyond_the_horizon_warns():
    with pytest.warns(UserWarning, match=r"algorithm.tau = 50 > steps = 20: .*no averaging "
                                         r"inside the horizon"):
        _spec(algorithm={"name": "pasgd", "m": 4, "tau": 50})


def test_run_spec_counters_and_divergence_factor_named():
    from empirics.configs import pasgd
    from empirics.problems import LogisticRegression

    p = LogisticRegression(n_samples=50, d=3, m=2, seed=0)
    for field_, bad in (("record_every", 0), ("batch_size", 0), ("grad_every", -2),
                        ("T", 0), ("seed", -1)):
        kw = {"T": 5, field_: bad} if field_ != "T" else {"T": bad}
        with pytest.raises(ValueError, match=rf"{field_} must be an integer >= "):
            RunSpec(p, pasgd(2, 1), 0.1, **kw)
    with pytest.raises(ValueError, match=r"divergence must be a number > 1"):
        RunSpec(p, pasgd(2, 1), 0.1, 5, divergence=0.5)


# --- verdicts that cannot be given ------------------------------------------------------------
def test_one_seed_is_untested_with_the_measurement_shown():
    r = run_experiment(_spec(seeds=1), progress=False)
    assert r.verdict.status == "untested"
    assert "1 seed, so no test: the single measurement" in r.verdict.message
    assert f"{r.per_seed[0, -1]:.4g}" in r.verdict.message or "at step" in r.verdict.message


def test_divergence_is_named_kept_and_not_a_verdict():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning reaches the user
        r = run_experiment(_spec(lr=1e6, steps=50), progress=False)
    assert r.verdict.status == "diverged"
    assert "3 of 3 seeds diverged" in r.verdict.message
    assert "seed 0: run diverged at step" in r.verdict.message
    assert "exceeds the divergence limit" in r.verdict.message
    assert all(run.status == "diverged" and len(run.step) >= 1 for run in r.runs)


def test_corrupted_cache_entry_is_recomputed_with_a_warning(tmp_path):
    cache = RunCache(tmp_path / "c")
    s = _spec(seeds=2)
    first = run_experiment(s, cache=cache, progress=False)
    victim = sorted((tmp_path / "c").glob("*.json"))[0]
    victim.write_text('{"key": "trunc')
    with pytest.warns(UserWarning, match=rf"cache entry {victim} is unreadable .*recomputing"):
        again = run_experiment(s, cache=cache, progress=False)
    assert again.final["measured"] == first.final["measured"]
    json.loads(victim.read_text())  # rewritten whole


# --- the CLI: exit 2, one line, no traceback --------------------------------------------------
def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "empirics.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("content, suffix, extra, needle", [
    ('name = "x"\nlr = 0.1\nsteps = 20\n[problem]\nkind = "logistic_regression"\n'
     '[algorithm]\nname = "pasgd"\nm = 4\ntua = 2\n', "toml", [],
     "'pasgd' needs 'tau' ('tua' is given"),
    ("name: x\nproblem: {kind: [\n", "yaml", [], "malformed YAML at line 3, column 1"),
    ('name = "x"\nlr = 0.1\nsteps = 20\n[problem]\nkind = "logistic_regression"\n'
     '[algorithm]\nname = "pasgd"\nm = 4\ntau = 2\n', "toml", ["--device", "nonsense"],
     "device must be 'cpu', 'cuda' or 'cuda:N' (got 'nonsense')"),
    ('name = "x"\nlr = 0.1\nsteps = 20\n[problem]\nkind = "logistic_regression"\n'
     '[algorithm]\nname = "pasgd"\nm = 4\ntau = 2\n', "toml", ["--out", "spec.toml/sub"],
     "cannot write to the output folder spec.toml/sub"),
    ('name = "../../x"\nlr = 0.1\nsteps = 20\n[problem]\nkind = "logistic_regression"\n'
     '[algorithm]\nname = "pasgd"\nm = 4\ntau = 2\n', "toml", [], "name must be letters"),
])
def test_cli_run_usage_errors_exit_2_without_traceback(tmp_path, content, suffix, extra,
                                                        needle):
    (tmp_path / f"spec.{suffix}").write_text(content)
    p = _cli("run", f"spec.{suffix}", "--quiet", *extra, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("args, needle", [
    (["verify", "--device", "nonsense"], "device must be"),
    (["verify", "--out", "f.txt/rep"], "cannot write to the output folder f.txt/rep"),
    (["verify", "--only", "nope"], "unknown reproduction 'nope'"),
    (["run", "missing.toml"], "missing.toml"),
])
def test_cli_other_usage_errors(tmp_path, args, needle):
    (tmp_path / "f.txt").write_text("a file in the way")
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and needle in p.stderr, p.stderr


@pytest.mark.parametrize("args, needle", [
    (["bound", "pasgd", "--eta", "1/0", "--L", "1"], "--eta: '1/0' divides by zero"),
    (["bound", "pasgd", "--eta", "inf", "--L", "1"], "--eta: 'inf' is not a finite number"),
    (["bound", "pasgd", "--eta", "nan"], "--eta: 'nan' is not a finite number"),
    (["bound", "dpsgd", "--topology", "ring", "--m", "1"], "m must be an integer >= 2"),
    (["spectra", "--m", "0"], "0 is not in the range x>=2"),
    (["design", "ring", "--n", "8", "--save", "f.txt/W.npy"],
     "cannot write to the output folder"),
])
def test_cli_bad_values_exit_2_without_traceback(tmp_path, args, needle):
    (tmp_path / "f.txt").write_text("a file in the way")
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and needle in p.stderr, p.stderr


def test_design_save_creates_a_missing_folder(tmp_path):
    p = _cli("design", "ring", "--n", "6", "--save", "new/dir/W.npy", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    import numpy as np

    W = np.load(tmp_path / "new" / "dir" / "W.npy")
    np.testing.assert_allclose(W.sum(1), 1, atol=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_problem_on_cuda_without_cuda_names_the_device():
    import empirics

    with pytest.raises(ValueError, match=r"device 'cuda': CUDA is not available"):
        empirics.LogisticRegression(n_samples=20, d=2, device="cuda")
