"""The deeplearning.net Theano tutorial's LeNet ("Convolutional Neural Networks (LeNet)") as the zoo's `lenet`.

The tutorial builds, for a batch reshaped to `(batch, 1, 28, 28)` (NCHW):
- `layer0`, `layer1`: `LeNetConvPoolLayer`, `tanh(pool_2d(conv2d(x, W), (2, 2), ignore_border=True) + b)`
  with `W` `(n_out, n_in, 5, 5)` (20 maps, then 50) and `b` `(n_out,)`. Theano's `conv2d` flips the
  kernel (a true convolution, `filter_flip=True`);
- `layer2`: `HiddenLayer`, `tanh(flatten(layer1.output) · W + b)`, `W` `(800, 500)`; the flatten of
  Theano's `(50, 4, 4)` maps is in (c, h, w) order;
- `layer3`: `LogisticRegression`, `softmax(h · W + b)`, `W` `(500, 10)`.

featuremaps' `lenet` is conv1 → pool1 → tanh, conv2 → pool2 → tanh, flatten, fc1 → tanh, fc2 (logits:
apply a softmax for the tutorial's `p_y_given_x`). The tutorial adds `b` after the pooling; a
per-map constant commutes with a max, so it is conv1's bias. Three conversions are made, and
logged in `model.import_log`: each kernel flipped and OIHW → HWIO (`layouts.flip_kernels`,
`layouts.oihw_to_hwio`), and fc1's rows permuted from (c, h, w) to (h, w, c) flatten order
(`layouts.flatten_permutation`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import layouts, models

__all__ = ["lenet_from_params", "TUTORIAL_SHAPES"]

#: The tutorial's parameter shapes, by layer: (W, b).
TUTORIAL_SHAPES = {"layer0": ((20, 1, 5, 5), (20,)), "layer1": ((50, 20, 5, 5), (50,)),
                   "layer2": ((800, 500), (500,)), "layer3": ((500, None), (None,))}
_LAYERS = ("layer0", "layer1", "layer2", "layer3")
_OP = "lenet_from_params"


def _from_sequence(params) -> tuple[dict, str]:
    arrays = list(params)
    if len(arrays) != 8:
        raise ValueError(f"{_OP}: params as a list must hold 8 arrays (W and b of 4 layers); received {len(arrays)}")
    if np.ndim(arrays[0]) == 4:  # layer order: layer0.W, layer0.b, ..., layer3.b
        order, how = _LAYERS, "in layer order (layer0 first)"
    else:  # the tutorial's `params = layer3.params + layer2.params + layer1.params + layer0.params`
        order, how = _LAYERS[::-1], "in the tutorial's params order (layer3 first)"
    return {name: (arrays[2 * i], arrays[2 * i + 1]) for i, name in enumerate(order)}, how


def _from_mapping(params: Mapping) -> tuple[dict, str]:
    out = {}
    for name in _LAYERS:
        if name in params:
            v = params[name]
            out[name] = (v["W"], v["b"]) if isinstance(v, Mapping) else tuple(v)
        elif f"{name}.W" in params and f"{name}.b" in params:
            out[name] = (params[f"{name}.W"], params[f"{name}.b"])
        else:
            raise ValueError(f"{_OP}: params has no {name!r} (a (W, b) pair or {{'W', 'b'}}) nor '{name}.W' and "
                             f"'{name}.b'; received keys {sorted(map(str, params))}")
    return out, "by layer name"


def _shape_text(want) -> str:
    return "(" + ", ".join("n_classes" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"


def _checked(layers: dict) -> int:
    """Check the arrays against the tutorial's shapes (all problems in one error); the number of
    classes, from layer3's W."""
    problems = []
    for name in _LAYERS:
        pair = layers[name]
        if len(pair) != 2:
            raise ValueError(f"{_OP}: {name} must be a (W, b) pair; received {len(pair)} arrays")
        for what, arr, want in zip("Wb", pair, TUTORIAL_SHAPES[name]):
            a = np.asarray(arr)
            if a.dtype.kind not in "biuf":
                problems.append(f"{name}.{what}: expected a numeric array, received dtype {a.dtype}")
            elif a.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, a.shape)):
                problems.append(f"{name}.{what}: expected shape {_shape_text(want)}, received {a.shape}")
    w3, b3 = (np.shape(a) for a in layers["layer3"])
    if not problems and b3 != w3[1:]:
        problems.append(f"layer3.b: expected shape {w3[1:]} to match layer3.W {w3}, received {b3}")
    if problems:
        raise ValueError(f"{_OP}: the zoo's lenet has the tutorial's default sizes (nkerns 20, 50; 800 → 500 → "
                         f"n_classes): " + "; ".join(problems) + ". Nothing was loaded.")
    return int(w3[1])


def lenet_from_params(params, *, dtype=None):
    """The zoo's `lenet` (`featuremaps.models.get("lenet")`) holding the Theano tutorial's weights.

    `params` is one of:
    - a list of 8 arrays: the tutorial's own `params` list (`layer3.params + layer2.params +
      layer1.params + layer0.params`, so `[W3, b3, W2, b2, W1, b1, W0, b0]`), or the same in layer
      order `[W0, b0, ..., W3, b3]` (told apart by the first array: 4-D is layer0's W);
    - a mapping with keys "layer0".."layer3", each a `(W, b)` pair or `{"W": ..., "b": ...}`, or
      flat keys "layer0.W", "layer0.b", ...
    Shapes are the tutorial's (module docstring); `n_classes` comes from layer3's W. The model is in
    `dtype` (default: the parameters' floating dtype, float32 for integers), in eval mode, and its
    `import_log` lists every conversion.
    """
    if isinstance(params, Mapping):
        layers, how = _from_mapping(params)
    elif isinstance(params, (list, tuple)):
        layers, how = _from_sequence(params)
    else:
        raise TypeError(f"{_OP}: params must be a list of 8 arrays or a mapping by layer name; "
                        f"received {type(params).__name__}")
    n_classes = _checked(layers)
    arrays = [np.asarray(a) for pair in layers.values() for a in pair]
    dt = np.dtype(dtype) if dtype is not None else np.result_type(*arrays, np.float32)
    if dt.kind != "f":
        raise TypeError(f"{_OP}: dtype must be a floating dtype; received {dt}")
    model = models.get("lenet", num_classes=n_classes).astype(dt)
    (w0, b0), (w1, b1), (w2, b2), (w3, b3) = (layers[n] for n in _LAYERS)
    perm = layouts.flatten_permutation(4, 4, 50, source="CHW", target="HWC")
    state = {"conv1.weight": layouts.oihw_to_hwio(layouts.flip_kernels(w0, "OIHW")), "conv1.bias": b0,
             "conv2.weight": layouts.oihw_to_hwio(layouts.flip_kernels(w1, "OIHW")), "conv2.bias": b1,
             "fc1.weight": np.asarray(w2)[perm], "fc1.bias": b2, "fc2.weight": w3, "fc2.bias": b3}
    model.load_state_dict(state)
    model.import_log = [
        f"theano: parameters read {how}; model dtype {dt.name}",
        "conv1 ← layer0: W (20, 1, 5, 5) flipped (Theano conv2d is a true convolution, filter_flip=True) "
        "and OIHW → HWIO; b is the conv bias (added after the max-pool in the tutorial: the same)",
        "conv2 ← layer1: W (50, 20, 5, 5) flipped and OIHW → HWIO; b is the conv bias",
        "fc1 ← layer2 (HiddenLayer): W (800, 500) rows permuted from Theano's (c, h, w) flatten of (50, 4, 4) "
        "to featuremaps' (h, w, c) of (4, 4, 50)",
        f"fc2 ← layer3 (LogisticRegression): W (500, {n_classes}) as is; featuremaps gives logits, the tutorial "
        "softmax(logits)",
    ]
    return model.eval()
