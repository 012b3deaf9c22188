"""`Module`: the base class of layers and containers (parameters, buffers, state, config).

A module holds three ordered registries: parameters (Tensors with `requires_grad=True`, or None for
an absent bias), buffers (ndarrays such as BatchNorm's running statistics) and child modules.
Attributes of these kinds are registered on assignment, as in PyTorch, and reached as plain
attributes (`conv.weight`, `bn.running_mean`, `model.C3`).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import numpy as np

from ..tensor import Tensor

__all__ = ["Module", "ShapeError", "register", "from_config", "as_rng", "layer_classes", "ROLES"]

_REGISTRY: dict[str, type] = {}


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


class ShapeError(ValueError):
    """An input shape a layer cannot take (raised by `compute_output_shape`).

    `.kind` is the layer's class name, `.path` its dotted name inside a model (None when raised by
    the layer itself), `.got` the per-example input shape it received and `.needs` what it needs.
    """

    def __init__(self, kind: str, got: tuple, needs: str, path: str | None = None):
        self.kind, self.got, self.needs, self.path = kind, tuple(got), needs, path
        where = f"layer {path!r} ({kind})" if path else kind
        super().__init__(f"{where}: got input shape {_shape_text(self.got)}; needs {needs}")

    def within(self, name: str) -> "ShapeError":
        """The same error seen from a container that holds the layer under `name`."""
        return ShapeError(self.kind, self.got, self.needs, f"{name}.{self.path}" if self.path else name)


def register(cls: type) -> type:
    """Class decorator: make `cls` known to `from_config` under its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def layer_classes(**attrs) -> list[type]:
    """The registered module classes, in registration order, whose class attributes equal `attrs`:
    `layer_classes(role="conv")`, `layer_classes()` for all of them."""
    return [c for c in _REGISTRY.values() if all(getattr(c, k, None) == v for k, v in attrs.items())]


def from_config(config: dict) -> "Module":
    """Rebuild a module (with fresh weights) from `get_config()` output, nested containers included.

    Accepts the dict or its JSON text.
    """
    if isinstance(config, str):
        config = json.loads(config)
    if not isinstance(config, dict) or "class" not in config:
        raise ValueError(f"from_config: expected a dict with a 'class' key; received {config!r:.200}")
    name = config["class"]
    if name not in _REGISTRY:
        raise ValueError(f"from_config: unknown class {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_config(config)


def as_rng(rng, op: str) -> np.random.Generator:
    """A Generator from `rng`: a Generator (used as is), an int seed, or None (seed 0)."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"{op}: rng must be a numpy.random.Generator, an int seed or None; received {type(rng).__name__}")


#: The values of `Module.role`.
ROLES = ("conv", "dense", "pool", "activation", "norm", "shape", "merge", "other")


class Module:
    """Base class: subclasses set parameters/buffers/children in `__init__` and define `forward`.

    Subclasses that take constructor arguments implement `get_config()` (JSON-able, with the
    constructor's keyword arguments) and `_repr_args()` (the non-default ones); `from_config` calls
    `cls(**args)`.

    Four class attributes say what a layer is, so that the tools that read models (`summary`,
    `receptive_field`, `explain`, the report, the pictures) decide from them and never from class
    names; a new layer kind sets them in its own module and every tool handles it:

    - `role`, one of `ROLES`: 'conv' (a 4-D HWIO `weight`, `groups`/`connections`; the tools read
      its wiring with `featuremaps.inspect.connections`), 'dense', 'pool', 'activation', 'norm',
      'shape' (padding, flattening), 'merge' (several inputs) or 'other' (the default).
    - `spatial`: how the value at an output position depends on the input's positions. 'same': on
      the same position only (activations, BatchNorm, LRN, Dropout); 'window': on a kernel window
      (`kernel_size`, and `stride`, `padding`, `dilation` where the layer has them: stride defaults
      to the kernel, padding to 0 and dilation to 1); 'pad': on the position shifted by the layer's
      `padding` (ZeroPad2D); 'flatten': maps become one vector in (h, w, c) order; 'all': on every
      position (Dense, global pooling); None (the default): unknown, so the tools that trace
      positions stop at the layer.
    - `elementwise`: True when, in eval mode, each output value is a function of the input value at
      the same index alone (activations but Softmax, BatchNorm, Dropout).
    - `decomposition`: how `explain` writes one output value as a sum of terms. 'weighted_sum':
      `b[o] + Σ w·x` over a window of every connected input map ('window' layers, i.e. conv) or over
      the input vector ('all', i.e. dense); 'window_max': the largest value of the window of map o
      (the whole map when `spatial` is 'all'); 'window_mean': the mean of that window (divisor as in
      `F.avg_pool2d`, `count_include_pad` when the layer has it), times `weight[o]` plus `bias[o]`
      when the layer has per-map `weight` and `bias` (LeNet's subsampling); None (the default): not
      decomposed.

    Merge layers (role 'merge') also say how they combine their inputs, in `combine`: 'sum', 'product',
    'mean', 'max' or 'concat' (joined along the layer's `axis`); `explain` decomposes the sums, means
    and channel concatenations.
    """

    uses_rng = False  # True for modules that draw random numbers in forward (Dropout)
    role = "other"
    spatial: str | None = None
    elementwise = False
    decomposition: str | None = None
    combine: str | None = None

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # --- registration ---------------------------------------------------------------------------
    def register_parameter(self, name: str, value) -> None:
        """Register a parameter: an array (wrapped in a Tensor with requires_grad=True), a Tensor or None."""
        if value is not None and not isinstance(value, Tensor):
            value = Tensor(np.asarray(value), requires_grad=True)
        elif isinstance(value, Tensor) and not value.requires_grad:
            value.requires_grad = True
        self._parameters[name] = value

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = np.asarray(value)

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        if name in d["_parameters"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}.{name}: a parameter must be a Tensor or None; "
                                f"received {type(value).__name__}")
            self.register_parameter(name, value)
        elif name in d["_buffers"]:
            self.register_buffer(name, value)
        elif isinstance(value, Module):
            d["_modules"][name] = value
        else:
            if name in d["_modules"]:
                del d["_modules"][name]
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- calling ----------------------------------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward is not defined")

    # --- traversal --------------------------------------------------------------------------------
    def children(self) -> Iterator["Module"]:
        return iter(list(self._modules.values()))

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        return iter(list(self._modules.items()))

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """(dotted name, module) pairs: "" for this module, then its descendants depth-first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        return (m for _, m in self.named_modules())

    def named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, Tensor) for every parameter, e.g. ("C1.weight", ...); absent biases are skipped."""
        for prefix, mod in self.named_modules():
            for name, p in mod._parameters.items():
                if p is not None:
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, mod in self.named_modules():
            for name, b in mod._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), b

    def num_parameters(self) -> int:
        """Trainable parameter count. Weights held at zero by a connection table are not counted."""
        return sum(m._own_num_parameters() for m in self.modules())

    def _own_num_parameters(self) -> int:
        return sum(p.size for p in self._parameters.values() if p is not None)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # --- modes and randomness -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (Dropout active, BatchNorm uses batch statistics) here and below."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def set_rng(self, rng: np.random.Generator) -> "Module":
        """Give each randomness-consuming module its own Generator, `rng.spawn(1)[0]`, in `named_modules` order."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"set_rng: rng must be a numpy.random.Generator; received {type(rng).__name__}")
        for m in self.modules():
            if m.uses_rng:
                m.rng = rng.spawn(1)[0]
        return self

    def astype(self, dtype) -> "Module":
        """Convert every parameter and buffer to `dtype` in place (the Tensor objects are kept)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"astype: dtype must be a floating dtype; received {dtype}")
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None
            for k, b in m._buffers.items():
                if b.dtype.kind == "f":
                    m._buffers[k] = b.astype(dtype)
        return self

    def parameter_dtype(self, op: str = "parameter_dtype") -> np.dtype:
        """The one floating dtype of every parameter (float32 when there are none); a model that mixes
        dtypes raises a ValueError naming them (`op` names the caller)."""
        kinds = {p.data.dtype for p in self.parameters()}
        if len(kinds) > 1:
            raise ValueError(f"{op}: the model mixes parameter dtypes {sorted(map(str, kinds))}; convert it with "
                             "model.astype(np.float32) first")
        return kinds.pop() if kinds else np.dtype(np.float32)

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer by dotted name."""
        sd = {name: p.data.copy() for name, p in self.named_parameters()}
        sd.update((name, b.copy()) for name, b in self.named_buffers())
        return sd

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy `state` into the parameters and buffers, in place.

        Everything is validated first: missing keys (strict only), unexpected keys (strict only) and
        wrong shapes are all listed, by name, in one ValueError, and nothing is assigned.
        """
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict: state must be a dict of name → array; received {type(state).__name__}")
        targets: dict[str, np.ndarray] = {n: p.data for n, p in self.named_parameters()}
        targets.update(self.named_buffers())
        problems = []
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        arrays = {}
        for k, dst in targets.items():
            if k not in state:
                continue
            src = np.asarray(state[k].data if isinstance(state[k], Tensor) else state[k])
            if src.shape != dst.shape:
                problems.append(f"{k}: expected shape {dst.shape}, received {src.shape}")
            elif src.dtype.kind not in "biuf":
                problems.append(f"{k}: expected a numeric array, received dtype {src.dtype}")
            else:
                arrays[k] = src
        if problems:
            raise ValueError(f"load_state_dict ({type(self).__name__}): " + "; ".join(problems)
                             + ". Nothing was loaded.")
        for k, src in arrays.items():
            np.copyto(targets[k], src, casting="unsafe")

    # --- config and shapes --------------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-able constructor arguments plus "class" (no weights)."""
        return {"class": type(self).__name__}

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        args = {k: v for k, v in config.items() if k != "class"}
        return cls(**args)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Per-example output shape for a per-example `input_shape` (no batch dim), without running."""
        return tuple(input_shape)

    def _shape_error(self, input_shape, needs: str):
        raise ShapeError(type(self).__name__, tuple(input_shape), needs)

    def _check_rank(self, input_shape, ranks=(3,)) -> tuple:
        """Validate a per-example shape: a tuple of positive ints of one of `ranks`."""
        try:
            shape = tuple(int(s) for s in input_shape)
        except TypeError:
            raise TypeError(f"{type(self).__name__}.compute_output_shape: input_shape must be a tuple of ints "
                            f"without the batch dimension; received {input_shape!r}") from None
        if len(shape) not in ranks or any(s < 1 for s in shape):
            needs = " or ".join({1: "(F,)", 3: "(H, W, C)"}[r] for r in ranks)
            self._shape_error(shape, f"a per-example shape {needs} of positive sizes (no batch dimension)")
        return shape

    # --- repr -------------------------------------------------------------------------------------
    def _repr_args(self) -> list[str]:
        """The constructor arguments that differ from their defaults, as text."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._repr_args())})"

    def _repr_html_(self) -> str:
        """The layer list for Jupyter: each layer's constructor, output shape (when the model knows
        its input shape) and parameter count; see `featuremaps.inspect.summary.model_html`."""
        from ..inspect.summary import model_html  # inspect imports nn, so not at the top

        return model_html(self)


def kwarg_repr(name: str, value, default) -> list[str]:
    """`[f"{name}={value}"]` when `value` differs from `default`, else []."""
    return [] if value == default else [f"{name}={value!r}"]


def tupled(value):
    """Lists → tuples recursively (the inverse of `featuremaps._json.jsonable` for constructor arguments)."""
    if isinstance(value, (tuple, list)):
        return tuple(tupled(v) for v in value)
    return value
