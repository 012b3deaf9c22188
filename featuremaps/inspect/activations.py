"""Run one input through a `Sequential` and keep what every layer produced.

`activations(model, x)` is the engine's own forward pass, layer by layer (eval mode, no tape), so
anything that inspects a model — `explain`, the pictures, the report — reads the same numbers the
model computes when it predicts.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..tensor import as_array, no_grad

__all__ = ["LayerActivation", "activations", "resolve_layer", "layer_names", "as_single_input"]


class LayerActivation(NamedTuple):
    """What one layer produced for one input: `array` is `(H, W, C)` for maps or `(F,)` for vectors."""
    name: str
    kind: str
    array: np.ndarray


def _layers(model, op: str) -> list[tuple[str, object]]:
    """`(name, layer)` pairs of a Sequential's top-level layers, in order."""
    named = getattr(model, "named_children", None)
    pairs = None
    if callable(named):
        pairs = list(named())
    elif hasattr(model, "named_modules"):
        pairs = [(n, m) for n, m in model.named_modules() if n and "." not in n]
    if pairs is None:
        raise TypeError(f"{op}: model must be a featuremaps.nn.Sequential; received a {type(model).__name__}")
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


def _run(model, x: np.ndarray, upto: int | None = None) -> list[LayerActivation]:
    """The input and the outputs of layers 0..`upto` (all layers when None)."""
    out = [LayerActivation("input", "input", x[0])]
    h = x
    was_training = getattr(model, "training", False)
    model.eval()
    layers = _layers(model, "activations")
    try:
        with no_grad():
            for name, layer in layers[: None if upto is None else upto + 1]:
                h = as_array(layer(h))
                out.append(LayerActivation(name, type(layer).__name__, h[0]))
    finally:
        if was_training:
            model.train()
    return out


def activations(model, x) -> list[LayerActivation]:
    """Run one input through `model` (eval mode, no tape) and return what every layer produced.

    The list starts with `LayerActivation('input', 'input', x)` and then has one entry per layer in
    order: `(name, kind, array)` with `kind` the layer's class name and `array` the per-example
    output, `(H, W, C)` for maps or `(F,)` for vectors (the batch axis is dropped).
    `x` is one image `(H, W, C)` or a batch of one `(1, H, W, C)`.
    """
    return _run(model, as_single_input(model, x, "activations"))

