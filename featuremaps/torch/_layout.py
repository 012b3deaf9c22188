"""Per-tensor layout changes between torch state dicts and featuremaps layers.

| featuremaps layer (role)  | torch tensor                          | featuremaps tensor              |
|---------------------------|---------------------------------------|---------------------------------|
| conv                      | Conv2d `(out, in/g, kh, kw)` (OIHW)   | `(kh, kw, in/g, out)` (HWIO)    |
| conv (transposed)         | ConvTranspose2d `(in, out/g, kh, kw)` | `(kh, kw, out/g, in)`           |
| dense                     | Linear `(out, in)`                    | `(in, out)`                     |
| dense after a flatten     | `(out, c·h·w)`, rows in (c, h, w)     | `(h·w·c, out)`, rows in (h, w, c) |
| anything else             | as is                                 | as is                           |

Both conv forms are the same transpose, (2, 3, 1, 0), applied to any 4-D `weight`.
"""
from __future__ import annotations

import numpy as np

from ..nn.graph import model_nodes
from ..nn.module import ShapeError

__all__ = ["from_torch", "to_torch", "dense_flatten_inputs"]


def from_torch(layer, kind: str, a: np.ndarray, maps) -> tuple[np.ndarray, str]:
    """(the featuremaps form of torch tensor `a`, the step as a log phrase or "")."""
    if kind != "weight":
        return a, ""
    if a.ndim == 4:  # a conv or a transposed conv (whatever its role)
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0)), f"OIHW {a.shape} → HWIO {a.transpose(2, 3, 1, 0).shape}"
    if layer.role == "dense" and a.ndim == 2:
        w = a.T  # (out, in) -> (in, out)
        if maps is None:
            return np.ascontiguousarray(w), f"Linear (out, in) {a.shape} → Dense (in, out) {w.shape}"
        h, wd, c = maps
        if h * wd * c != w.shape[0]:
            return np.ascontiguousarray(w), f"Linear (out, in) {a.shape} → Dense (in, out) {w.shape}"
        w = w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(w.shape)  # (c, h, w, out) -> (h, w, c, out)
        return np.ascontiguousarray(w), (f"Linear (out, in) {a.shape} → Dense (in, out) {w.shape}, rows permuted "
                                         f"from torch's (c, h, w) flatten order to (h, w, c) of maps {maps}")
    return a, ""


def to_torch(layer, kind: str, a: np.ndarray, maps) -> tuple[np.ndarray, str]:
    """The inverse of `from_torch`: (the torch form of featuremaps tensor `a`, the step)."""
    if kind != "weight":
        return a, ""
    if a.ndim == 4:
        return a.transpose(3, 2, 0, 1), "HWIO → OIHW"  # (KH, KW, I, O) -> (O, I, KH, KW)
    if layer.role == "dense" and a.ndim == 2:
        if maps is not None and int(np.prod(maps)) == a.shape[0]:
            h, wd, c = maps
            a = a.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(a.shape)  # (h, w, c, out) -> (c, h, w, out)
        return a.T, "Dense (in, out) → Linear (out, in)"
    return a, ""


def _shapes(model) -> dict:
    """Every value's per-example shape; {} for a model built without an input shape."""
    try:
        return model.node_shapes()
    except ShapeError:
        raise
    except ValueError:  # no input shape
        return {}


def dense_flatten_inputs(model) -> dict:
    """{"maps": Dense node → (h, w, c) of the maps its input flattens (h·w > 1), "ambiguous": Dense
    node → why its input's order is unknown (the flatten of a reshape or a permute: which order the
    torch side flattened cannot be told from the model)}."""
    shapes = _shapes(model)
    nodes = {n.name: n for n in model_nodes(model)}
    maps, ambiguous = {}, {}
    for n in nodes.values():
        if n.layer.role != "dense":
            continue
        src = nodes.get(n.inputs[0])
        while src is not None and src.layer.elementwise and src.layer.role != "dense":
            src = nodes.get(src.inputs[0])  # through Dropout and activations
        if src is None or len(src.inputs) != 1:
            continue
        if src.layer.spatial != "flatten":
            continue
        origin = nodes.get(src.inputs[0])
        if origin is not None and origin.layer.role == "shape":
            ambiguous[n.name] = f"the flatten {src.name!r} of {origin.name!r}, a reshape or permute of unknown origin"
            continue
        before = shapes.get(src.inputs[0])
        if before is not None and len(before) == 3 and before[0] * before[1] > 1:
            maps[n.name] = tuple(before)
    return {"maps": maps, "ambiguous": ambiguous}
