"""Run one input through a `Sequential` or a `Graph` and keep what every layer produced.

`activations(model, x)` is the engine's own forward pass, layer by layer (eval mode, no tape), so
anything that inspects a model — `explain`, the pictures, the report — reads the same numbers the
model computes when it predicts.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..nn.graph import input_names, model_nodes
from ..tensor import as_array, no_grad

__all__ = ["LayerActivation", "activations", "resolve_layer", "layer_names", "as_single_input", "as_model_input"]


class LayerActivation(NamedTuple):
    """What one layer produced for one input: `array` is `(H, W, C)` for maps or `(F,)` for vectors."""
    name: str
    kind: str
    array: np.ndarray


def _layers(model, op: str) -> list[tuple[str, object]]:
    """`(name, layer)` pairs of a Sequential's top-level layers, or a Graph's nodes, in execution order."""
    named = getattr(model, "named_children", None)
    pairs = None
    if callable(named):
        pairs = list(named())
    elif hasattr(model, "named_modules"):
        pairs = [(n, m) for n, m in model.named_modules() if n and "." not in n]
    if pairs is None:
        raise TypeError(f"{op}: model must be a featuremaps.nn.Sequential or Graph; received a {type(model).__name__}")
    return [(str(n), m) for n, m in pairs]


def layer_names(model) -> list[str]:
    """Names of the model's layers in order (e.g. `['C1', 'C1_act', 'S2', ...]`)."""
    return [n for n, _ in _layers(model, "layer_names")]


def resolve_layer(model, name, *, op: str = "resolve_layer"):
    """The layer called `name` in `model` (a top-level name like `'C3'`; an int picks by position).

    Unknown names raise a ValueError listing the valid ones (`op` names the caller in the message).
    """
    layers = _layers(model, op)
    names = [n for n, _ in layers]
    if isinstance(name, (int, np.integer)) and not isinstance(name, (bool, np.bool_)):
        if not -len(layers) <= name < len(layers):
            raise ValueError(f"{op}: layer index must be in [0, {len(layers) - 1}]; received {name}")
        return layers[int(name)][1]
    if not isinstance(name, str):
        raise TypeError(f"{op}: layer must be a layer name (str); received {name!r}")
    for n, m in layers:
        if n == name:
            return m
    raise ValueError(f"{op}: no layer named {name!r}; valid names: {', '.join(names)}")


def as_single_input(model, x, op: str) -> np.ndarray:
    """`x` as a batch of one `(1, H, W, C)` floating array, checked against `model.input_shape`.

    Accepts one image `(H, W, C)`, a batch of one `(1, H, W, C)`, and — for one-channel models — a
    plain `(H, W)` image. Integer images become float32; float32/float64 keep their dtype.
    """
    arr = as_array(x)
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: x must be a numeric array (one image (H, W, C) or a batch of one); "
                        f"received {type(x).__name__}")
    expected = getattr(model, "input_shape", None)
    if expected is not None:
        expected = tuple(int(n) for n in expected)
        if arr.shape == expected:
            arr = arr[None]  # (1, *expected)
        elif len(expected) == 3 and expected[2] == 1 and arr.shape == expected[:2]:
            arr = arr[None, :, :, None]  # (1, h, w, 1)
        elif arr.ndim == len(expected) + 1 and arr.shape[1:] == expected and arr.shape[0] != 1:
            raise ValueError(f"{op}: x must be ONE input {expected} or a batch of one {(1,) + expected}; "
                             f"received a batch of {arr.shape[0]} (shape {arr.shape})")
        elif arr.shape != (1,) + expected:
            raise ValueError(f"{op}: x must have shape {expected} (one input) or {(1,) + expected} "
                             f"(a batch of one) for this model; received shape {arr.shape}")
    elif arr.ndim == 3:
        arr = arr[None]  # (1, h, w, c)
    elif arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"{op}: x must be one image (H, W, C) or a batch of one (1, H, W, C); "
                         f"received shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return arr


def _input_entries(model, x) -> list[LayerActivation]:
    """The model's input(s) as entries: "input" for a Sequential, each graph input by name."""
    if isinstance(x, dict):
        return [LayerActivation(n, "input", a[0]) for n, a in x.items()]
    return [LayerActivation(input_names(model)[0], "input", x[0])]


def _run(model, x, upto: int | None = None) -> list[LayerActivation]:
    """The input(s) and the outputs of layers 0..`upto` (all layers when None), in execution order.

    `x` is a batch of one, or for a graph with several inputs a dict name → batch of one."""
    out = _input_entries(model, x)
    was_training = getattr(model, "training", False)
    model.eval()
    nodes = model_nodes(model)
    env = {e.name: e.array[None] for e in out}  # (1, ...) per value
    try:
        with no_grad():
            for node in nodes[: None if upto is None else upto + 1]:
                env[node.name] = h = as_array(node.layer(*[env[i] for i in node.inputs]))
                out.append(LayerActivation(node.name, type(node.layer).__name__, h[0]))
    finally:
        if was_training:
            model.train()
    return out


def as_model_input(model, x, op: str):
    """`as_single_input` for each input: a batch of one, or for a graph with several inputs a dict
    name → batch of one (`x` must then be a dict with one array per input)."""
    names = input_names(model)
    if len(names) == 1:
        return as_single_input(model, x, op)
    if not isinstance(x, dict) or sorted(x) != sorted(names):
        got = sorted(x) if isinstance(x, dict) else type(x).__name__
        raise ValueError(f"{op}: this graph has inputs {names}: x must be a dict with one array for each; "
                         f"received {got}")
    shapes = model.input_shapes
    return {n: as_single_input(_Shaped(shapes[n]), x[n], f"{op} (input {n!r})") for n in names}


class _Shaped:
    """Stands for a model with one input of this shape, for `as_single_input`."""

    def __init__(self, input_shape):
        self.input_shape = input_shape


def activations(model, x) -> list[LayerActivation]:
    """Run one input through `model` (eval mode, no tape) and return what every layer produced.

    The list starts with `LayerActivation('input', 'input', x)` (for a Graph: one entry per graph
    input, named as in the graph) and then has one entry per layer (graph node) in execution order:
    `(name, kind, array)` with `kind` the layer's class name and `array` the per-example output,
    `(H, W, C)` for maps or `(F,)` for vectors (the batch axis is dropped).
    `x` is one image `(H, W, C)` or a batch of one `(1, H, W, C)`; for a graph with several inputs, a
    dict name → one input each.
    """
    return _run(model, as_model_input(model, x, "activations"))

