"""`Emitter`: the ONNX graph that `export` builds, with a layout tag on every tensor.

featuremaps values are channels-last; ONNX's spatial ops are channels-first. Every tensor the
emitter makes is tagged 'nchw' (a featuremaps NHWC value of rank 4 written as NCHW) or 'plain'
(the ONNX tensor holds the featuremaps array exactly: vectors, and rank-4 values that a Reshape or
Transpose produced). A converter asks for the layout it needs (`as_nchw`, `as_plain`); the
emitter inserts a Transpose only when the tag differs, remembers it (one Transpose per value and
direction, shared by its readers) and logs it. Axis-bearing layers map their axis with `NHWC_TO_NCHW`.
"""
from __future__ import annotations

import numpy as np

from ._loader import ONNXError

__all__ = ["Emitter", "NHWC_TO_NCHW"]

#: axis a of a featuremaps NHWC value is axis NHWC_TO_NCHW[a] of its NCHW form
NHWC_TO_NCHW = (0, 2, 3, 1)
TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)  # Transpose perms: NHWC → NCHW and NCHW → NHWC


class Emitter:
    """Nodes, initializers and layout tags of the graph being written (`onnx` is the module)."""

    def __init__(self, onnx, opset: int, dtype: np.dtype):
        self.onnx, self.opset, self.dtype = onnx, opset, np.dtype(dtype)
        self.nodes: list = []
        self.inits: list = []
        self.layout: dict[str, str] = {}  # tensor name → 'nchw' | 'plain'
        self.rank: dict[str, int] = {}  # tensor name → rank with the batch axis
        self.log: list[str] = []
        self._taken: set[str] = set()
        self._converted: dict[tuple[str, str], str] = {}

    # --- names ----------------------------------------------------------------------------------
    def fresh(self, name: str) -> str:
        """`name`, or `name_2`, `name_3`, ... when it is already used by a tensor or node."""
        out, k = name, 1
        while out in self._taken:
            k += 1
            out = f"{name}_{k}"
        self._taken.add(out)
        return out

    def claim(self, name: str) -> str:
        """Reserve `name` exactly (a featuremaps node or input name); it must be free."""
        if name in self._taken:
            raise ONNXError(f"export: the name {name!r} is used twice in the exported graph (a layer name that "
                            f"equals a helper tensor's name); rename the layer")
        self._taken.add(name)
        return name

    # --- tensors --------------------------------------------------------------------------------
    def const(self, name: str, array, *, exact: bool = False) -> str:
        """An initializer named `name` (made unique); floats take the model's dtype unless `exact`."""
        from onnx import numpy_helper
        a = np.asarray(array)
        if a.dtype.kind == "f" and not exact:
            a = a.astype(self.dtype)
        name = self.fresh(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def ints(self, name: str, values) -> str:
        return self.const(name, np.asarray(values, np.int64))

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, np.asarray(value, self.dtype))

    def tag(self, tensor: str, layout: str, rank: int) -> str:
        self.layout[tensor], self.rank[tensor] = layout, int(rank)
        return tensor

    # --- nodes ----------------------------------------------------------------------------------
    def node(self, op: str, inputs, output: str, *, name: str | None = None, layout: str, rank: int,
             **attrs) -> str:
        """Append one node producing `output` (already claimed or made fresh) and tag it."""
        node_name = name or output
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], name=node_name, **attrs))
        return self.tag(output, layout, rank)

    def step(self, op: str, inputs, base: str, suffix: str, *, layout: str, rank: int, **attrs) -> str:
        """A helper node `base/suffix` (its tensor has the same, unique, name)."""
        out = self.fresh(f"{base}/{suffix}")
        return self.node(op, inputs, out, layout=layout, rank=rank, **attrs)

    # --- layouts --------------------------------------------------------------------------------
    def as_nchw(self, tensor: str, reader: str, why: str) -> str:
        """`tensor` in NCHW for a channels-first op; rank ≠ 4 passes unchanged."""
        if self.rank[tensor] != 4 or self.layout[tensor] == "nchw":
            return tensor
        return self._transpose(tensor, TO_NCHW, "to_nchw", "nchw", reader, f"NHWC → NCHW {why}")

    def as_plain(self, tensor: str, reader: str, why: str) -> str:
        """`tensor` as featuremaps holds it (NHWC for rank 4), for a layout-sensitive op."""
        if self.layout[tensor] == "plain":
            return tensor
        return self._transpose(tensor, TO_NHWC, "to_nhwc", "plain", reader, f"NCHW → NHWC {why}")

    def _transpose(self, tensor, perm, suffix, layout, reader, text) -> str:
        key = (tensor, layout)
        if key not in self._converted:
            out = self.step("Transpose", [tensor], reader, suffix, layout=layout, rank=4, perm=list(perm))
            self._converted[key] = out
            self.log.append(f"{reader}: Transpose {out!r} of {tensor!r}, {text}")
        return self._converted[key]

    def boundary(self, tensor: str) -> str:
        """The layout a graph input or output has in the file: NCHW for rank 4, else as featuremaps has it."""
        return "nchw" if self.rank[tensor] == 4 else "plain"
