"""Which input maps feed which output maps of a conv layer, and the filters that connect them.

A conv layer with `C_in` input maps and `C_out` output maps has ONE 3-D kernel per output map,
`w[:, :, :, o]` (HWIO storage, see the formula in `featuremaps.functional.conv`). Which input maps
that kernel actually spans depends on how the layer is wired:

- full:       every output map sees every input map;
- groups g:   output map o sees only the `C_in / g` input maps of its group (block diagonal);
- depthwise:  groups == C_in, so output map o sees exactly input map `o // (C_out / C_in)`;
- table:      a boolean connection table `(C_in, C_out)` (LeNet-5's C3) says which pairs exist.

`connections(layer)` returns that wiring as a boolean `(C_in, C_out)` array;
`filters_for_output` / `filters_from_input` lay the kernels out over ALL input (or output) maps,
with zeros where there is no connection, so grouped and tabled layers read like full ones.

Every function also takes a model and a layer name in place of the layer: `connections(model, "C3")`,
`filters_for_output(model, "C3", o)`. In a `Graph` the input maps of a conv are those of the value
its node reads (`conv_source(model, name)`), not of the node listed before it; the number of
channels there is checked against the layer's `C_in`.
"""
from __future__ import annotations

import numpy as np

from ..nn.graph import model_nodes
from ..nn.module import layer_classes
from ..tensor import as_array

__all__ = ["connections", "filters_for_output", "filters_from_input", "fan_in", "fan_out", "is_conv", "conv_source"]


def is_conv(layer) -> bool:
    """True for a conv layer: its class's `role` is 'conv' (see `featuremaps.nn.Module`), so it has a
    4-D HWIO `.weight` (kh, kw, in/groups, out), `.stride`, `.padding`, `.dilation` and, optionally,
    `.groups` and a `.connections` table."""
    return getattr(layer, "role", None) == "conv"


def _describe(layer) -> str:
    return type(layer).__name__


def _check_conv(layer, op: str) -> None:
    if not is_conv(layer):
        kinds = ", ".join(c.__name__ for c in layer_classes(role="conv"))
        raise TypeError(f"{op}: layer must be a conv layer ({kinds}: a 4-D HWIO weight "
                        f"(kh, kw, in/groups, out) with stride, padding and dilation); "
                        f"received a {_describe(layer)}")


def _is_model(obj) -> bool:
    return callable(getattr(obj, "nodes", None))


def _conv_node(model, name, op: str):
    """The `Node` of conv layer `name` in `model`, its input's channels checked against the layer's."""
    if not isinstance(name, str):
        raise TypeError(f"{op}: with a model, the layer must be given by its name (str); received {name!r}")
    nodes = model_nodes(model)
    node = next((n for n in nodes if n.name == name), None)
    if node is None:
        raise ValueError(f"{op}: no layer named {name!r}; valid names: {', '.join(n.name for n in nodes)}")
    _check_conv(node.layer, op)
    shape = _value_shape(model, nodes, node.inputs[0])
    c_in = _channels(node.layer)[0]
    if shape is not None and shape[-1] != c_in:
        raise ValueError(f"{op}: layer {name!r} reads {node.inputs[0]!r}, which has {shape[-1]} channels "
                         f"(shape {shape}), but the layer expects C_in = {c_in}")
    return node


def _value_shape(model, nodes, value: str):
    """The per-example shape of `value` in `model` (nothing is run), or None when it cannot be known:
    an input without a shape, or a layer before it that cannot take its input."""
    given = model.input_shapes if hasattr(model, "input_shapes") else {"input": model.input_shape}
    shapes = {n: tuple(s) for n, s in given.items() if s is not None}
    for n in nodes:
        if value in shapes:
            break
        if any(i not in shapes for i in n.inputs):
            continue
        try:
            shapes[n.name] = tuple(n.layer.compute_output_shape(*[shapes[i] for i in n.inputs]))
        except ValueError:  # ShapeError: reported by the layer's own tools, not here
            continue
    return shapes.get(value)


def _target(obj, where: tuple, n_rest: int, op: str):
    """(conv layer, the other arguments) from `(layer, *rest)` or `(model, name, *rest)`."""
    if _is_model(obj):
        if len(where) != n_rest + 1:
            raise TypeError(f"{op}: with a model, give the layer's name{' and the map index' if n_rest else ''}; "
                            f"received {len(where)} more argument(s)")
        return _conv_node(obj, where[0], op).layer, where[1:]
    if len(where) != n_rest:
        raise TypeError(f"{op}: with a layer, give {'the map index' if n_rest else 'nothing else'}; "
                        f"received {len(where)} more argument(s)")
    _check_conv(obj, op)
    return obj, where


def conv_source(model, layer: str) -> str:
    """The name of the value conv layer `layer` reads: its node's input in a `Graph` (a graph input or
    another node), the layer before it (or "input") in a `Sequential`."""
    if not _is_model(model):
        raise TypeError(f"conv_source: model must be a featuremaps.nn.Sequential or Graph; received a "
                        f"{type(model).__name__}")
    return _conv_node(model, layer, "conv_source").inputs[0]


def _groups(layer) -> int:
    return int(getattr(layer, "groups", 1) or 1)


def _table(layer):
    t = getattr(layer, "connections", None)
    return None if t is None else np.asarray(t, dtype=bool)


def _channels(layer) -> tuple[int, int]:
    """(C_in, C_out) of a conv layer, from its attributes or, failing that, its weight."""
    w = as_array(layer.weight)
    c_in = getattr(layer, "in_channels", None)
    c_out = getattr(layer, "out_channels", None)
    c_in = int(c_in) if c_in is not None else w.shape[2] * _groups(layer)
    c_out = int(c_out) if c_out is not None else w.shape[3]
    return c_in, c_out


def connections(layer, *name) -> np.ndarray:
    """Boolean `(C_in, C_out)`: entry `[i, o]` is True when input map i feeds output map o.

    `connections(layer)` or `connections(model, name)`. Full layers give all True; grouped layers a
    block diagonal; depthwise layers one True per column; layers built with a connection table give
    (a copy of) that table.
    """
    layer, _ = _target(layer, name, 0, "connections")
    c_in, c_out = _channels(layer)
    table = _table(layer)
    if table is not None:
        if table.shape != (c_in, c_out):
            raise ValueError(f"connections: the layer's table has shape {table.shape} but the layer has "
                             f"{c_in} input and {c_out} output maps (expected ({c_in}, {c_out}))")
        return table.copy()
    g = _groups(layer)
    in_per, out_per = c_in // g, c_out // g
    # input map i belongs to group i // in_per, output map o to group o // out_per
    return (np.arange(c_in)[:, None] // in_per) == (np.arange(c_out)[None, :] // out_per)  # (c_in, c_out)


def _check_index(value, n: int, name: str, op: str, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int; received {value!r}")
    if not 0 <= value < n:
        raise ValueError(f"{op}: {name} must be in [0, {n - 1}] (the layer has {n} {what}); received {value}")
    return int(value)


def _local_input(layer, i: int, o: int) -> int:
    """Index along the weight's third axis that holds the filter from input map i to output map o."""
    c_in, c_out = _channels(layer)
    g = _groups(layer)
    return i - (o // (c_out // g)) * (c_in // g)


def filters_for_output(layer, *where) -> tuple[np.ndarray, list[int]]:
    """The kernel of output map `o` laid out over ALL input maps: `(kh, kw, C_in)`, zero where input
    map i is not connected to o, plus the sorted list of connected input maps.

    `filters_for_output(layer, o)` or `filters_for_output(model, name, o)`.
    For a grouped layer the group's `C_in / groups` filters `w[:, :, :, o]` are placed at their input
    maps' indices; for a tabled layer unconnected filters are zeroed whatever the weight holds there.
    """
    layer, (o,) = _target(layer, where, 1, "filters_for_output")
    c_in, c_out = _channels(layer)
    o = _check_index(o, c_out, "o", "filters_for_output", "output maps")
    w = as_array(layer.weight)
    conn = connections(layer)[:, o]  # (c_in,)
    connected = [int(i) for i in np.flatnonzero(conn)]
    out = np.zeros(w.shape[:2] + (c_in,), dtype=w.dtype)  # (kh, kw, c_in)
    for i in connected:  # loop over connected maps only
        out[:, :, i] = w[:, :, _local_input(layer, i, o), o]
    return out, connected


def filters_from_input(layer, *where) -> np.ndarray:
    """Every filter that reads input map `i`: `(kh, kw, C_out)`, zero for output maps not fed by i.

    `filters_from_input(layer, i)` or `filters_from_input(model, name, i)`."""
    layer, (i,) = _target(layer, where, 1, "filters_from_input")
    c_in, c_out = _channels(layer)
    i = _check_index(i, c_in, "i", "filters_from_input", "input maps")
    w = as_array(layer.weight)
    conn = connections(layer)[i]  # (c_out,)
    out = np.zeros(w.shape[:2] + (c_out,), dtype=w.dtype)  # (kh, kw, c_out)
    for o in np.flatnonzero(conn):
        out[:, :, o] = w[:, :, _local_input(layer, i, int(o)), o]
    return out


def fan_in(layer, *name) -> np.ndarray:
    """Number of input maps feeding each output map: `(C_out,)` ints (`fan_in(layer)` or `fan_in(model, name)`)."""
    layer, _ = _target(layer, name, 0, "fan_in")
    return connections(layer).sum(axis=0)


def fan_out(layer, *name) -> np.ndarray:
    """Number of output maps each input map feeds: `(C_in,)` ints (`fan_out(layer)` or `fan_out(model, name)`)."""
    layer, _ = _target(layer, name, 0, "fan_out")
    return connections(layer).sum(axis=1)
