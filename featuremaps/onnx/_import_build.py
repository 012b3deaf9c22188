"""`Builder`: collects the featuremaps nodes of an import, names them, and converts between the
forms a value is held in (see `_import_layout`) with as few layers as the consumer needs."""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from .. import nn
from ._import_layout import NHWC, Held, Unsupported, same_order, vector_order


def readable_name(node, inits) -> str:
    """A short node name: the module path of torch's exports ("/layer1/layer1.0/conv1/Conv" →
    "layer1_0_conv1"; the dynamo exporter's weight "blocks.0.c1.weight" → "blocks_0_c1")."""
    for x in list(node.input)[1:]:
        if x in inits and "." in x and not x.startswith("onnx::"):
            return _clean(x.rsplit(".", 1)[0])
    name = node.name[5:] if node.name.startswith("node_") else node.name
    parts = [p for p in name.strip("/").split("/") if p]
    if len(parts) > 1:
        if re.fullmatch(rf"{node.op_type}(_\d+)?", parts[-1]):
            weighted = any(x in inits for x in list(node.input)[1:])
            parts = parts[:-1] if weighted else parts[:-1] + [parts[-1].lower()]
        parts = [p for k, p in enumerate(parts) if k + 1 == len(parts) or not parts[k + 1].startswith(p + ".")]
    return _clean("_".join(parts)).lower() or node.op_type.lower()


def _clean(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", s).strip("_")


class Builder:
    def __init__(self, consts: dict, shapes: dict, taken=()):
        self.nodes: list[tuple[str, object, list]] = []
        self.layers: dict[str, object] = {}
        self.taken = set(taken)
        self.consts, self.shapes = consts, shapes
        self.held: dict[str, Held] = {}
        self.log: list[str] = []
        self.onnx_tensors: dict[str, str] = {}
        self.origin: dict[str, str] = {}  # featuremaps node → the ONNX tensor its layer produced

    # --- nodes ----------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def add(self, base: str, layer, inputs) -> str:
        name = self.unique(base)
        self.nodes.append((name, layer, list(inputs)))
        self.layers[name] = layer
        return name

    def emit(self, tensor: str, base: str, layer, inputs, perm, fshape) -> Held:
        """Add `layer` as the node producing ONNX `tensor`, held as (perm, fshape)."""
        name = self.add(base, layer, inputs)
        h = Held(name, tuple(self.shapes[tensor]), tuple(perm), tuple(fshape))
        self.set(tensor, h)
        self.origin[name] = tensor
        return h

    def set(self, tensor: str, h: Held) -> None:
        h = replace(h, shape=tuple(self.shapes[tensor]))
        self.held[tensor] = h
        if h.canonical and h.name in self.layers and h.name not in self.onnx_tensors:
            self.onnx_tensors[h.name] = tensor

    # --- forms ----------------------------------------------------------------------------------
    def reshape(self, h: Held, fshape, base: str) -> Held:
        fshape = tuple(fshape)
        if h.fshape == fshape:
            return h
        layer = nn.Flatten() if len(fshape) == 1 and len(h.fshape) == 3 else nn.Reshape(fshape)
        return replace(h, name=self.add(f"{base}_reshape" if len(fshape) != 1 else f"{base}_flatten", layer, [h.name]),
                       fshape=fshape)

    def need(self, h: Held, perm, fshape=None, base: str = "") -> Held:
        """`h` as onnx.transpose(perm).reshape(fshape) (fshape defaults to the full shape)."""
        perm = tuple(perm)
        if h.src is not None:
            h = self.unflatten(h, base)
        fshape = tuple(fshape) if fshape is not None else h.full(perm)
        if not same_order(h.perm, perm, h.shape):
            h = self.reshape(h, h.full(), base)
            t = tuple(h.perm.index(a) - 1 for a in perm[1:])
            name = self.add(f"{base}_transpose", nn.Transpose(t), [h.name])
            h = Held(name, h.shape, perm, h.full(perm))
        return replace(self.reshape(h, fshape, base), perm=perm)

    def unflatten(self, h: Held, base: str) -> Held:
        """A permuted flatten (h.src) turned into ONNX's (c, h, w) order by real layers."""
        src_shape, src_perm = h.src
        maps = Held(h.name, src_shape, src_perm, h.fshape)
        ident = tuple(range(len(src_shape)))
        maps = self.need(maps, ident, base=base)
        vec = self.reshape(maps, (int(h.shape[1]),), base)
        return Held(vec.name, h.shape, (0, 1), vec.fshape)

    def maps(self, h: Held, base: str) -> str:
        """The name of `h` as NHWC maps (4-D ONNX tensors only)."""
        if len(h.shape) != 4:
            raise Unsupported(f"needs a 4-D (N, C, H, W) input; received shape {h.shape}")
        return self.need(h, NHWC, base=base).name

    def canonical(self, h: Held, base: str) -> Held:
        return h if h.canonical else self.need(h, h.canonical_perm(), base=base)

    def vector(self, h: Held, base: str):
        """(Held with fshape (F,), the order of its entries as ONNX indices or None) for a Dense."""
        if len(h.shape) != 2:
            raise Unsupported(f"needs a 2-D (N, F) input; received shape {h.shape}")
        order = None if h.src is None else vector_order(*h.src)
        if order is not None and (order == range(len(order))).all():
            order = None
        h = self.reshape(h, (int(h.shape[1]),), h.via or base)
        return h, order


def own_copies(model) -> None:
    """Make every parameter and buffer its own writable array: the importer's weights may be read-only
    views of the file's buffers, which training and `load_state_dict` must be able to write."""
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                p.data = np.array(p.data)
        for k, v in m._buffers.items():
            m._buffers[k] = np.array(v)
