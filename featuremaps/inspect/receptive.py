"""The exact input pixels one unit of a layer sees: `receptive_field(model, layer, position)`.

The field is traced backwards through every layer before `layer`: a window layer (conv, pooling,
LeNet's subsampling) maps each output pixel to the input pixels its kernel taps, at
`i·stride + p·dilation − pad_top` for kernel offset p (its `featuremaps.functional.window.Geometry`,
the rule in `featuremaps.functional.conv`);
`ZeroPad2D` shifts; element-wise layers (activations, BatchNorm, Dropout, LRN) keep the position;
Flatten, Dense and global pooling see everything (a vector is traced as a whole). On a `Graph`
the field is traced along every path from the input and is their union. Taps that land on padding see no pixel, so the
field is clipped to the image — and dilation or stride larger than the kernel leaves holes: the
mask shows exactly which pixels count, not just a bounding box.
"""
from __future__ import annotations

import numpy as np

from ..functional import window
from ..functional.window import Geometry
from ..nn.graph import input_names, model_nodes
from ..nn.module import ShapeError
from .activations import _layers, resolve_layer
from .connectivity import is_conv

__all__ = ["receptive_field", "ReceptiveField", "Geometry", "window_geometry", "layer_role"]


def layer_role(layer) -> str:
    """How the tools trace a layer, from its class attributes `role` and `spatial` (see
    `featuremaps.nn.Module`): 'conv', 'pool' (windowed), 'global_pool', 'pad', 'dense', 'flatten',
    'activation', 'elementwise' (any other layer that keeps each position) or 'other'."""
    role, spatial = getattr(layer, "role", "other"), getattr(layer, "spatial", None)
    if role in ("conv", "dense"):
        return role
    if role == "pool" and spatial in ("window", "all"):
        return "pool" if spatial == "window" else "global_pool"
    if spatial in ("pad", "flatten"):
        return spatial
    if spatial == "same":
        return "activation" if role == "activation" else "elementwise"
    return "other"


def window_geometry(layer, in_hw: tuple[int, int]) -> Geometry:
    """The window geometry (`featuremaps.functional.window.Geometry`) of a layer whose `spatial` is
    'window' (conv, pooling) applied to an input of `in_hw` (H, W). A layer without a `stride` steps
    by its kernel (LeNet's subsampling); without `padding` or `dilation` it has none."""
    kernel = layer.kernel_size
    return Geometry.of(in_hw, kernel, getattr(layer, "stride", kernel), getattr(layer, "padding", 0),
                       getattr(layer, "dilation", 1), ceil_mode=bool(getattr(layer, "ceil_mode", False)),
                       op=type(layer).__name__, allow_strings=is_conv(layer))


class ReceptiveField(tuple):
    """`(mask, (row_slice, col_slice))` — unpacks like a pair — with more detail as attributes.

    - `mask`: bool `(H_in, W_in)`, True for every input pixel the unit depends on;
    - `slices`: the bounding box of the mask, clipped to the image;
    - `nominal`: `((row_lo, row_hi), (col_lo, col_hi))` inclusive, the field ignoring image borders
      (may be negative or beyond the image: those rows/columns fall on padding; `(0, -1)` when the
      node does not read the input at all);
    - `clipped`: True when part of the nominal field lies off the image;
    - `holes`: True when the mask does not fill its bounding box (dilation, or strides larger than
      the kernel);
    - `layer`, `position`.
    """

    def __new__(cls, mask, slices, nominal, layer, position):
        self = super().__new__(cls, (mask, slices))
        self.mask, self.slices, self.nominal = mask, slices, nominal
        self.layer, self.position = layer, position
        h, w = mask.shape
        (r0, r1), (c0, c1) = nominal
        self.clipped = bool(r0 < 0 or c0 < 0 or r1 >= h or c1 >= w)
        rs, cs = slices
        self.holes = bool(mask[rs, cs].size and not mask[rs, cs].all())
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the clipped bounding box."""
        rs, cs = self.slices
        return rs.stop - rs.start, cs.stop - cs.start

    def to_text(self) -> str:
        rs, cs = self.slices
        (r0, r1), (c0, c1) = self.nominal
        where = "" if self.position is None else f" at {tuple(self.position)}"
        if r1 < r0:
            return f"receptive field of {self.layer}{where}: no input pixel — the node does not read this input"
        if not self.mask.any():
            return (f"receptive field of {self.layer}{where}: no input pixel — every tap falls on padding "
                    f"(nominal rows {r0}..{r1}, cols {c0}..{c1})")
        text = (f"receptive field of {self.layer}{where}: rows {rs.start}..{rs.stop - 1}, "
                f"cols {cs.start}..{cs.stop - 1} "
                f"of the {self.mask.shape[0]}×{self.mask.shape[1]} input ({int(self.mask.sum())} pixels)")
        if self.clipped:
            text += (f"; nominally rows {r0}..{r1}, cols {c0}..{c1}: the part off the image falls on padding "
                     "and is clipped")
        if self.holes:
            text += "; the field has holes (dilation or stride skips pixels)"
        return text

    def __repr__(self) -> str:
        return f"ReceptiveField({self.to_text()})"


def _back(layer, mask, nominal, in_shape, out_shape, op: str, name: str):
    """Trace (mask, nominal) at a layer's output back to its input."""
    role = layer_role(layer)
    if role in ("activation", "elementwise"):
        return mask, nominal
    if len(in_shape) == 1:  # vector input: Dense, Flatten, or an element-wise layer handled above
        if role in ("dense", "flatten") or getattr(layer, "role", None) == "shape":
            return None, None  # "all of it": a vector is traced as a whole
        raise ValueError(f"{op}: cannot trace the receptive field through layer {name!r} ({type(layer).__name__})")
    h, w = in_shape[:2]
    full = np.ones((h, w), dtype=bool), ((0, h - 1), (0, w - 1))
    if role in ("flatten", "global_pool"):
        return full
    if mask is None:  # "all" arriving at a map layer
        raise ValueError(f"{op}: cannot trace the receptive field through layer {name!r} ({type(layer).__name__})")
    if role == "pad":
        (t, b), (l, r) = window.resolve_padding(layer.padding, (1, 1), (1, 1), (1, 1), op="ZeroPad2D",
                                                allow_strings=False)
        (r0, r1), (c0, c1) = nominal
        return mask[t:t + h, l:l + w], ((r0 - t, r1 - t), (c0 - l, c1 - l))
    if role in ("conv", "pool"):
        geo = window_geometry(layer, (h, w))
        m_in = np.zeros((1, h, w), dtype=bool)
        geo.scatter_add(m_in, lambda p, q: mask[None])  # col2im of the field; on bools, + is "or"
        (r0, r1), (c0, c1) = nominal
        return m_in[0], (geo.h.reach(r0, r1), geo.w.reach(c0, c1))
    raise ValueError(f"{op}: cannot trace the receptive field through layer {name!r} ({type(layer).__name__}): "
                     f"its class's spatial attribute is {getattr(layer, 'spatial', None)!r}, so how its output "
                     "positions depend on its input's is unknown (see featuremaps.nn.Module)")


def check_position(position, out_shape, op: str, layer_name: str):
    """Validate `position` against a layer's per-example output shape; returns it as a pair or None."""
    if len(out_shape) == 1:
        if position is not None:
            raise ValueError(f"{op}: layer {layer_name!r} outputs a vector of {out_shape[0]} values, so position "
                             f"must be None; received {position!r}")
        return None
    if position is None:
        raise ValueError(f"{op}: layer {layer_name!r} outputs {out_shape[0]}×{out_shape[1]} maps, so position "
                         f"must be (row, col) with row in [0, {out_shape[0] - 1}] and col in [0, {out_shape[1] - 1}]; "
                         "received None")
    try:
        r, c = position
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in (r, c))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TypeError(f"{op}: position must be a (row, col) pair of ints; received {position!r}")
    if not (0 <= r < out_shape[0] and 0 <= c < out_shape[1]):
        raise ValueError(f"{op}: position {tuple(position)} is outside the "
                         f"{out_shape[0]}×{out_shape[1]} maps of layer {layer_name!r}: "
                         f"row must be in [0, {out_shape[0] - 1}] and col in "
                         f"[0, {out_shape[1] - 1}]")
    return int(r), int(c)


def _node_index(nodes, model, layer, op: str) -> int:
    """Position in `nodes` of the node `layer` names (a node name, an index, or the layer object)."""
    target = resolve_layer(model, layer, op=op) if not hasattr(layer, "forward") else layer
    if isinstance(layer, str):
        return next(k for k, n in enumerate(nodes) if n.name == layer)
    idx = next((k for k, n in enumerate(nodes) if n.layer is target), None)
    if idx is None:
        raise ValueError(f"{op}: layer must be a layer name of this model; received {layer!r}")
    return idx


def _ancestors(nodes, idx: int) -> set:
    """Names of every value (graph inputs included) that node `idx` reads, directly or not, and its own."""
    by_name = {n.name: n for n in nodes[:idx + 1]}
    seen, todo = set(), [nodes[idx].name]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(by_name[name].inputs if name in by_name else ())
    return seen


def _value_shapes(model, nodes, needed: set, op: str) -> dict:
    """Per-example shape of every value in `needed`, from `compute_output_shape` (nothing is run)."""
    if hasattr(model, "input_shapes"):
        given = model.input_shapes
        missing = [n for n, s in given.items() if n in needed and s is None]
        if missing:
            raise ValueError(f"{op}: the graph inputs {missing} have no shape; build the graph with "
                             "inputs={name: (H, W, C)}")
    else:
        if model.input_shape is None:
            raise ValueError(f"{op}: the model has no input_shape; build it with "
                             "Sequential(..., input_shape=(H, W, C))")
        given = {input_names(model)[0]: model.input_shape}
    shapes = {n: tuple(s) for n, s in given.items() if n in needed}
    for n in nodes:
        if n.name in needed:
            try:
                shapes[n.name] = tuple(n.layer.compute_output_shape(*[shapes[i] for i in n.inputs]))
            except ShapeError as e:
                raise e.within(n.name) from None
    return shapes


def _broadcast_back(mask, nominal, in_shape, out_shape):
    """(mask, nominal) of a merge's output traced to one input that NumPy broadcasts to it: an axis of
    size 1 reads its one position for every output position along it; a vector input, as a whole."""
    if mask is None or len(in_shape) < len(out_shape) - 1:
        return None, None
    size = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    nominal = list(nominal)
    for axis in (0, 1):
        if size[axis] == 1 and out_shape[axis] > 1:
            mask = mask.any(axis=axis, keepdims=True)  # (1, w) or (h, 1)
            nominal[axis] = (0, 0)
    return mask, tuple(nominal)


def _back_node(node, mask, nominal, shapes: dict, op: str) -> list:
    """(mask, nominal) at each input of `node`, from (mask, nominal) at its output."""
    out_shape = shapes[node.name]
    if getattr(node.layer, "role", None) != "merge":
        return [_back(node.layer, mask, nominal, shapes[node.inputs[0]], out_shape, op, node.name)]
    if getattr(node.layer, "spatial", None) != "same":
        raise ValueError(f"{op}: cannot trace the receptive field through merge node {node.name!r} "
                         f"({type(node.layer).__name__}): it moves positions (spatial "
                         f"{getattr(node.layer, 'spatial', None)!r})")
    return [_broadcast_back(mask, nominal, shapes[i], out_shape) for i in node.inputs]


def _union(a, b):
    """The field of a value read along two paths: every pixel either path reaches."""
    if a is None:
        return b
    if a[0] is None or b[0] is None:
        return None, None
    (ar, ac), (br, bc) = a[1], b[1]
    return a[0] | b[0], ((min(ar[0], br[0]), max(ar[1], br[1])), (min(ac[0], bc[0]), max(ac[1], bc[1])))


def _which_input(model, input, op: str) -> str:
    names = input_names(model)
    if input is None:
        if len(names) != 1:
            raise ValueError(f"{op}: the graph has inputs {names}; pass input=NAME to say over which one the "
                             "field is drawn")
        return names[0]
    if input not in names:
        raise ValueError(f"{op}: input must be one of the model's inputs {names}; received {input!r}")
    return input


def _slices(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    return slice(0, 0), slice(0, 0)


def receptive_field(model, layer, position=None, *, input: str | None = None) -> ReceptiveField:
    """The exact input pixels that unit `position` = (row, col) of `layer` depends on.

    Returns a `ReceptiveField`, which unpacks as `(mask, (row_slice, col_slice))`: `mask` is a bool
    `(H_in, W_in)` array over the model's input (`model.input_shape`; for a graph with several inputs,
    the one named `input`) and the slices are its bounding box. For a layer that outputs a vector
    (Dense, Flatten, global pooling) `position` is None and the field is every pixel that reaches it.
    Padding (a conv's or a `ZeroPad2D`'s) can push part of the field off the image; that part is
    clipped and `clipped` is set.

    On a `Graph` the field is traced along every path from the input to the node (a ResNet block's
    3×3 path and its shortcut, an Inception block's branches) and is their union; `nominal` is then
    the bounding range of the paths' nominal fields. A merge traces each output position to the same
    position of every input (an input broadcast along an axis of size 1, to its one position there).
    A node that `input` does not reach has an empty field. The field is that of the position over all
    of the node's maps: behind a Concatenate, maps from different branches may see less each.
    """
    op = "receptive_field"
    _layers(model, op)  # the model-kind check and its message
    nodes = model_nodes(model)
    idx = _node_index(nodes, model, layer, op)
    node, source = nodes[idx], _which_input(model, input, op)
    needed = _ancestors(nodes, idx)
    shapes = _value_shapes(model, nodes[:idx + 1], needed, op)
    out_shape = shapes[node.name]
    pos = check_position(position, out_shape, op, node.name)
    if pos is None:
        field = {node.name: (None, None)}
    else:
        mask = np.zeros(out_shape[:2], dtype=bool)
        mask[pos] = True
        field = {node.name: (mask, ((pos[0], pos[0]), (pos[1], pos[1])))}
    for n in reversed(nodes[:idx + 1]):
        if n.name in field:
            for name, back in zip(n.inputs, _back_node(n, *field.pop(n.name), shapes, op)):
                field[name] = _union(field.get(name), back)
    if len(shapes.get(source, (1, 1, 1))) == 1:
        raise ValueError(f"{op}: the model's input is a vector {shapes[source]}; a receptive field needs image input")
    if source not in field:  # the node does not read this input
        h, w = (model.input_shapes[source] or (0, 0))[:2]
        mask, nominal = np.zeros((h, w), dtype=bool), ((0, -1), (0, -1))
    else:
        mask, nominal = field[source]
        if mask is None:
            raise ValueError(f"{op}: the model's input is a vector {shapes[source]}; a receptive field needs image "
                             "input")
    return ReceptiveField(mask, _slices(mask), nominal, node.name, pos)
