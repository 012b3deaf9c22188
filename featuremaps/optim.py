"""Optimisers: SGD (momentum, Nesterov), Adam and AdamW with PyTorch's update rules.

Each optimiser holds a list of parameter Tensors and updates their `.data` in place from their
`.grad` (parameters whose `.grad` is None are skipped, as in PyTorch). With `g` the gradient,
`p` the parameter and `t` the per-parameter step count (starting at 1):

- SGD:   `g += wd·p`; with momentum `b = μ·b + g` (b starts at 0, so the first `b = g`);
         Nesterov uses `g + μ·b`, otherwise `b`; then `p -= lr·(that)`.
- Adam:  `g += wd·p`; `m = β1·m + (1-β1)·g`; `v = β2·v + (1-β2)·g²`;
         `p -= lr/(1-β1ᵗ) · m / (√v / √(1-β2ᵗ) + eps)`.
- AdamW: `p *= 1 - lr·wd` first (decoupled decay), then the Adam update without `wd` in `g`.

`state_dict()` is a flat dict of ndarrays (no Python objects), so it can go straight into a
checkpoint's npz: `lr` (0-d float64), `step` (int64, one count per parameter) and the buffers
named `<buffer>.<parameter index>`, e.g. `momentum_buffer.0`, `exp_avg.3`, `exp_avg_sq.3`.
`get_config()` is the JSON-able name + hyper-parameters.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .functional import accel
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get", "names"]


def _check_float(name: str, value: Any, *, owner: str, minimum: float = 0.0, below: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a number; received {value!r}") from None
    if not np.isfinite(v) or v < minimum or (below is not None and v >= below):
        rng = f"[{minimum}, {below})" if below is not None else f">= {minimum}"
        raise ValueError(f"{owner}: {name} must be a finite number {rng}; received {value!r}")
    return v


class Optimizer:
    """Base class: holds the parameters, the learning rate, per-parameter step counts and buffers.

    Subclasses name their per-parameter buffers in `buffers` and implement `_update(i, p, g)`.
    """

    name = "optimizer"
    buffers: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor], lr: float):
        params = list(params)
        if params and isinstance(params[0], tuple):  # accept model.named_parameters()
            params = [p for _, p in params]
        if not params:
            raise ValueError(f"{type(self).__name__}: params is empty; pass model.parameters()")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: params[{i}] must be a Tensor; received {type(p).__name__}")
            if p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: params[{i}] must have a floating dtype; received {p.dtype}")
        self.params: list[Tensor] = params
        self.lr = _check_float("lr", lr, owner=type(self).__name__)
        self.steps = np.zeros(len(params), dtype=np.int64)
        self.state: dict[str, list[np.ndarray]] = {
            b: [np.zeros_like(p.data) for p in params] for b in self.buffers}

    # --- the update -------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Forget the gradients (set every parameter's `.grad` to None)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = np.asarray(p.grad)
            if g.shape != p.shape:
                raise ValueError(f"{self.name}: params[{i}].grad has shape {g.shape}; expected {p.shape}")
            self.steps[i] += 1
            self._update(i, p.data, g.astype(p.dtype, copy=False))

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scratch(self, i: int, p: np.ndarray) -> np.ndarray:
        """A reusable temporary shaped like parameter i (fresh allocations are slow; not state)."""
        if not hasattr(self, "_tmp"):
            self._tmp: dict[int, np.ndarray] = {}
        s = self._tmp.get(i)
        if s is None or s.shape != p.shape or s.dtype != p.dtype:
            s = self._tmp[i] = np.empty_like(p)
        return s

    # --- config and state -------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - abstract

    def get_config(self) -> dict[str, Any]:
        """JSON-able `{"name": ..., **hyper-parameters}`; `get(**config)` rebuilds the optimiser."""
        return {"name": self.name, "lr": self.lr, **self.hyperparameters()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of `lr`, the step counts and every buffer, as a flat name → ndarray dict."""
        sd = {"lr": np.array(self.lr, dtype=np.float64), "step": self.steps.copy()}
        for b in self.buffers:
            for i, arr in enumerate(self.state[b]):
                sd[f"{b}.{i}"] = arr.copy()
        return sd

    def _expected_shapes(self) -> dict[str, tuple]:
        shapes = {"lr": (), "step": (len(self.params),)}
        for b in self.buffers:
            for i, p in enumerate(self.params):
                shapes[f"{b}.{i}"] = p.shape
        return shapes

    def check_state_dict(self, sd: dict[str, Any]) -> None:
        """Raise a ValueError listing the missing, unexpected and wrong-shaped entries of `sd` by
        name if it does not fit this optimiser; change nothing."""
        expected = self._expected_shapes()
        missing = [k for k in expected if k not in sd]
        unexpected = [k for k in sd if k not in expected]
        wrong = [f"{k} (expected {expected[k]}, received {np.shape(sd[k])})"
                 for k in expected if k in sd and tuple(np.shape(sd[k])) != tuple(expected[k])]
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append("missing: " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected: " + ", ".join(unexpected))
            if wrong:
                parts.append("wrong shape: " + ", ".join(wrong))
            raise ValueError(f"{self.name}.load_state_dict: the state does not fit this optimiser "
                             f"({len(self.params)} parameters); " + "; ".join(parts))

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore `state_dict()` output. Everything is checked first (`check_state_dict`); on any
        mismatch nothing is changed."""
        self.check_state_dict(sd)
        lr = float(np.asarray(sd["lr"]))
        self.lr = _check_float("lr", lr, owner=self.name)
        self.steps = np.asarray(sd["step"]).astype(np.int64).copy()
        for b in self.buffers:
            self.state[b] = [np.array(sd[f"{b}.{i}"], dtype=p.dtype) for i, p in enumerate(self.params)]

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    `SGD(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0)`; the rule is in the module
    docstring and equals `torch.optim.SGD` with `dampening=0`.
    """

    name = "sgd"

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.momentum = _check_float("momentum", momentum, owner="SGD")
        self.nesterov = bool(nesterov)
        self.weight_decay = _check_float("weight_decay", weight_decay, owner="SGD")
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0; received momentum=0")
        self.buffers = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _update(self, i, p, g):
        if self.momentum and not self.nesterov and not self.weight_decay:
            buf = self.state["momentum_buffer"][i]
            fast = accel.kernels(p, g, buf)
            if (fast is not None and p.flags.c_contiguous and g.flags.c_contiguous and buf.flags.c_contiguous):
                t = p.dtype.type  # NumPy rounds the Python floats to the arrays' dtype too
                fast.sgd_momentum(p, g, buf, t(self.momentum), t(self.lr))  # the same steps in one pass
                return
        s = self._scratch(i, p)
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = self.state["momentum_buffer"][i]
            buf *= self.momentum
            buf += g
            if self.nesterov:  # g + μ·b
                np.multiply(buf, self.momentum, out=s)
                s += g
                g = s
            else:
                g = buf
        np.multiply(g, self.lr, out=s)
        p -= s


class Adam(Optimizer):
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient, as `torch.optim.Adam`.

    `Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)`.
    """

    name = "adam"
    buffers = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        owner = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: betas must be a pair of numbers; received {betas!r}") from None
        self.betas = (_check_float("betas[0]", b1, owner=owner, below=1.0),
                      _check_float("betas[1]", b2, owner=owner, below=1.0))
        self.eps = _check_float("eps", eps, owner=owner)
        self.weight_decay = _check_float("weight_decay", weight_decay, owner=owner)
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _update(self, i, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                p *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        t = int(self.steps[i])
        m, v = self.state["exp_avg"][i], self.state["exp_avg_sq"][i]
        s = self._scratch(i, p)
        np.subtract(g, m, out=s)  # m += (1 - β1)·(g - m)
        s *= 1 - b1
        m += s
        v *= b2  # v = β2·v + (1 - β2)·g²
        np.multiply(g, g, out=s)
        s *= 1 - b2
        v += s
        step_size = self.lr / (1 - b1 ** t)
        np.sqrt(v, out=s)  # denom = √v / √(1 - β2ᵗ) + eps
        s /= math.sqrt(1 - b2 ** t)
        s += self.eps
        np.divide(m, s, out=s)  # p -= step_size · m / denom
        s *= step_size
        p -= s


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`.

    `AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)`.
    """

    name = "adamw"
    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


_REGISTRY = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def names() -> list[str]:
    """The optimiser names `get` accepts."""
    return list(_REGISTRY)


def get(name: str, params, lr: float | None = None, **kwargs) -> Optimizer:
    """Build an optimiser by name (`sgd`, `adam`, `adamw`); `lr=None` uses the class default
    (SGD has none and needs one). Unknown names raise a ValueError listing the valid ones."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(_REGISTRY)}")
    cls = _REGISTRY[key]
    if lr is None:
        if cls is SGD:
            raise ValueError("optimizer 'sgd' needs a learning rate (lr); received none")
        return cls(params, **kwargs)
    return cls(params, lr, **kwargs)
