"""Your own model and data: :class:`ModuleProblem` wraps any ``torch.nn.Module`` and a labelled
data set as a Cooperative SGD problem with estimated constants.

The m workers are never m modules. Worker i's model is row i of the engine's stacked parameter
matrix; its gradient comes from ``torch.func.functional_call`` of one stateless template module,
``vmap``-ed over the stacked parameters, buffers and mini-batches (:func:`stacked_grad_factory`,
registered as the engine's gradient path for this problem class). Mini-batches for all workers
are one ``torch.randint`` on the device per step (the run's one batch generator,
:meth:`Problem.generator`) followed by one gather.

**Buffers** (BatchNorm running statistics) are per worker and travel in the worker's row, after
the trainable parameters. Each local step writes the worker's new running statistics (computed
by the forward pass on its own mini-batch) into its row; the gradient of those entries is zero.
What a synchronisation does to them is the ``buffers`` option:

* ``"average"`` (default): the mixing step X ← WᵀX treats them like the parameters. After a
  W = J round every worker holds the same complete model — parameters and statistics — which is
  the averaged model u_k of the theory, and the ``torch.distributed`` backend needs no extra
  message. Because the running-statistic update is linear (r ← (1 − μ)r + μ·s), the averaged
  model's statistics are the same under both options (mixing with a doubly stochastic W keeps the
  mean of the rows); averaging changes what each *worker* holds.
* ``"local"``: each worker keeps its own statistics (FedBN-style: matched to its own shard,
  useful when a worker is evaluated on its own non-IID data). The engine still mixes whole rows;
  every local step first restores the worker's own statistics, so mixing has no lasting effect
  on them. The bits count still includes them (a row is one message): an over-count of the
  buffer share of d (2 numbers per BatchNorm channel, about 1–3 % for the CNNs here).

The buffer entries change inside the gradient call, so the engine's trace identity
X_{k+1} = Wᵀ(X_k − Δ_k) holds on the parameter coordinates only for a model with BatchNorm;
with ``fast_path=False`` (the generic ``vmap(grad(loss))`` path, which is pure) the running
statistics keep x₀'s values. A compressor acts on the whole row, buffer entries included:
those carry a zero update, which every built-in compressor leaves at zero except the scaled
sign (sign(0) = +1); with it, prefer ``buffers = "local"`` (each step restores the workers'
own statistics).

Train-mode forward passes use batch statistics and never read the running ones; F, ∇F, the
constants and the evaluation metrics use the module in eval mode (running statistics of the
row). With BatchNorm the workers' stochastic gradients are therefore not unbiased estimates of
∇F (the batch enters the normalisation): :attr:`ModuleProblem.caveats` says so, and verdicts
carry it.

**Constants** of a model nobody can compute exactly, at the points P = x₀ and the iterates at
¼, ½, ¾ and all of a reference run (plain single-model SGD on the whole training set,
``ref_steps`` steps of batch ``ref_batch`` at ``ref_lr``):

* L: max over P of the top Hessian eigenvalue |λ|max(∇²F(x)) by power iteration on
  Hessian-vector products (double backward through the full-data loss); uncertainty = spread;
* σ²: max over P and workers of the exact single-sample variance σ_i²(x) = mean_j ‖∇ℓ_j(x)‖² −
  ‖∇F_i(x)‖² over worker i's shard (per-sample gradients, ``vmap`` of ``grad``); uncertainty =
  spread; 0 exactly with ``sampling = "full_shard"``;
* κ²: max over P of (1/m) Σ_i ‖∇F_i(x) − ∇F(x)‖² (Cooperative SGD's non-IID κ², JMLR Thm. 2);
* F_inf: 0 for cross-entropy and MSE (non-negative losses; a lower bound on inf F), or
  ``f_inf``. F(x₀) exact.

Every one is an :class:`~empirics.problems.Estimate` naming its method; bounds evaluated with them
are labelled *estimated constants* in the verdict.

The objective is F = (1/m) Σ_i F_i with F_i the mean loss over worker i's shard (the paper's
equal-weight average; with equal shards, the mean over the data used).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from empirics import fastgrads
from empirics.data import (
    STREAM_POINTS,
    STREAM_SPLIT,
    ImageData,
    label_skew,
    load_cifar10,
    load_digits,
    partition,
    rng_for,
)
from empirics.problems.base import (
    Batch,
    Constants,
    Estimate,
    Params,
    Problem,
    _is_transform_wrapped,
    one_generator,
    seed_for,
)
from theory import checks

__all__ = ["BUFFER_MODES", "LOSSES", "SAMPLING", "ModuleProblem", "load_data", "resolve_model",
           "stacked_grad_factory"]

#: built-in losses (a callable ``loss(output, target) -> mean over the batch`` also works)
LOSSES = ("cross_entropy", "mse")
#: what a synchronisation does to the buffers
BUFFER_MODES = ("average", "local")
#: how a worker's mini-batch is drawn from its shard
SAMPLING = ("replacement", "full_shard")
_AUTOCAST = {None: None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
_CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# model and data from plain values (what a spec file can hold)
# ---------------------------------------------------------------------------------------------
def resolve_model(model: Any, seed: int = 0, **kwargs: Any) -> nn.Module:
    """An ``nn.Module`` from a module (returned as is), a factory (called with ``kwargs``), a
    ``"package.module:factory"`` string, or ``{"factory": "package.module:factory", **kwargs}``.
    Factories run under ``torch.manual_seed(seed)`` (the global RNG is restored afterwards), so
    the initial weights are a function of the seed."""
    if isinstance(model, dict):
        kw = dict(model)
        if "factory" not in kw:
            raise ValueError(f"model: a table needs 'factory' = 'package.module:function' "
                             f"(got keys {sorted(kw)})")
        return resolve_model(kw.pop("factory"), seed, **{**kw, **kwargs})
    if isinstance(model, nn.Module):
        if kwargs:
            raise ValueError(f"model: keyword arguments {sorted(kwargs)} given with a ready "
                             f"nn.Module")
        return model
    if isinstance(model, str):
        mod, sep, attr = model.partition(":")
        if not sep or not mod or not attr:
            raise ValueError(f"model must be 'package.module:factory' (got {model!r})")
        try:
            obj: Any = importlib.import_module(mod)
        except ImportError as e:
            raise ValueError(f"model {model!r}: cannot import {mod!r} ({e})") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"model {model!r}: {mod!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        model = obj
    if not callable(model):
        raise ValueError(f"model must be an nn.Module, a factory, or 'package.module:factory' "
                         f"(got {type(model).__name__})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            out = model(**kwargs)
        except TypeError as e:
            raise ValueError(f"model factory {getattr(model, '__name__', model)!r}: {e}") \
                from None
    if not isinstance(out, nn.Module):
        raise ValueError(f"model factory must return an nn.Module (got {type(out).__name__})")
    return out


def _array(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def load_data(data: Any, test: Any = None, seed: int = 0) -> ImageData:
    """The training set and held-out split as an :class:`~empirics.data.ImageData`, from:

    * ``"digits"`` or ``{"name": "digits", "n_train": ..., "n_test": ..., "test_fraction": ...}``
      (scikit-learn's digits, shipped: :func:`empirics.data.load_digits`);
    * ``"cifar10:/path"`` or ``{"name": "cifar10", "root": "/path", ...}`` (a local folder in the
      standard format: :func:`empirics.data.load_cifar10`);
    * a tuple ``(x, y)`` of tensors or arrays, or a ``torch.utils.data.Dataset`` of (x, y) pairs;
    * an :class:`~empirics.data.ImageData`.

    ``test``: held-out data in the tuple/Dataset forms (default: the data set's own held-out
    split; none for tuples and Datasets)."""
    if isinstance(data, str):
        name, _, rest = data.partition(":")
        data = {"name": name, **({"root": rest} if rest else {})}
    if isinstance(data, dict):
        kw = dict(data)
        name = kw.pop("name", None)
        if name == "digits":
            kw.setdefault("seed", seed)
            out = load_digits(**kw)
        elif name == "cifar10":
            if "root" not in kw:
                raise ValueError("data: cifar10 needs root = the local folder holding "
                                 "data_batch_1..5 and test_batch")
            kw.setdefault("seed", seed)
            out = load_cifar10(**kw)
        else:
            raise ValueError(f"data name must be 'digits' or 'cifar10' (got {name!r}); or give "
                             f"(x, y) tensors or a torch Dataset")
    elif isinstance(data, ImageData):
        out = data
    elif isinstance(data, torch.utils.data.Dataset):
        out = _from_pairs(data, "data")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _array(data[0]), _array(data[1])
        out = ImageData(x, y, x[:0], y[:0], _n_classes(y), "tensors", "user tensors")
    else:
        raise ValueError(f"data must be 'digits', 'cifar10:<folder>', a table {{name = ...}}, "
                         f"an (x, y) pair of tensors or a torch Dataset (got "
                         f"{type(data).__name__})")
    if test is not None:
        t = _from_pairs(test, "test") if isinstance(test, torch.utils.data.Dataset) else None
        if t is None:
            if not (isinstance(test, (tuple, list)) and len(test) == 2):
                raise ValueError("test must be an (x, y) pair of tensors or a torch Dataset")
            tx, ty = _array(test[0]), _array(test[1])
        else:
            tx, ty = t.x, t.y
        out = ImageData(out.x, out.y, tx, ty, max(out.n_classes, _n_classes(ty)), out.name,
                        out.source)
    return out


def _n_classes(y: np.ndarray) -> int:
    return int(y.max()) + 1 if y.size and y.dtype.kind in "iu" else 0


def _from_pairs(ds: Any, what: str) -> ImageData:
    try:
        n = len(ds)
    except TypeError:
        raise ValueError(f"{what}: a torch Dataset must have a length") from None
    if n == 0:
        raise ValueError(f"{what}: the Dataset is empty")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{what}: Dataset items must be (x, y) pairs (item {i} is "
                             f"{type(item).__name__})")
        xs.append(_array(item[0]))
        ys.append(_array(item[1]))
    x, y = np.stack(xs), np.stack(ys)
    return ImageData(x, y, x[:0], y[:0], _n_classes(y), type(ds).__name__, "torch Dataset")


# ---------------------------------------------------------------------------------------------
# the problem
# ---------------------------------------------------------------------------------------------
class ModuleProblem(Problem):
    """A Cooperative SGD problem from any ``torch.nn.Module`` and a labelled data set (see the
    module docstring for the engine path, the buffers and the constants).

    model: an ``nn.Module`` (copied; its current weights are x₀), a factory,
    ``"package.module:factory"`` or ``{"factory": ..., **kwargs}`` (:func:`resolve_model`;
    factories run under ``torch.manual_seed(seed)``).
    data / test: see :func:`load_data` (``"digits"``, ``{"name": "digits", "n_train": 200}``,
    ``"cifar10:/folder"``, ``(x, y)``, a Dataset). loss: ``"cross_entropy"`` (integer labels),
    ``"mse"`` (float targets, or integer labels one-hot encoded) or a callable
    ``loss(output, target)`` returning the mean over the batch. split: ``"iid"``, ``"shared"``
    (every worker samples all rows: κ² = 0), ``{"kind": "dirichlet", "alpha": α}``,
    ``"by_label"`` or m explicit index lists
    (:func:`empirics.data.partition`). buffers: ``"average"`` or ``"local"``. sampling:
    ``"replacement"`` (b indices uniform with replacement from the shard: the σ²/b theory) or
    ``"full_shard"`` (every step the whole shard, in order: full-gradient steps; batch_size must
    equal the shard size). f_inf: a lower bound on inf F (default 0 for the built-in losses).
    autocast: None, ``"bf16"`` or ``"fp16"`` for the workers' forward passes (F, ∇F and the
    constants stay in full precision). Constants: ``n_points`` (points of the reference run, x₀
    included), ``ref_steps``, ``ref_lr``, ``ref_batch``, ``power_iters``,
    ``constants_samples`` (a seeded subset of this many training rows for L, σ² and κ² on large
    data; None = all). eval_batch: rows per chunk when evaluating F, ∇F and metrics.
    """

    def __init__(self, model: Any, data: Any, loss: Any = "cross_entropy", split: Any = "iid",
                 m: int = 1, *, test: Any = None, seed: int = 0, buffers: str = "average",
                 sampling: str = "replacement", f_inf: float | None = None,
                 autocast: str | None = None, n_points: int = 5, ref_steps: int = 200,
                 ref_lr: float = 0.05, ref_batch: int = 64, power_iters: int = 20,
                 constants_samples: int | None = None, eval_batch: int = 4096,
                 init: str | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(m, device, dtype)
        self.seed = checks.integer("seed", seed, lo=0)
        self.buffers = checks.one_of("buffers", buffers, list(BUFFER_MODES))
        self.sampling = checks.one_of("sampling", sampling, list(SAMPLING))
        if autocast not in _AUTOCAST:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16' (got {autocast!r})")
        self.autocast = autocast
        self.n_points = checks.integer("n_points", n_points, lo=1)
        self.ref_steps = checks.integer("ref_steps", ref_steps, lo=0)
        self.ref_lr = checks.real("ref_lr", ref_lr, 0.0, lo_strict=True)
        self.ref_batch = checks.integer("ref_batch", ref_batch, lo=1)
        self.power_iters = checks.integer("power_iters", power_iters, lo=1)
        self.eval_batch = checks.integer("eval_batch", eval_batch, lo=1)
        self.constants_samples = (None if constants_samples is None else
                                  checks.integer("constants_samples", constants_samples, lo=1))
        self.f_inf = None if f_inf is None else checks.finite("f_inf", f_inf)
        self._local: dict[str, torch.Tensor] | None = None  # buffers="local": private rows
        self._zeros: dict[tuple[str, int], torch.Tensor] = {}
        self._set_loss(loss)
        # a module given as an object is copied (this problem changes its flags and device)
        self.module = (copy.deepcopy(model) if isinstance(model, nn.Module)
                       else resolve_model(model, self.seed))
        self._set_model()
        self.init = init
        if init is not None:
            self._load_init(init)
        self.data_info = load_data(data, test, self.seed)
        self._set_data(split)
        self._probe()
        self._local = None
        self._zeros = {}

    # -- setup ------------------------------------------------------------------------------
    def _set_loss(self, loss: Any) -> None:
        if callable(loss) and not isinstance(loss, str):
            self.loss_name = getattr(loss, "__name__", "callable")
            self._loss_fn: Callable[..., torch.Tensor] = loss
            return
        self.loss_name = checks.one_of("loss", loss, list(LOSSES))
        if loss == "cross_entropy":
            self._loss_fn = nn.functional.cross_entropy
        else:
            self._loss_fn = self._mse

    @staticmethod
    def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not y.is_floating_point():
            y = nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
        return nn.functional.mse_loss(out, y.reshape(out.shape).to(out.dtype))

    def _set_model(self) -> None:
        mod = self.module.to(self.device)
        trainable = [(k, v) for k, v in mod.named_parameters() if v.requires_grad]
        if not trainable:
            raise ValueError("model has no parameter that requires grad: nothing to train")
        for sub in mod.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.track_running_stats \
                    and sub.momentum is None:
                raise ValueError(f"model: {type(sub).__name__} with momentum=None (a cumulative "
                                 f"average) is not supported: give it a momentum (e.g. 0.1)")
        self.trainable_names = [k for k, _ in trainable]
        bufs = list(mod.named_buffers())
        self.buffer_names = [k for k, v in bufs if v.is_floating_point()]
        self._int_buffers = {k: v.detach().clone() for k, v in bufs if not v.is_floating_point()}
        self._frozen = {k: v.detach() for k, v in mod.named_parameters() if not v.requires_grad}
        self.batch_dependent = any(isinstance(s, nn.modules.batchnorm._BatchNorm)
                                   for s in mod.modules())
        state = {**{k: v for k, v in trainable}, **{k: v for k, v in bufs
                                                     if v.is_floating_point()}}
        self.param_shapes = {k: tuple(v.shape) for k, v in state.items()}
        self._x0 = {k: v.detach().to(_CPU, torch.float64).numpy().copy()
                    for k, v in state.items()}
        self.n_trainable = sum(math.prod(self.param_shapes[k]) for k in self.trainable_names)
        for p in mod.parameters():  # the template's own tensors are never differentiated
            p.requires_grad_(False)

    def _load_init(self, path: str) -> None:
        """x₀ from a file written by ``torch.save``: a flat tensor (a row of the engine, e.g.
        ``Result.u_final``) or a dict name → tensor (a state dict)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"init: cannot read {path!r} ({e})") from None
        sizes = {k: math.prod(v) for k, v in self.param_shapes.items()}
        if isinstance(obj, torch.Tensor) or isinstance(obj, np.ndarray):
            flat = torch.as_tensor(obj).reshape(-1)
            if flat.numel() != sum(sizes.values()):
                raise ValueError(f"init: {path!r} holds {flat.numel()} numbers; this model's "
                                 f"row has {sum(sizes.values())}")
            parts = torch.split(flat, list(sizes.values()))
            obj = {k: p.view(self.param_shapes[k]) for k, p in zip(sizes, parts, strict=True)}
        if not isinstance(obj, dict):
            raise ValueError(f"init: {path!r} must hold a flat tensor or a dict of tensors")
        missing = [k for k in self.param_shapes if k not in obj]
        if missing:
            raise ValueError(f"init: {path!r} lacks {missing[:5]}")
        for k, shp in self.param_shapes.items():
            if tuple(obj[k].shape) != shp:
                raise ValueError(f"init: {k} has shape {tuple(obj[k].shape)} in {path!r}, the "
                                 f"model's is {shp}")
        self._x0 = {k: obj[k].detach().to(_CPU, torch.float64).numpy().copy()
                    for k in self.param_shapes}

    def _set_data(self, split: Any) -> None:
        d = self.data_info
        x, y = np.asarray(d.x), np.asarray(d.y)
        if len(x) != len(y):
            raise ValueError(f"data: {len(x)} inputs but {len(y)} labels")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError("data: the inputs contain NaN or inf")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("data: the targets contain NaN or inf")
        classify = y.dtype.kind in "iu"
        if self.loss_name == "cross_entropy" and not classify:
            raise ValueError(f"loss 'cross_entropy' needs integer class labels (got targets of "
                             f"dtype {y.dtype})")
        self.split = split
        self.shard_indices = partition(y if classify else np.zeros(len(y), np.int64), self.m,
                                       split, rng_for(self.seed, STREAM_SPLIT))
        if self.sampling == "full_shard":
            sizes = {len(s) for s in self.shard_indices}
            if len(sizes) != 1:
                raise ValueError(f"sampling='full_shard' needs equal shard sizes (the split "
                                 f"gives {sorted(sizes)}): use split='iid' or 'by_label'")
        self.shared = (isinstance(split, str) and split == "shared") or (
            isinstance(split, dict) and split.get("kind") == "shared")
        # rows stored worker-major (shard after shard); "shared": stored once, every worker's
        # range is all of them
        order = self.shard_indices[0] if self.shared else np.concatenate(self.shard_indices)
        self.sizes = [len(s) for s in self.shard_indices]
        self.n = len(order)
        self.n_classes = int(d.n_classes) if classify else 0
        self.split_info = (label_skew(y, self.shard_indices, max(self.n_classes, 1))
                           if classify else {"sizes": self.sizes})
        dt, dev = self.dtype, self.device
        self._x = torch.as_tensor(x[order], dtype=dt, device=dev)
        self._y = torch.as_tensor(y[order], device=dev)
        if not classify:
            self._y = self._y.to(dt)
        self._x_test = torch.as_tensor(np.asarray(d.x_test), dtype=dt, device=dev)
        self._y_test = torch.as_tensor(np.asarray(d.y_test), device=dev)
        if not classify and self._y_test.numel():
            self._y_test = self._y_test.to(dt)
        offsets = [0] * self.m if self.shared else np.concatenate(
            [[0], np.cumsum(self.sizes)[:-1]]).tolist()
        self._offsets = torch.as_tensor(offsets, dtype=torch.int64, device=dev)
        self._sizes_t = torch.as_tensor(self.sizes, dtype=torch.int64, device=dev)
        #: (first row, rows, weight of each row in F) of every distinct shard
        self._ranges = ([(0, self.n, 1.0 / self.n)] if self.shared else
                        [(int(o), s, 1.0 / (self.m * s)) for o, s in
                         zip(offsets, self.sizes, strict=True)])
        self._weights = torch.cat([torch.full((s,), w, dtype=torch.float64, device=dev)
                                   for _, s, w in self._ranges])

    def _probe(self) -> None:
        """Refuse a model whose forward cannot run under vmap(grad(functional_call)), and labels
        outside its output range."""
        p = self.init_params()
        x = self._x[:2]
        try:
            with self._mode(False), torch.no_grad():
                out = self._call(p, x)
        except Exception as e:
            raise ValueError(f"model: its forward fails on the data's inputs of shape "
                             f"{tuple(x.shape[1:])}: {type(e).__name__}: {e}") from None
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"model: the output must be (batch, outputs); got shape "
                             f"{tuple(out.shape)} for a batch of {x.shape[0]}")
        self.n_outputs = int(out.shape[-1])
        if self.n_classes:
            lo, hi = int(self._y.min()), int(self._y.max())
            if self._y_test.numel():
                lo, hi = min(lo, int(self._y_test.min())), max(hi, int(self._y_test.max()))
            if self.loss_name in LOSSES and (lo < 0 or hi >= self.n_outputs):
                raise ValueError(f"data: labels must lie in 0..{self.n_outputs - 1} for a model "
                                 f"with {self.n_outputs} outputs (the labels span {lo}..{hi})")
        stacked = {k: v.unsqueeze(0).expand(2, *v.shape).clone() for k, v in p.items()}
        batch = (self._x[:2].unsqueeze(0).expand(2, *self._x[:2].shape),
                 self._y[:2].unsqueeze(0).expand(2, *self._y[:2].shape))
        try:
            stacked_grad_factory(self)(stacked, batch)
        except Exception as e:
            raise ValueError(
                f"model: its forward is not functionalisable: running it under torch.func "
                f"(vmap over workers of grad of functional_call) fails with "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. The forward "
                f"must be a function of its parameters and inputs: no in-place changes of "
                f"parameters or captured tensors, no .item() or Python branching on tensor "
                f"values, no random layers (dropout)") from None

    # -- the functional model -----------------------------------------------------------
    @contextlib.contextmanager
    def _mode(self, train: bool) -> Iterator[None]:
        was = self.module.training
        self.module.train(train)
        try:
            yield
        finally:
            self.module.train(was)

    def _call(self, state: Params, x: torch.Tensor) -> torch.Tensor:
        """The module's output on x with the tensors of ``state`` (parameters and float
        buffers); integer buffers are fresh copies (never the template's own)."""
        dt = next(iter(state.values())).dtype
        extra = {k: v.clone() for k, v in self._int_buffers.items()}
        return functional_call(self.module, {**self._frozen, **extra, **state},
                               (x.to(dt),), strict=False)

    def _split(self, params: Params) -> tuple[Params, Params]:
        return ({k: params[k] for k in self.trainable_names},
                {k: params[k] for k in self.buffer_names if k in params})

    def _buffers_or_x0(self, params: Params) -> Params:
        """The buffers of ``params`` (x₀'s when ``params`` holds only trainable tensors)."""
        t = next(iter(params.values()))
        return {k: params[k] if k in params else torch.as_tensor(self._x0[k], dtype=t.dtype,
                                                                  device=t.device)
                for k in self.buffer_names}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """Mean mini-batch loss of the train-mode forward (batch statistics), pure: the running
        statistics it would update are copies. Usable under ``torch.func.grad``/``vmap``."""
        x, y = batch
        bufs = {k: v.detach().clone() for k, v in self._buffers_or_x0(params).items()}
        tp = {k: params[k] for k in self.trainable_names}
        with self._mode(True):
            return self._loss_fn(self._call({**tp, **bufs}, x), y)

    # -- data -----------------------------------------------------------------------------
    def _init_numpy(self) -> dict[str, np.ndarray]:
        return self._x0

    def init_params(self, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> Params:
        """x₀ (trainable parameters, then float buffers) — also the start of a run: the private
        buffers of ``buffers = "local"`` are reset here."""
        self._local = None
        return super().init_params(device, dtype)

    def _indices(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(m, b) row indices into the worker-major data: one randint for all workers."""
        checks.integer("batch_size", batch_size, lo=1)
        m = self.m
        if self.sampling == "full_shard":
            n_per = self.sizes[0]
            if batch_size != n_per:
                raise ValueError(f"batch_size must equal the shard size {n_per} with "
                                 f"sampling='full_shard' (every step is the whole shard); "
                                 f"got {batch_size}")
            return torch.arange(m * n_per, device=self.device).view(m, n_per)
        r = torch.randint(0, 2**62, (m, batch_size), generator=generator,
                          device=generator.device).to(self.device)
        return r.remainder_(self._sizes_t[:, None]).add_(self._offsets[:, None])

    def sample_all(self, batch_size: int, generator: torch.Generator,
                   out: Batch | None = None) -> Batch:
        """All m mini-batches, leading axis m, drawn on the device: one ``torch.randint`` of
        shape (m, b) (uniform in [0, 2⁶²) reduced modulo each worker's shard size, bias below
        2⁻⁴⁰) from the run's one batch generator (:meth:`Problem.generator`), then one gather.
        ``out``: tensors of an earlier call with the same batch size, overwritten in place."""
        j = self._indices(batch_size, one_generator(generator)).reshape(-1)
        m = self.m
        if out is None:
            return tuple(t.index_select(0, j).view(m, -1, *t.shape[1:])
                         for t in (self._x, self._y))
        return tuple(torch.index_select(t, 0, j, out=o.view(-1, *t.shape[1:]))
                     .view(m, -1, *t.shape[1:])
                     for t, o in zip((self._x, self._y), out, strict=True))

    def sample_rows(self, rows: Sequence[int], batch_size: int, generator: torch.Generator
                    ) -> Batch:
        """The batches of the workers ``rows`` from the same draw as :meth:`sample_all`
        (all m workers' indices drawn, only the rows' data gathered): what a rank of the
        distributed backend calls, equal to the simulator's rows."""
        j = self._indices(batch_size, one_generator(generator))
        idx = torch.as_tensor([int(r) for r in rows], dtype=torch.long, device=j.device)
        j = j.index_select(0, idx)
        return (self._x[j], self._y[j])

    def sample(self, worker: int, batch_size: int, generator: torch.Generator) -> Batch:
        """Worker ``worker``'s mini-batch: row ``worker`` of :meth:`sample_all` with the same
        generator state (draws all m rows' indices, keeps one)."""
        self._check_sample_args(worker, batch_size)
        j = self._indices(batch_size, generator)[worker]
        return (self._x[j], self._y[j])

    # -- evaluation (eval mode) -----------------------------------------------------------------
    def _chunks(self, x: torch.Tensor, w: torch.Tensor | None
                ) -> Iterator[tuple[slice, torch.Tensor | None]]:
        """Row slices of at most ``eval_batch`` rows; for callable losses, never across a
        shard boundary (the callable returns a mean)."""
        n = x.shape[0]
        if w is None or self.loss_name in LOSSES:
            for s in range(0, n, self.eval_batch):
                yield slice(s, min(n, s + self.eval_batch)), None
            return
        for off, size, w_row in self._ranges:
            for s in range(off, off + size, self.eval_batch):
                e = min(off + size, s + self.eval_batch)
                yield slice(s, e), torch.tensor((e - s) * w_row, dtype=torch.float64)

    def _per_sample(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "cross_entropy":
            return nn.functional.cross_entropy(out, y, reduction="none")
        if self.loss_name == "mse":
            if not y.is_floating_point():
                y = nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
            return ((out - y.reshape(out.shape).to(out.dtype)) ** 2).reshape(
                out.shape[0], -1).mean(1)
        raise AssertionError("per-sample losses of a callable loss")

    def _weighted_loss(self, state: Params, sl: slice, cw: torch.Tensor | None,
                       x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
                       ) -> torch.Tensor:
        out = self._call(state, x[sl])
        if w is None:  # a plain mean over the rows (test data)
            if self.loss_name in LOSSES:
                return self._per_sample(out, y[sl]).sum() / x.shape[0]
            return self._loss_fn(out, y[sl]) * ((sl.stop - sl.start) / x.shape[0])
        if cw is None:
            return (self._per_sample(out, y[sl]) * w[sl].to(out.dtype)).sum()
        return self._loss_fn(out, y[sl]) * cw.to(out.dtype)

    def _state(self, params: Params) -> Params:
        tp, _ = self._split(params)
        return {**tp, **self._buffers_or_x0(params)}

    def objective(self, params: Params) -> torch.Tensor:
        """F(params) = (1/m) Σ_i F_i, eval mode, as a differentiable scalar."""
        state = self._state(params)
        with self._mode(False):
            return sum(self._weighted_loss(state, sl, cw, self._x, self._y, self._weights)
                       for sl, cw in self._chunks(self._x, self._weights))

    def full_loss(self, params: Params) -> float:
        with torch.no_grad():
            return float(self.objective({k: v.detach() for k, v in params.items()}))

    def full_grad(self, params: Params) -> Params:
        """∇F(params) w.r.t. the trainable parameters (chunked autograd; the buffer entries of
        the row get 0: they are statistics, not variables of F)."""
        tp, bufs = self._split({k: v.detach() for k, v in params.items()})
        g = self._grad_over(tp, self._buffers_or_x0(params), None)
        return {**g, **{k: torch.zeros_like(v) for k, v in bufs.items()}}

    def _grad_over(self, tp: Params, bufs: Params, rows: slice | None) -> Params:
        """∇ of Σ_j w_j ℓ_j over ``rows`` (all rows when None) w.r.t. ``tp`` (eval mode)."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in tp.items()}
        acc = {k: torch.zeros_like(v) for k, v in tp.items()}
        x, y, w = self._x, self._y, self._weights
        if rows is not None:
            x, y, w = x[rows], y[rows], w[rows]
        with self._mode(False), torch.enable_grad():
            for sl, cw in self._chunks_local(x, w, rows):
                val = self._weighted_loss({**leaves, **bufs}, sl, cw, x, y, w)
                for k, gk in zip(leaves, torch.autograd.grad(val, list(leaves.values())),
                                 strict=True):
                    acc[k] += gk
        return acc

    def _chunks_local(self, x: torch.Tensor, w: torch.Tensor, rows: slice | None
                      ) -> Iterator[tuple[slice, torch.Tensor | None]]:
        if rows is None:
            yield from self._chunks(x, w)
            return
        # one worker's shard (rows = its range): weights relative to that worker's F_i·(1/m)
        n = x.shape[0]
        for s in range(0, n, self.eval_batch):
            e = min(n, s + self.eval_batch)
            yield slice(s, e), (None if self.loss_name in LOSSES else
                                torch.tensor((e - s) / (self.m * n), dtype=torch.float64))

    def grad_norm2(self, params: Params) -> float:
        """‖∇F(params)‖² over the trainable parameters."""
        g = self.full_grad(params)
        return float(sum((g[k].double() ** 2).sum() for k in self.trainable_names))

    def worker_grad(self, params: Params, worker: int) -> Params:
        """∇F_i(params) (trainable parameters; 0 for the buffer entries)."""
        self._check_sample_args(worker, 1)
        if self.shared:
            return self.full_grad(params)
        tp, bufs = self._split({k: v.detach() for k, v in params.items()})
        off = int(self._offsets[worker])
        g = self._grad_over(tp, self._buffers_or_x0(params),
                            slice(off, off + self.sizes[worker]))
        return {**{k: v * self.m for k, v in g.items()},
                **{k: torch.zeros_like(v) for k, v in bufs.items()}}

    def evaluate(self, params: Params) -> dict[str, float | None]:
        """Metrics a practitioner reads, eval mode: ``train_loss`` (F), ``train_accuracy``,
        ``test_loss``, ``test_accuracy`` (None without a held-out split or for regression)."""
        state = {k: v.detach() for k, v in self._state(params).items()}
        out: dict[str, float | None] = {"train_loss": self.full_loss(params)}
        with torch.no_grad(), self._mode(False):
            out["train_accuracy"] = self._accuracy(state, self._x, self._y, self._weights)
            if self._x_test.shape[0]:
                out["test_loss"] = float(sum(
                    self._weighted_loss(state, sl, None, self._x_test, self._y_test, None)
                    for sl, _ in self._chunks(self._x_test, None)))
                out["test_accuracy"] = self._accuracy(state, self._x_test, self._y_test, None)
            else:
                out["test_loss"] = out["test_accuracy"] = None
        return out

    def _accuracy(self, state: Params, x: torch.Tensor, y: torch.Tensor,
                  w: torch.Tensor | None) -> float | None:
        if not self.n_classes:
            return None
        tot = 0.0
        for sl, _ in self._chunks(x, None):
            hit = (self._call(state, x[sl]).argmax(-1) == y[sl]).double()
            tot += float((hit * w[sl]).sum()) if w is not None else float(hit.sum()) / len(x)
        return tot

    def final_metrics(self, u: np.ndarray | torch.Tensor) -> dict[str, float | None]:
        """:meth:`evaluate` at a flat row u (e.g. ``Result.u_final``)."""
        t = torch.as_tensor(np.asarray(u), dtype=self.dtype, device=self.device)
        sizes = [math.prod(s) for s in self.param_shapes.values()]
        if t.numel() != sum(sizes):
            raise ValueError(f"u must have {sum(sizes)} entries (got {t.numel()})")
        parts = torch.split(t.reshape(-1), sizes)
        return self.evaluate({k: p.view(s) for (k, s), p in
                              zip(self.param_shapes.items(), parts, strict=True)})

    @property
    def caveats(self) -> list[str]:
        """What a verdict on this problem must say besides its numbers."""
        out = []
        if self.batch_dependent:
            out.append("the model normalises over the mini-batch (BatchNorm): a worker's "
                       "stochastic gradient is not an unbiased estimate of ∇F (F, ∇F and the "
                       "constants use the eval-mode model)")
        return out

    # -- constants ------------------------------------------------------------------------
    def _constant_rows(self) -> list[slice] | None:
        return None

    def _reference_points(self, dt: torch.dtype) -> list[tuple[str, Params]]:
        """x₀ and the iterates at j/(n_points − 1) of the reference run (single-model SGD on
        the whole training set, train mode: its running statistics follow the run)."""
        x0 = self.init_params(self.device, dt)
        pts = [("x0", {k: v.clone() for k, v in x0.items()})]
        if self.n_points == 1 or self.ref_steps == 0:
            return pts
        marks = sorted({max(1, round(self.ref_steps * j / (self.n_points - 1)))
                        for j in range(1, self.n_points)})
        gen = torch.Generator(device=self.device).manual_seed(
            int(rng_for(self.seed, STREAM_POINTS).integers(2**62)))
        state = {k: v.clone() for k, v in x0.items()}
        tp, bufs = self._split(state)
        for k in range(1, self.ref_steps + 1):
            j = torch.randint(0, self.n, (self.ref_batch,), generator=gen,
                              device=gen.device).to(self.device)
            leaves = {n: v.requires_grad_(True) for n, v in tp.items()}
            with self._mode(True), torch.enable_grad():
                val = self._loss_fn(self._call({**leaves, **bufs}, self._x[j]), self._y[j])
                gs = torch.autograd.grad(val, list(leaves.values()))
            if not torch.isfinite(val):
                raise ValueError(f"ref_lr: the reference run (single-model SGD at ref_lr = "
                                 f"{self.ref_lr}) reached a non-finite loss at step {k}: lower "
                                 f"ref_lr")
            tp = {n: (v - self.ref_lr * g).detach() for (n, v), g in
                  zip(leaves.items(), gs, strict=True)}
            if k in marks:
                pts.append((f"ref@{k}", {**{n: v.clone() for n, v in tp.items()},
                                         **{n: v.clone() for n, v in bufs.items()}}))
        return pts

    def _hvp_top(self, state: Params, gen: torch.Generator) -> tuple[float, int]:
        """|λ|max of ∇²F at ``state`` by power iteration on Hessian-vector products."""
        tp, bufs = self._split(state)
        leaves = {k: v.detach().requires_grad_(True) for k, v in tp.items()}
        names = list(leaves)
        v = [torch.randn(leaves[k].shape, generator=gen, dtype=leaves[k].dtype,
                         device=gen.device).to(self.device) for k in names]
        nv = math.sqrt(sum(float((t**2).sum()) for t in v))
        v = [t / nv for t in v]
        lam_prev, lam, it = 0.0, 0.0, 0
        while it < self.power_iters:
            it += 1
            hv = [torch.zeros_like(t) for t in v]
            with self._mode(False), torch.enable_grad():
                for sl, cw in self._chunks(self._x, self._weights):
                    val = self._weighted_loss({**leaves, **bufs}, sl, cw, self._x, self._y,
                                              self._weights)
                    gs = torch.autograd.grad(val, [leaves[k] for k in names], create_graph=True)
                    dot = sum((g * t).sum() for g, t in zip(gs, v, strict=True))
                    for i, h in enumerate(torch.autograd.grad(dot, [leaves[k] for k in names])):
                        hv[i] += h
            lam = math.sqrt(sum(float((h.double() ** 2).sum()) for h in hv))
            if not math.isfinite(lam):
                raise ValueError("loss: a Hessian-vector product is not finite at a point of "
                                 "the reference run (lower ref_lr)")
            if lam == 0.0 or abs(lam - lam_prev) <= 1e-4 * lam:
                break
            v, lam_prev = [h / lam for h in hv], lam
        return lam, it

    def _moments(self, state: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ_i²(x) for every worker, shape (m,); the stacked worker gradients ∇F_i, (m, d))
        from per-sample gradients (eval mode, vmap of grad over samples)."""
        tp, bufs = self._split(state)
        tp = {k: v.detach() for k, v in tp.items()}
        d = sum(v.numel() for v in tp.values())
        dt = next(iter(tp.values())).dtype

        def one(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self._loss_fn(self._call({**p, **bufs}, x.unsqueeze(0)), y.unsqueeze(0))

        per = vmap(grad(one), in_dims=(None, 0, 0))
        chunk = max(1, min(self.eval_batch, 2**24 // max(d, 1)))
        pools = 1 if self.shared else self.m
        sq = torch.zeros(pools, dtype=torch.float64, device=self.device)
        gsum = torch.zeros(pools, d, dtype=dt, device=self.device)
        wid_all = torch.repeat_interleave(torch.arange(pools, device=self.device),
                                          self._sizes_t[:pools])
        with self._mode(False):
            for s in range(0, self.n, chunk):
                e = min(self.n, s + chunk)
                g = per(tp, self._x[s:e], self._y[s:e])
                flat = torch.cat([g[k].reshape(e - s, -1) for k in tp], 1)
                wid = wid_all[s:e]
                sq.index_add_(0, wid, (flat.double() ** 2).sum(1))
                gsum.index_add_(0, wid, flat)
        sizes = self._sizes_t[:pools].to(torch.float64)
        gi = gsum.double() / sizes[:, None]
        s2 = sq / sizes - (gi**2).sum(1)
        return s2.expand(self.m), gi.expand(self.m, d)

    def _compute_constants(self, progress: bool = False) -> Constants:
        from tqdm.auto import tqdm

        dt = torch.float64 if self.device.type == "cpu" else self.dtype
        saved = (self._x, self._y)
        self._x, self._y = self._x.to(dt), (self._y if not self._y.is_floating_point()
                                            else self._y.to(dt))
        try:
            bar = tqdm(total=3 * self.n_points, desc="ModuleProblem constants (L, σ², κ²)",
                       disable=not progress)
            pts = self._reference_points(dt)
            bar.update(self.n_points)
            gen = torch.Generator(device=self.device).manual_seed(seed_for(self.seed, 1))
            ls, its, s2max, s2mean, k2 = [], [], [], [], []
            for _, st in pts:
                lam, it = self._hvp_top(st, gen)
                ls.append(lam)
                its.append(it)
                bar.update()
                s2, gi = self._moments(st)
                s2max.append(float(s2.max()))
                s2mean.append(float(s2.mean()))
                k2.append(float(((gi - gi.mean(0)) ** 2).sum(1).mean()))
                bar.update()
            bar.close()
            x0 = pts[0][1]
            F0 = self.full_loss(x0)
        finally:
            self._x, self._y = saved
        if not math.isfinite(F0):
            raise ValueError(f"loss: F(x₀) = {F0} is not finite: check the data for NaN/inf "
                             f"and the loss")
        names = [n for n, _ in pts]
        where = (f"{len(pts)} points: x₀ and the iterates of a reference run (single-model "
                 f"SGD, {self.ref_steps} steps, batch {self.ref_batch}, lr {self.ref_lr})")
        if self.sampling == "full_shard":
            sigma2 = Estimate(0.0, "0: sampling='full_shard' makes every worker's gradient "
                              "its exact ∇F_i")
        else:
            sigma2 = Estimate(max(s2max), f"estimated: max over {where} and workers of the "
                              "exact single-sample variance σ_i²(x) from per-sample gradients; "
                              "divide by b; uncertainty = spread over the points",
                              max(s2max) - min(s2max),
                              detail={"points": names, "max_over_workers": s2max,
                                      "mean_over_workers": s2mean})
        if self.f_inf is not None:
            F_star = Estimate(self.f_inf, "F_inf given by the user (f_inf)")
        elif self.loss_name in LOSSES:
            F_star = Estimate(0.0, f"F_inf = 0: the {self.loss_name} loss is non-negative (a "
                              "lower bound on inf F, as the theorem's F_inf)")
        else:
            F_star = Estimate(0.0, "F_inf = 0 assumed (a callable loss: pass f_inf if it can "
                              "be negative)")
        return Constants(
            L=Estimate(max(ls), f"estimated: max over {where} of the top Hessian eigenvalue "
                       f"|λ|max(∇²F(x)) by power iteration on Hessian-vector products (≤ "
                       f"{self.power_iters} iterations); uncertainty = spread over the points",
                       max(ls) - min(ls), detail={"points": names, "values": ls,
                                                  "iterations": its}),
            mu=None, sigma2=sigma2, F_star=F_star,
            F0=Estimate(F0, "F(x₀), exact (eval mode)"),
            zeta2_x0=Estimate(k2[0], "(1/m) Σ_i ‖∇F_i(x₀) − ∇F(x₀)‖², exact"),
            zeta2_star=Estimate(k2[-1], "(1/m) Σ_i ‖∇F_i − ∇F‖² at the end of the reference "
                                "run (no minimiser is known)"),
            kappa2=(Estimate(0.0, "κ² = 0: split='shared', every worker samples all rows "
                             "(F_i = F), exact") if self.shared else
                    Estimate(max(k2), f"estimated: max over {where} of the exact (1/m) Σ_i "
                             "‖∇F_i(x) − ∇F(x)‖² (Cooperative SGD's κ², JMLR Theorem 2)",
                             max(k2) - min(k2), detail={"points": names, "values": k2})),
        )

    def sigma2_at(self, params: Params, batch_size: int = 1, worker: int | None = None) -> float:
        """Exact σ_i²(x)/b of worker i (eval mode), or the mean over workers (None)."""
        checks.integer("batch_size", batch_size, lo=1)
        if self.sampling == "full_shard":
            return 0.0
        s2, _ = self._moments({k: v.detach() for k, v in params.items()})
        if worker is None:
            return float(s2.mean()) / batch_size
        self._check_sample_args(worker, batch_size)
        return float(s2[worker]) / batch_size

    # -- reporting ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Plain data about the model, data and split (for reports)."""
        return {"model": type(self.module).__name__, "parameters": self.n_trainable,
                "buffers": sum(math.prod(self.param_shapes[k]) for k in self.buffer_names),
                "buffer_mode": self.buffers, "data": repr(self.data_info),
                "n_train": self.n, "n_test": int(self._x_test.shape[0]),
                "split": self.split if not isinstance(self.split, (list, tuple)) else "explicit",
                "shard_sizes": self.sizes, "label_skew_tv": self.split_info.get("tv"),
                "loss": self.loss_name, "sampling": self.sampling}

    def _repr_args(self) -> dict[str, Any]:
        if not hasattr(self, "n"):  # not fully built
            return {"m": self.m}
        split = self.split if not isinstance(self.split, (list, tuple)) else "explicit"
        return {"model": type(self.module).__name__, "data": self.data_info.name,
                "n": self.n, "m": self.m, "dim": self.dim, "split": split,
                "buffers": self.buffers}


# ---------------------------------------------------------------------------------------------
# the stacked gradient: vmap over workers of grad of functional_call
# ---------------------------------------------------------------------------------------------
def stacked_grad_factory(problem: ModuleProblem) -> Callable[..., Any]:
    """``(stacked_params, stacked_batch) -> (stacked_grads, per_worker_losses)`` for a
    :class:`ModuleProblem`: ``vmap`` over the worker axis of the train-mode loss through
    ``torch.func.functional_call`` on one stateless template module, then one reverse pass of
    the sum of the workers' losses (worker i's parameters only reach worker i's loss, so this
    is every worker's own gradient); the float buffers are a separate, vmapped input that
    BatchNorm updates in place — copies of the rows' own buffer entries (``buffers =
    "average"``) or the problem's private per-worker copies (``"local"``), written back into the
    rows. The gradient of the buffer entries is 0. Same gradients as
    ``vmap(grad_and_value(problem.loss))`` (tested)."""
    pr = problem
    tnames, bnames = pr.trainable_names, pr.buffer_names
    ac = _AUTOCAST[pr.autocast]

    def forward(tp: Params, bufs: Params, x: torch.Tensor) -> torch.Tensor:
        if ac is not None:
            with torch.autocast(device_type=x.device.type, dtype=ac):
                out = pr._call({**tp, **bufs}, x)
            return out.to(next(iter(tp.values())).dtype)
        return pr._call({**tp, **bufs}, x)

    # vmap of the forward only, then one reverse pass through the batched graph: the same
    # per-worker gradients as vmap(grad_and_value(loss)) (the workers do not interact), 20-25 %
    # faster on the digits CNN (CPU); a built-in loss is applied to the (m·B) outputs at once
    vfwd = vmap(forward, in_dims=(0, 0, 0))
    vloss = vmap(pr._loss_fn) if pr.loss_name not in LOSSES else None

    def vf(tp: Params, bufs: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = vfwd(tp, bufs, x)
        if vloss is not None:
            return vloss(out, y)
        m, b = out.shape[:2]
        return pr._per_sample(out.reshape(m * b, *out.shape[2:]),
                              y.reshape(m * b, *y.shape[2:])).view(m, b).mean(1)

    def module_vmap(params: Params, batch: Batch, out: Any = None, sgd_lr: Any = None
                    ) -> tuple[Params, torch.Tensor]:
        tp = {k: params[k] for k in tnames}
        r = next(iter(tp.values())).shape[0]
        # contiguous copies: BatchNorm's batching rule updates running statistics through a
        # reshape, which would not write through a strided view of the rows
        if pr.buffers == "local" and bnames:
            if pr._local is None or next(iter(pr._local.values())).shape[0] != r:
                pr._local = {k: params[k].clone() for k in bnames}
            bufs = pr._local
        else:
            bufs = {k: params[k].clone() for k in bnames}
        leaves = {k: v.detach().requires_grad_(True) for k, v in tp.items()}
        with pr._mode(True), torch.enable_grad():
            losses = vf(leaves, bufs, *batch)
            gs = torch.autograd.grad(losses.sum(), list(leaves.values()))
        grads = dict(zip(leaves, gs, strict=True))
        losses = losses.detach()
        res: Params = {}
        for k in params:
            if k in grads:
                res[k] = grads[k]
            else:
                z = pr._zeros.get((k, r))
                if z is None or z.dtype != params[k].dtype or z.device != params[k].device:
                    z = torch.zeros_like(params[k])
                    if not _is_transform_wrapped(z):
                        pr._zeros[(k, r)] = z
                res[k] = z
                params[k].copy_(bufs[k])  # the worker's new running statistics, into its row
        return res, losses

    return module_vmap


def _is_module_problem(problem: Any) -> bool:
    return isinstance(problem, ModuleProblem)


# the engine's gradient path for ModuleProblem (consulted by empirics.algorithm.grad_fn_for)
if not any(a is _is_module_problem or getattr(a, "__name__", "") == "_is_module_problem"
           for a, _ in fastgrads.BUILTIN):
    fastgrads.BUILTIN.append((_is_module_problem, stacked_grad_factory))
