"""Connection tables: which input maps each output map of a convolution sums over.

A table is a bool array of shape `(C_in, C_out)`; `table[c, n]` is True when output map n reads
input map c (the "X" marks of LeCun et al. 1998, Table I, with input maps as rows and output maps
as columns). `Conv2D(..., connections=table)` uses it: output map n sums over the input maps
in column n only (the set C(o) of the conv formula in `featuremaps.functional.conv`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["full", "one_to_one", "random", "groups", "lenet5_c3", "check", "fan_in", "links"]


def _count(value, name: str, op: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int; received {value!r}")
    if value < minimum:
        raise ValueError(f"{op}: {name} must be ≥ {minimum}; received {value}")
    return int(value)


def full(cin: int, cout: int) -> np.ndarray:
    """Every output map reads every input map (an ordinary convolution)."""
    return np.ones((_count(cin, "cin", "tables.full"), _count(cout, "cout", "tables.full")), dtype=bool)


def one_to_one(c: int) -> np.ndarray:
    """Output map n reads input map n only (a depthwise convolution)."""
    return np.eye(_count(c, "c", "tables.one_to_one"), dtype=bool)


def random(cin: int, cout: int, fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """Each output map reads exactly `fan_in` distinct input maps, chosen at random."""
    cin = _count(cin, "cin", "tables.random")
    cout = _count(cout, "cout", "tables.random")
    fan_in = _count(fan_in, "fan_in", "tables.random")
    if fan_in > cin:
        raise ValueError(f"tables.random: fan_in must be ≤ cin ({cin}); received {fan_in}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"tables.random: rng must be a numpy.random.Generator; received {type(rng).__name__}")
    # The fan_in smallest of cin uniform keys per column form a uniformly random subset.
    keys = rng.random((cin, cout))  # (cin, cout)
    picked = np.argsort(keys, axis=0)[:fan_in]  # (fan_in, cout)
    table = np.zeros((cin, cout), dtype=bool)
    np.put_along_axis(table, picked, True, axis=0)
    return table


def groups(cin: int, cout: int, g: int) -> np.ndarray:
    """Block-diagonal table of `g` groups: output map n reads the cin/g maps of its group."""
    cin = _count(cin, "cin", "tables.groups")
    cout = _count(cout, "cout", "tables.groups")
    g = _count(g, "g", "tables.groups")
    if cin % g or cout % g:
        raise ValueError(f"tables.groups: g must divide cin ({cin}) and cout ({cout}); received {g}")
    gi = np.arange(cin) // (cin // g)  # group of each input map
    go = np.arange(cout) // (cout // g)  # group of each output map
    return gi[:, None] == go[None, :]  # (cin, cout)


def lenet5_c3() -> np.ndarray:
    """The S2 → C3 table of LeNet-5 (LeCun et al. 1998, Table I): 6 input maps, 16 output maps.

    Output maps 0–5 read three contiguous input maps {i, i+1, i+2} (mod 6); maps 6–11 read four
    contiguous maps {i, …, i+3} (mod 6); maps 12–14 read four discontinuous maps {0,1,3,4},
    {1,2,4,5}, {0,2,3,5}; map 15 reads all six: 60 connections in all.
    """
    cols = [[(i + k) % 6 for k in range(3)] for i in range(6)]
    cols += [[(i + k) % 6 for k in range(4)] for i in range(6)]
    cols += [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5], list(range(6))]
    table = np.zeros((6, 16), dtype=bool)
    for n, inputs in enumerate(cols):
        table[inputs, n] = True
    return table


def check(table, in_channels: int, out_channels: int, *, op: str = "connections") -> np.ndarray:
    """Validate a table (array-like of bools or 0/1) and return it as a bool `(in, out)` array.

    Raises ValueError when the shape is not `(in_channels, out_channels)`, when an entry is not
    0/1, or when an output map has no input (it would be a constant).
    """
    arr = np.asarray(table)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected a ({in_channels}, {out_channels}) table of bools or 0/1; "
                        f"received an array of dtype {arr.dtype}")
    if arr.shape != (in_channels, out_channels):
        raise ValueError(f"{op}: expected a table of shape (in_channels, out_channels) = "
                         f"({in_channels}, {out_channels}); received shape {arr.shape}")
    if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{op}: table entries must be 0/1 or bools; received values {np.unique(arr).tolist()}")
    arr = arr.astype(bool)
    empty = np.flatnonzero(~arr.any(axis=0))
    if empty.size:
        raise ValueError(f"{op}: every output map needs at least one input map; output map(s) "
                         f"{empty.tolist()} have none")
    return arr


def fan_in(table) -> np.ndarray:
    """Number of input maps each output map reads: column sums, shape `(C_out,)`."""
    return np.asarray(table, dtype=bool).sum(axis=0)


def links(table) -> int:
    """Number of (input map, output map) connections: the count of True entries."""
    return int(np.count_nonzero(table))
