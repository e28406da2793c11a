"""ModuleProblem: your own nn.Module and data in a matched experiment.

The stacked engine against an independent Python loop of nn.Module workers with torch.optim.SGD
and periodic parameter averaging (through ``coopsgd run``, and step by step through the trace),
the gradient path against the generic vmap path, buffers (averaged or kept local) against a
per-worker BatchNorm loop, the vectorised sampler, the splits, the estimated constants and their
label in verdicts, the practitioner's metrics, and the refusals."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from empirics.data import STREAM_SPLIT, load_digits, partition, rng_for
from empirics.problems import ModuleProblem
from empirics.problems.models import small_cnn, two_layer_cnn

QUICK = {"n_points": 2, "ref_steps": 10, "power_iters": 5}  # cheap constants for tests
CNN = "empirics.problems.models:two_layer_cnn"


def _loop_trajectory(n_train: int, m: int, tau: int, lr: float, steps: int):
    """Independent reference: m copies of the two-layer CNN (seed 0) as nn.Modules, each with
    torch.optim.SGD on its full shard every step, parameters averaged (torch.distributed-free:
    a mean over the copies) after every τ-th step. Returns (F(u_k) for k = 0..steps, the stacked
    flat parameters X_k for k = 0..steps)."""
    data = load_digits(n_train=n_train, seed=0)
    shards = partition(data.y, m, "iid", rng_for(0, STREAM_SPLIT))
    xs = [torch.as_tensor(data.x[s]) for s in shards]
    ys = [torch.as_tensor(data.y[s]) for s in shards]
    torch.manual_seed(0)
    base = two_layer_cnn()
    nets = [copy.deepcopy(base) for _ in range(m)]
    opts = [torch.optim.SGD(n.parameters(), lr=lr) for n in nets]

    def F_of_average() -> float:
        u = copy.deepcopy(base)
        with torch.no_grad():
            for name, p in u.named_parameters():
                p.copy_(torch.stack([dict(n.named_parameters())[name] for n in nets]).mean(0))
            return float(np.mean([float(nn.functional.cross_entropy(u(x), y))
                                  for x, y in zip(xs, ys, strict=True)]))

    def flat() -> np.ndarray:
        return np.stack([torch.cat([p.detach().reshape(-1) for p in n.parameters()]).double()
                         .numpy() for n in nets])

    losses, X = [F_of_average()], [flat()]
    for k in range(steps):
        for net, opt, x, y in zip(nets, opts, xs, ys, strict=True):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        if (k + 1) % tau == 0:
            with torch.no_grad():
                for ps in zip(*[list(n.parameters()) for n in nets], strict=True):
                    mean = torch.stack(ps).mean(0)
                    for p in ps:
                        p.copy_(mean)
        losses.append(F_of_average())
        X.append(flat())
    return np.asarray(losses), np.stack(X)


SPEC_TOML = """
name = "cnn-pasgd"
lr = 0.1
steps = 12
batch_size = 50
seeds = 1
record_every = 1
grad_every = 1
dtype = "float32"

[problem]
kind = "module"
model = "empirics.problems.models:two_layer_cnn"
data = {{ name = "digits", n_train = 200 }}
split = "iid"
sampling = "full_shard"
n_points = 2
ref_steps = 10
power_iters = 5

[algorithm]
name = "pasgd"
m = 4
tau = {tau}
"""


def test_coopsgd_run_matches_a_loop_of_modules_with_periodic_averaging(tmp_path):
    """Done-when: a two-layer CNN on a 200-image subset through ``coopsgd run`` with PASGD on 4
    workers; the stacked run's F(u_k) at every step equals that of an independent loop of 4
    nn.Module copies with torch.optim.SGD and periodic parameter averaging, fed the same
    full-shard batches, to 1e-5 in float32."""
    from empirics.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC_TOML.format(tau=3))
    r = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "result.json").read_text())
    run = res["runs"][0]
    assert run["step"] == list(range(13))
    want, _ = _loop_trajectory(200, 4, 3, 0.1, 12)
    np.testing.assert_allclose(run["loss"], want, rtol=1e-5)
    assert want[-1] < want[0] - 0.05  # it trained
    assert res["spec"]["problem"]["kind"] == "module"
    f = res["final"]["metrics"]
    assert 0 <= f["test_accuracy"] <= 1 and f["train_loss"] == pytest.approx(want[-1], rel=1e-5)
    assert f["bits"] == 4 * 32 * 1370 * 4  # 4 rounds × 4 workers × 32·d bits
    assert f["wall_per_step"] > 0


def test_every_worker_row_follows_the_loop_step_by_step():
    """The trace of the stacked engine: every worker's parameters at every step equal the loop's
    (float32, to 1e-5 of the parameters' scale), with averaging after steps 2, 5, 8, 11."""
    import tomllib

    from empirics.engine import run
    from empirics.experiment import ExperimentSpec

    spec = ExperimentSpec.from_dict(tomllib.loads(SPEC_TOML.format(tau=3)))
    _, tr = run(spec.run_spec(0), trace=True)
    _, X = _loop_trajectory(200, 4, 3, 0.1, 12)
    assert tr.X.shape == X.shape
    np.testing.assert_allclose(tr.X, X, atol=1e-5 * np.abs(X).max())
    assert list(np.nonzero(tr.mixed)[0]) == [2, 5, 8, 11]


def _stack(p: ModuleProblem, rows: int):
    from empirics.driver import Layout

    x0 = p.init_params()
    lay = Layout(x0)
    X = lay.flat(x0).expand(rows, lay.d).clone()
    return lay, X, lay.views(X)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_stacked_gradient_equals_the_generic_vmap_path(batch_norm):
    """The registered path (vmap of the forward through functional_call, one reverse pass)
    gives the gradients and losses of vmap(grad_and_value(problem.loss))."""
    from empirics.algorithm import grad_fn_for, vmap_grad

    p = ModuleProblem({"factory": "empirics.problems.models:small_cnn",
                       "batch_norm": batch_norm}, {"name": "digits", "n_train": 300}, m=3,
                      dtype=torch.float64, **QUICK)
    fn, name = grad_fn_for(p)
    assert name == "module_vmap"
    _, X, views = _stack(p, 3)
    X += 0.01 * torch.randn(X.shape, generator=torch.Generator().manual_seed(1),
                            dtype=X.dtype)
    batch = p.sample_all(8, p.generator(0))
    ref_g, ref_l = vmap_grad(p)(views, batch)
    g, losses = fn(views, batch)
    assert list(g) == list(views)
    torch.testing.assert_close(losses, ref_l, rtol=1e-12, atol=1e-12)
    for k in p.trainable_names:
        torch.testing.assert_close(g[k], ref_g[k], rtol=1e-10, atol=1e-12)
    for k in p.buffer_names:
        assert bool((g[k] == 0).all())


def test_one_randint_per_step_on_the_device_within_each_shard():
    p = ModuleProblem(CNN, {"name": "digits", "n_train": 300},
                      split={"kind": "dirichlet", "alpha": 0.5}, m=5, **QUICK)
    g = p.generator(7)
    x, y = p.sample_all(64, g)
    assert x.shape == (5, 64, 1, 8, 8) and y.shape == (5, 64)
    # worker i's samples are rows of its own shard
    data = load_digits(n_train=300, seed=0)
    for i, shard in enumerate(p.shard_indices):
        pool = torch.as_tensor(data.x[shard]).reshape(len(shard), -1)
        hit = (x[i].reshape(64, 1, -1) == pool.unsqueeze(0)).all(-1).any(-1)
        assert bool(hit.all())
    # sample(i) is row i of sample_all with the same generator state
    a = p.sample_all(16, torch.Generator().manual_seed(3))
    for i in range(5):
        xi, yi = p.sample(i, 16, torch.Generator().manual_seed(3))
        assert torch.equal(xi, a[0][i]) and torch.equal(yi, a[1][i])
    # sample_rows gathers the rows' batches of the same draw (a distributed rank's call)
    r = p.sample_rows([3, 1], 16, torch.Generator().manual_seed(3))
    assert torch.equal(r[0], a[0][[3, 1]]) and torch.equal(r[1], a[1][[3, 1]])
    with pytest.raises(ValueError, match=r"must be one torch\.Generator.*sequence of 2"):
        p.sample_all(4, [g, g])


def _bn_loop(mode: str, m: int, tau: int, lr: float, steps: int, batches):
    """m BatchNorm CNNs as modules, SGD, parameters averaged every τ steps and after the last
    (the engine's last, truncated round mixes too); running statistics averaged with them
    (mode "average") or never (mode "local")."""
    torch.manual_seed(0)
    base = small_cnn(batch_norm=True).double()
    nets = [copy.deepcopy(base) for _ in range(m)]
    opts = [torch.optim.SGD(n.parameters(), lr=lr) for n in nets]
    for k in range(steps):
        x, y = batches[k]
        for i in range(m):
            opts[i].zero_grad()
            nn.functional.cross_entropy(nets[i](x[i]), y[i]).backward()
            opts[i].step()
        if (k + 1) % tau == 0 or k == steps - 1:
            with torch.no_grad():
                groups = [list(n.parameters()) for n in nets]
                if mode == "average":
                    groups = [g + [b for b in n.buffers() if b.is_floating_point()]
                              for g, n in zip(groups, nets, strict=True)]
                for ps in zip(*groups, strict=True):
                    mean = torch.stack(ps).mean(0)
                    for t in ps:
                        t.copy_(mean)
    return nets


@pytest.mark.parametrize("mode", ["average", "local"])
def test_buffers_averaged_or_kept_local_against_a_batchnorm_loop(mode):
    """BatchNorm running statistics per worker: with buffers = "average" a synchronisation
    averages them with the parameters (every worker then holds the same complete model); with
    "local" each worker keeps its own. Both against a loop of BatchNorm modules; the averaged
    model's statistics are the same in both modes (the update is linear)."""
    from empirics.configs import pasgd
    from empirics.engine import Simulator
    from empirics.spec import RunSpec

    m, tau, lr, steps, b = 3, 2, 0.05, 5, 8
    p = ModuleProblem({"factory": "empirics.problems.models:small_cnn", "batch_norm": True},
                      {"name": "digits", "n_train": 300}, m=m, buffers=mode,
                      dtype=torch.float64, **QUICK)
    gen = p.generator(0)
    batches = [p.sample_all(b, gen) for _ in range(steps)]
    sim = Simulator(RunSpec(p, pasgd(m, tau), lr, steps, batch_size=b, seed=0))
    res = sim.run()
    nets = _bn_loop(mode, m, tau, lr, steps, batches)
    views = sim.comm.layout.views(sim.comm.X)
    for name in p.buffer_names:
        want = torch.stack([dict(n.named_buffers())[name] for n in nets])
        got = views[name][:m]
        if mode == "local":  # the rows hold the last mixing; the workers' own are private
            got = p._local[name]
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    for name in p.trainable_names:
        want = torch.stack([dict(n.named_parameters())[name] for n in nets]).detach()
        torch.testing.assert_close(views[name][:m], want, rtol=1e-9, atol=1e-12)
    rm = torch.stack([dict(n.named_buffers())["1.running_mean"] for n in nets])
    if mode == "average":  # every worker holds the averaged statistics
        assert torch.equal(rm[0], rm[1]) and torch.equal(views["1.running_mean"][0],
                                                         views["1.running_mean"][2])
    else:  # each worker its own
        assert not torch.allclose(rm[0], rm[1])
    u = res.u_final
    lay = sim.comm.layout
    off = dict(zip(lay.names, np.cumsum([0, *lay.sizes[:-1]]), strict=True))
    start = off["1.running_mean"]
    np.testing.assert_allclose(u[start:start + 8], rm.mean(0).numpy(), rtol=1e-9)


def test_average_mode_leaves_identical_complete_models_after_a_J_round():
    from empirics.configs import pasgd
    from empirics.engine import Simulator
    from empirics.spec import RunSpec

    p = ModuleProblem({"factory": "empirics.problems.models:small_cnn", "batch_norm": True},
                      {"name": "digits", "n_train": 300}, m=3, **QUICK)
    sim = Simulator(RunSpec(p, pasgd(3, 2), 0.05, 4, batch_size=8, seed=0))
    sim.run()
    X = sim.comm.X
    assert torch.equal(X[0], X[1]) and torch.equal(X[1], X[2])  # parameters and statistics
    views = sim.comm.layout.views(X)
    assert float(views["1.running_mean"].abs().sum()) > 0  # the statistics moved


def test_splits_and_their_heterogeneity():
    common = dict(data={"name": "digits", "n_train": 400}, m=4, **QUICK)
    iid = ModuleProblem(CNN, split="iid", **common)
    shared = ModuleProblem(CNN, split="shared", **common)
    skew = ModuleProblem(CNN, split={"kind": "dirichlet", "alpha": 0.1}, **common)
    by = ModuleProblem(CNN, split="by_label", **common)
    assert iid.sizes == [100] * 4 and by.sizes == [100] * 4 and shared.sizes == [400] * 4
    assert sum(skew.sizes) == 400 and len(set(skew.sizes)) > 1
    assert shared.split_info["tv"] == 0
    assert iid.split_info["tv"] < skew.split_info["tv"] and iid.split_info["tv"] < \
        by.split_info["tv"]
    assert shared.constants.kappa2.value == 0 and "exact" in shared.constants.kappa2.method
    assert iid.constants.kappa2.value > 0
    assert by.constants.kappa2.value > iid.constants.kappa2.value
    explicit = ModuleProblem(CNN, split=[[0, 1, 2], [3, 4], [5, 6, 7, 8], [9]], **common)
    assert explicit.sizes == [3, 2, 4, 1]
    x0 = explicit.init_params(dtype=torch.float64)
    g = [explicit.worker_grad(x0, i) for i in range(4)]
    mean = {k: sum(gi[k] for gi in g) / 4 for k in g[0]}
    full = explicit.full_grad(x0)
    for k in full:
        torch.testing.assert_close(full[k], mean[k], rtol=1e-10, atol=1e-12)


def test_constants_are_estimates_with_methods_and_verdicts_say_so():
    from empirics.experiment import ExperimentSpec, run_experiment

    prob = {"kind": "module", "model": CNN, "data": {"name": "digits", "n_train": 200},
            "split": "shared", **QUICK}
    spec = ExperimentSpec(name="est", problem=prob, algorithm={"name": "pasgd", "m": 4,
                                                               "tau": 2},
                          lr=0.02, steps=20, batch_size=8, seeds=2, record_every=5,
                          dtype="float32")
    r = run_experiment(spec, progress=False)
    c = r.constants
    assert c["L"]["uncertainty"] > 0 and c["L"]["method"].startswith("estimated")
    assert "power iteration on Hessian-vector products" in c["L"]["method"]
    assert "per-sample gradients" in c["sigma2"]["method"]
    assert c["F_star"]["value"] == 0 and "F_inf = 0" in c["F_star"]["method"]
    assert r.verdict.status in ("holds", "violated", "not applicable")
    assert "[estimated constants: L, σ²]" in r.verdict.message
    assert r.bound_info["constants"] == "estimated"
    assert set(r.bound_info["estimated_constants"]) == {"L", "σ²"}
    assert r.bound_conservative[-1] >= r.bound[-1] >= r.bound_optimistic[-1]


def test_batchnorm_caveat_is_in_the_verdict():
    from empirics.experiment import ExperimentSpec, run_experiment

    prob = {"kind": "module", "model": {"factory": "empirics.problems.models:small_cnn",
                                        "batch_norm": True},
            "data": {"name": "digits", "n_train": 200}, "split": "shared", **QUICK}
    spec = ExperimentSpec(name="bn", problem=prob, algorithm={"name": "pasgd", "m": 2,
                                                              "tau": 2},
                          lr=0.01, steps=8, batch_size=8, seeds=2, record_every=4,
                          dtype="float32")
    r = run_experiment(spec, progress=False)
    assert "[caveat: the model normalises over the mini-batch (BatchNorm)" in r.verdict.message


def test_metrics_a_practitioner_reads():
    p = ModuleProblem(CNN, "digits", m=2, **QUICK)
    ev = p.evaluate(p.init_params())
    assert set(ev) == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    assert ev["train_loss"] == pytest.approx(p.full_loss(p.init_params()))
    assert 0 <= ev["test_accuracy"] <= 1 and math.isfinite(ev["test_loss"])
    assert p.describe()["n_test"] == 359 and p.describe()["parameters"] == 1370


def test_tensors_dataset_callable_loss_and_mse():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=g)
    y = (x @ torch.randn(5, 2, generator=g)).float()
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    p = ModuleProblem(net, (x, y), loss="mse", m=3, **QUICK)
    assert p.n_classes == 0 and p.evaluate(p.init_params())["train_accuracy"] is None

    def my_loss(out, target):
        return ((out - target) ** 2).mean()

    q = ModuleProblem(net, (x, y), loss=my_loss, m=3, **QUICK)
    x0 = p.init_params(dtype=torch.float64)
    # the callable computes the same mean squared error: same F and ∇F
    assert q.full_loss(x0) == pytest.approx(p.full_loss(x0), rel=1e-12)
    torch.testing.assert_close(q.full_grad(x0)["0.weight"], p.full_grad(x0)["0.weight"])

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return x[i], int(i % 3)

    r = ModuleProblem(nn.Linear(5, 3), Pairs(), m=2, **QUICK)
    assert r.n == 40 and r.n_classes == 3


def test_cifar10_folder_in_the_standard_format(tmp_path):
    from empirics.data import load_cifar10, write_cifar10_folder

    folder = write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_train_per_batch=4,
                                  n_test=6)
    d = load_cifar10(tmp_path, reader="pickle")
    assert d.x.shape == (20, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.x.dtype == np.float32 and d.y.max() < 10
    p = ModuleProblem({"factory": "empirics.problems.models:vgg16", "width": 0.05},
                      f"cifar10:{folder}", m=2, **QUICK)
    assert p.n == 20 and p.n_outputs == 10
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="reader='torchvision' but torchvision"):
            load_cifar10(folder, reader="torchvision")
    else:  # pragma: no cover - only where torchvision imports
        # torchvision refuses the tiny folder (md5 sums); "auto" then reads it with pickle
        t = load_cifar10(folder, reader="auto")
        np.testing.assert_array_equal(t.x, d.x)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing data_batch_1"):
        load_cifar10(tmp_path / "empty")


def test_autocast_bf16_runs_the_same_step_approximately():
    from empirics.algorithm import grad_fn_for

    p32 = ModuleProblem(CNN, {"name": "digits", "n_train": 200}, m=2, **QUICK)
    pbf = ModuleProblem(CNN, {"name": "digits", "n_train": 200}, m=2, autocast="bf16", **QUICK)
    _, _, views = _stack(p32, 2)
    batch = p32.sample_all(16, p32.generator(0))
    g32, l32 = grad_fn_for(p32)[0](views, batch)
    gbf, lbf = grad_fn_for(pbf)[0](views, batch)
    assert lbf.dtype == torch.float32
    torch.testing.assert_close(lbf, l32, rtol=2e-2, atol=2e-2)
    for k in g32:
        scale = float(g32[k].abs().max())
        torch.testing.assert_close(gbf[k], g32[k], rtol=0.1, atol=0.05 * scale)
    assert not torch.equal(lbf, l32)
    with pytest.raises(ValueError, match="autocast must be None, 'bf16' or 'fp16'"):
        ModuleProblem(CNN, "digits", autocast="int8")


# ---------------------------------------------------------------------------------------------
# bad input: the argument and the rule
# ---------------------------------------------------------------------------------------------
class _ItemBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x):
        h = self.lin(x.flatten(1))
        if h.sum().item() > 0:  # Python control flow on a tensor value
            return h
        return -h


class _Dropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x.flatten(1)))


def test_bad_input_names_the_argument_and_the_rule():
    digits = {"name": "digits", "n_train": 50}
    for model in (_ItemBranch(), _Dropout()):
        with pytest.raises(ValueError, match=r"model: its forward is not functionalisable"):
            ModuleProblem(model, digits, m=2)
    with pytest.raises(ValueError, match=r"data: the training set has 3 samples but there are "
                                         r"m = 4 workers"):
        ModuleProblem(CNN, (torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 2])), m=4)
    with pytest.raises(ValueError, match=r"data: labels must lie in 0..4 for a model with 5 "
                                         r"outputs \(the labels span 0..9\)"):
        ModuleProblem({"factory": CNN, "n_classes": 5}, digits, m=2)
    for alpha in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"split.alpha must be a finite number > 0, the "
                                             r"Dirichlet concentration"):
            ModuleProblem(CNN, digits, split={"kind": "dirichlet", "alpha": alpha}, m=2)
    with pytest.raises(ValueError, match=r"split: explicit shards must be a list of m = 3"):
        ModuleProblem(CNN, digits, split=[[0], [1]], m=3)
    with pytest.raises(ValueError, match=r"split must be one of \['iid', 'shared'"):
        ModuleProblem(CNN, digits, split="random", m=2)
    bad = torch.randn(10, 1, 8, 8)
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"data: the inputs contain NaN or inf"):
        ModuleProblem(CNN, (bad, torch.zeros(10, dtype=torch.long)), m=2)
    with pytest.raises(ValueError, match=r"model must be 'package.module:factory'"):
        ModuleProblem("two_layer_cnn", digits)
    with pytest.raises(ValueError, match=r"has no attribute 'nope'"):
        ModuleProblem("empirics.problems.models:nope", digits)
    frozen = two_layer_cnn().requires_grad_(False)
    with pytest.raises(ValueError, match=r"model has no parameter that requires grad"):
        ModuleProblem(frozen, digits)
    with pytest.raises(ValueError, match=r"buffers must be one of"):
        ModuleProblem(CNN, digits, buffers="sync")
    with pytest.raises(ValueError, match=r"batch_size must equal the shard size 25"):
        p = ModuleProblem(CNN, digits, m=2, sampling="full_shard")
        p.sample_all(8, p.generator(0))


def test_spec_vocabulary_names_unknown_keys():
    from empirics.experiment import ExperimentSpec

    base = dict(name="s", algorithm={"name": "pasgd", "m": 2, "tau": 2}, lr=0.1, steps=4)
    with pytest.raises(ValueError, match=r"unknown key 'splitt'.*did you mean 'split'"):
        ExperimentSpec(problem={"kind": "module", "model": CNN, "data": "digits",
                                "splitt": "iid"}, **base)
    with pytest.raises(ValueError, match=r"problem 'module' needs 'data'"):
        ExperimentSpec(problem={"kind": "module", "model": CNN}, **base)


def test_nan_loss_stops_the_run_naming_step_and_seed_and_keeps_the_records():
    """A diverging run names the step and the seed and keeps what was recorded."""
    from empirics.experiment import ExperimentSpec, run_experiment

    prob = {"kind": "module", "model": CNN, "data": {"name": "digits", "n_train": 200},
            "split": "shared", **QUICK}
    spec = ExperimentSpec(name="boom", problem=prob, algorithm={"name": "pasgd", "m": 2,
                                                                "tau": 2},
                          lr=1e4, steps=30, batch_size=8, seeds=2, record_every=1,
                          dtype="float32")
    r = run_experiment(spec, progress=False)
    assert r.verdict.status == "diverged"
    assert "run diverged at step" in r.verdict.message and "seed 0" in r.verdict.message
    assert r.verdict.step is not None and r.verdict.step > 0
    assert len(r.runs[0].loss) >= 1 and r.runs[0].status == "diverged"


def test_the_distributed_backend_runs_a_module_problem():
    """torch.distributed (gloo, one process per worker) runs the same spec: the same x₀ and
    F(x₀); each rank draws its batches from its own generator (documented: not the simulator's
    stream), so the trajectories are close, not equal."""
    from empirics.experiment import ExperimentSpec, run_experiment

    spec = ExperimentSpec(
        name="dist", problem={"kind": "module", "model": CNN, "split": "shared",
                              "data": {"name": "digits", "n_train": 200}, **QUICK},
        algorithm={"name": "pasgd", "m": 2, "tau": 2}, lr=0.05, steps=8, batch_size=8,
        seeds=1, record_every=4, dtype="float32")
    sim = run_experiment(spec, progress=False)
    dist = run_experiment(spec, progress=False, backend="gloo")
    a, b = sim.runs[0], dist.runs[0]
    assert b.status == "completed" and list(b.step) == [0, 4, 8]
    assert b.loss[0] == pytest.approx(a.loss[0], rel=1e-6)
    np.testing.assert_allclose(b.loss, a.loss, rtol=0.05)
    assert b.bits[-1] == a.bits[-1]
