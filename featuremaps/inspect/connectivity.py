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
"""
from __future__ import annotations

import numpy as np

from ..nn.module import layer_classes
from ..tensor import as_array

__all__ = ["connections", "filters_for_output", "filters_from_input", "fan_in", "fan_out", "is_conv"]


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


def connections(layer) -> np.ndarray:
    """Boolean `(C_in, C_out)`: entry `[i, o]` is True when input map i feeds output map o.

    Full layers give all True; grouped layers a block diagonal; depthwise layers one True per
    column; layers built with a connection table give (a copy of) that table.
    """
    _check_conv(layer, "connections")
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


def filters_for_output(layer, o: int) -> tuple[np.ndarray, list[int]]:
    """The kernel of output map `o` laid out over ALL input maps: `(kh, kw, C_in)`, zero where input
    map i is not connected to o, plus the sorted list of connected input maps.

    For a grouped layer the group's `C_in / groups` filters `w[:, :, :, o]` are placed at their input
    maps' indices; for a tabled layer unconnected filters are zeroed whatever the weight holds there.
    """
    _check_conv(layer, "filters_for_output")
    c_in, c_out = _channels(layer)
    o = _check_index(o, c_out, "o", "filters_for_output", "output maps")
    w = as_array(layer.weight)
    conn = connections(layer)[:, o]  # (c_in,)
    connected = [int(i) for i in np.flatnonzero(conn)]
    out = np.zeros(w.shape[:2] + (c_in,), dtype=w.dtype)  # (kh, kw, c_in)
    for i in connected:  # loop over connected maps only
        out[:, :, i] = w[:, :, _local_input(layer, i, o), o]
    return out, connected


def filters_from_input(layer, i: int) -> np.ndarray:
    """Every filter that reads input map `i`: `(kh, kw, C_out)`, zero for output maps not fed by i."""
    _check_conv(layer, "filters_from_input")
    c_in, c_out = _channels(layer)
    i = _check_index(i, c_in, "i", "filters_from_input", "input maps")
    w = as_array(layer.weight)
    conn = connections(layer)[i]  # (c_out,)
    out = np.zeros(w.shape[:2] + (c_out,), dtype=w.dtype)  # (kh, kw, c_out)
    for o in np.flatnonzero(conn):
        out[:, :, o] = w[:, :, _local_input(layer, i, int(o)), o]
    return out


def fan_in(layer) -> np.ndarray:
    """Number of input maps feeding each output map: `(C_out,)` ints."""
    _check_conv(layer, "fan_in")
    return connections(layer).sum(axis=0)


def fan_out(layer) -> np.ndarray:
    """Number of output maps each input map feeds: `(C_in,)` ints."""
    _check_conv(layer, "fan_out")
    return connections(layer).sum(axis=1)
