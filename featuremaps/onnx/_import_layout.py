"""How a featuremaps value holds an ONNX tensor, and how ONNX's reshapes become free relabellings.

ONNX tensors are NCHW; featuremaps values are NHWC. A `Held` records the relation: the featuremaps
array equals `onnx.transpose(perm).reshape((N,) + fshape)`, so `perm` is the featuremaps memory
order as ONNX axes ((0, 2, 3, 1) for NHWC maps) and `fshape` the per-example featuremaps shape. A
Transpose only changes `perm`, and a Reshape that keeps the memory order only changes the ONNX
shape, so neither needs a layer; a layer is added only when a consumer needs another form
(`Builder.need` in `_import`). A vector made by flattening channels-last maps is held with `src`
set: its entries are in (h, w, c) order, a fixed permutation of ONNX's (c, h, w) order, which the
next Dense absorbs by permuting its weight rows (`vector_order`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NHWC = (0, 2, 3, 1)


class Unsupported(ValueError):
    """An op or attribute combination that has no featuremaps layer form (named in the message)."""


@dataclass(frozen=True)
class Held:
    name: str  # the featuremaps value (a node or the graph input)
    shape: tuple  # the ONNX shape, batch included
    perm: tuple  # featuremaps memory order, as ONNX axes (batch first)
    fshape: tuple  # the featuremaps per-example shape
    src: tuple | None = None  # (ONNX shape, perm) of the maps a permuted flatten came from
    via: str = ""  # the name base of the ONNX node that flattened them

    def full(self, perm=None) -> tuple:
        """Per-example shape of onnx.transpose(perm)."""
        return tuple(self.shape[p] for p in (perm or self.perm)[1:])

    def canonical_perm(self) -> tuple:
        return NHWC if len(self.shape) == 4 else tuple(range(len(self.shape)))

    @property
    def canonical(self) -> bool:
        """True when the value is the ONNX tensor as featuremaps writes it: NHWC when 4-D, else as is."""
        p = self.canonical_perm()
        return self.src is None and same_order(self.perm, p, self.shape) and self.fshape == self.full(p)


def effective(perm, shape) -> list:
    """The memory order without size-1 axes (those can sit anywhere)."""
    return [a for a in perm[1:] if shape[a] != 1]


def same_order(p, q, shape) -> bool:
    return effective(p, shape) == effective(q, shape)


def vector_order(src_shape, src_perm) -> np.ndarray:
    """Index k of the featuremaps vector is index `order[k]` of ONNX's flattened (c, h, w) vector."""
    ex = tuple(src_shape[1:])
    return np.arange(int(np.prod(ex))).reshape(ex).transpose([p - 1 for p in src_perm[1:]]).ravel()


def factor_groups(s_in, s_out) -> list[tuple[list, list]] | None:
    """Split a reshape of per-example axes (1-based, size-1 axes skipped) into groups (in axes, out
    axes) of equal products, each a contiguous run; None when the sizes do not factor."""
    ins = [(i, s) for i, s in enumerate(s_in) if s != 1 and i > 0]
    outs = [(j, s) for j, s in enumerate(s_out) if s != 1 and j > 0]
    groups, i, j = [], 0, 0
    while i < len(ins) and j < len(outs):
        gi, gj, pi, pj = [ins[i][0]], [outs[j][0]], ins[i][1], outs[j][1]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(ins):
                gi.append(ins[i][0])
                pi *= ins[i][1]
                i += 1
            elif pj < pi and j < len(outs):
                gj.append(outs[j][0])
                pj *= outs[j][1]
                j += 1
            else:
                return None
        groups.append((gi, gj))
    return groups if i == len(ins) and j == len(outs) else None


def reshape_order(h: Held, groups) -> tuple | None:
    """The new perm when each group's input axes lie together, in order, in memory; else None."""
    eff = effective(h.perm, h.shape)
    pos = {a: k for k, a in enumerate(eff)}
    for gi, _ in groups:
        ks = [pos[a] for a in gi]
        if ks != list(range(ks[0], ks[0] + len(ks))):
            return None
    order = [a for _, gj in sorted(groups, key=lambda g: pos[g[0][0]]) for a in gj]
    return order


def grouped_perm(h: Held, groups) -> tuple:
    """A perm that puts each group's input axes together and in order (groups kept in their memory
    order; size-1 axes last): the transpose a reshape needs first when `reshape_order` is None."""
    eff = effective(h.perm, h.shape)
    pos = {a: k for k, a in enumerate(eff)}
    order = [a for gi, _ in sorted(groups, key=lambda g: min(pos[a] for a in g[0])) for a in gi]
    ones = [a for a in range(1, len(h.shape)) if a not in order]
    return (0,) + tuple(order) + tuple(ones)


def with_ones(order: list, rank: int) -> tuple:
    """`order` (ONNX axes without size-1 ones) completed to a perm of `rank` axes, batch first."""
    rest = [a for a in range(1, rank) if a not in order]
    return (0,) + tuple(order) + tuple(rest)
