"""Small helpers shared by the picture functions: reading a conv layer through `featuremaps.inspect`."""
from __future__ import annotations

import numpy as np

from featuremaps.inspect.connectivity import is_conv


def check_conv(layer, fn: str) -> None:
    if not is_conv(layer):
        raise TypeError(
            f"{fn}: layer must be a conv layer (role 'conv', a 4-D HWIO .weight); received {type(layer).__name__}"
        )


def full_kernels(layer) -> tuple[np.ndarray, np.ndarray]:
    """(kernels (kh, kw, C_in, C_out) with zeros where unconnected, connections (C_in, C_out) bool)."""
    from featuremaps.inspect import connections, filters_for_output

    conn = np.asarray(connections(layer), dtype=bool)
    kernels = np.stack([np.asarray(filters_for_output(layer, o)[0]) for o in range(conn.shape[1])], axis=-1)
    return kernels, conn  # (kh, kw, C_in, C_out), (C_in, C_out)


def pattern(layer, conn: np.ndarray) -> str:
    """How the layer connects its maps, in words: full, grouped (groups=g), depthwise or table."""
    c_in, c_out = conn.shape
    groups = int(getattr(layer, "groups", 1) or 1)
    if getattr(layer, "connections", None) is not None:
        return "connection table"
    if conn.all():
        return "full"
    if groups == c_in and groups > 1:
        mult = c_out // c_in
        return "depthwise" + (f" (×{mult} per map)" if mult > 1 else "")
    return f"grouped (groups={groups})"


def resolve(layer, model, fn: str):
    """`(layer, node name or None, the names it reads)` for a layer, or for the name of a node of
    `model` (a Graph or a Sequential, whose nodes name their inputs)."""
    if not isinstance(layer, str):
        return layer, None, []
    if model is None:
        raise TypeError(f"{fn}: layer {layer!r} is a node name, so model= must be the Graph or Sequential "
                        "that holds it; received model=None")
    from featuremaps.nn.graph import model_nodes

    nodes = {n.name: n for n in model_nodes(model)}
    if layer not in nodes:
        raise ValueError(f"{fn}: no node named {layer!r}; valid names: {', '.join(nodes)}")
    node = nodes[layer]
    return node.layer, node.name, list(node.inputs)


def layer_name(layer, name: str | None) -> str:
    return name or getattr(layer, "name", None) or type(layer).__name__
