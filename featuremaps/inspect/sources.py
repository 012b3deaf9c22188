"""Which maps of which earlier layers feed one output map: `map_sources(model, layer, out_map)`.

A conv's output map o reads the input maps its wiring connects (all of them, o's group, one map for a
depthwise conv, or o's column of a connection table; see `featuremaps.inspect.connections`). Between
two conv layers a network moves maps without weighing them: element-wise layers, pooling and padding
keep map i as map i; `Add`/`Average`/`Multiply`/`Maximum` read map i of every input (map 0 of an
input that broadcasts); `Concatenate` along the channels takes map o from one input, at an offset; a
flatten turns feature f of an (H, W, C) input into map f mod C; and a channel shuffle (ShuffleNet's
Reshape → Transpose → Reshape) is a permutation, map j ← map π(j).

**How far back.** The trace starts with the layer's own wiring (map o itself for a layer that keeps
maps) and walks back through every layer that moves maps without weighing them, and stops at the
nearest layers whose maps are weighted sums — conv and dense layers (`role` 'conv' or 'dense') — and
at the model's inputs. Those are the *sources*: the maps of earlier layers that this map reads. A path
that reaches a source never looks past it, so in a residual block an Add's map reads one map of each
branch's last conv, not what those convs read.

Layers are read from their class attributes (`role`, `spatial`, `elementwise`; a conv's `groups` and
`connections`; a concatenation's `axis`), never their names. Two cases are computed instead:

- a run of shape layers that only move values (Reshape, Transpose; `role` 'shape', `spatial` None)
  is applied to an array of element indices, which says exactly where each value comes from; when it
  keeps every value at its position and only reorders the maps, that is a permutation;
- any other single-input layer whose channel wiring its attributes do not declare (Softmax over the
  channels, LRN, InstanceNorm, a reflect pad, a bilinear upsample) is *measured*: each input map is
  perturbed in turn, in float64, and the output maps that change are the ones it feeds. The step
  says "measured".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._json import jsonable
from ..nn.graph import input_names, model_nodes
from ..nn.module import ShapeError
from ..tensor import as_array, no_grad
from .connectivity import _groups, connections

__all__ = ["map_sources", "MapSources", "MapSource", "Hop", "node_wiring"]

#: Above this many values (input size × input maps) a layer's wiring is assumed full, not measured.
PROBE_LIMIT = 2_000_000


# --------------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------------
@dataclass
class MapSource:
    """Maps `maps` (sorted) of `layer` (a conv or dense node, or a model input) that the traced map
    reads; `channels` is how many maps that layer has, `kind` its class name ('input' for an input)."""
    layer: str
    kind: str
    maps: list
    channels: int | None = None


@dataclass
class Hop:
    """One node the trace walked through: `node`, `kind`, `rule` (how its maps come from those of
    what it reads), `maps` (its output maps the trace needs), `reads` (value name → the maps needed
    there) and, for a channel shuffle, `permutation` (map j ← map permutation[j] of `reads`'s value)."""
    node: str
    kind: str
    rule: str
    maps: list
    reads: dict
    permutation: list | None = None


@dataclass
class MapSources:
    """The answer of `map_sources`: `layer`, `kind`, `out_map`; `sources`, a list of `MapSource` in
    execution order; `hops`, every node walked through (see `Hop`), from the layer back. Render with
    `to_text()` or `to_dict()` (JSON-able); `maps_of(name)` is one source's maps."""
    layer: str
    kind: str
    out_map: int
    sources: list = field(default_factory=list)
    hops: list = field(default_factory=list)

    def maps_of(self, name: str) -> list:
        for s in self.sources:
            if s.layer == name:
                return list(s.maps)
        raise KeyError(f"MapSources: {name!r} is not a source of map {self.out_map} of {self.layer!r}; "
                       f"sources are {[s.layer for s in self.sources]}")

    def to_dict(self) -> dict:
        return jsonable({"layer": self.layer, "kind": self.kind, "out_map": self.out_map,
                         "sources": [{"layer": s.layer, "kind": s.kind, "maps": s.maps, "channels": s.channels}
                                     for s in self.sources],
                         "hops": [{"node": h.node, "kind": h.kind, "rule": h.rule, "maps": h.maps,
                                   "reads": h.reads, "permutation": h.permutation} for h in self.hops]})

    def to_text(self) -> str:
        lines = [f"map {self.out_map} of {self.layer!r} ({self.kind}) reads, from the nearest conv/dense "
                 "layers and inputs:"]
        for s in self.sources:
            of = "" if s.channels is None else f" ({len(s.maps)} of {s.channels})"
            lines.append(f"  {s.layer} ({s.kind}): {'map' if len(s.maps) == 1 else 'maps'} "
                         f"{span_text(s.maps)}{of}")
        lines.append("trace:")
        for h in self.hops:
            reads = "; ".join(f"{name} {'map' if len(m) == 1 else 'maps'} {span_text(m)}"
                              for name, m in h.reads.items() if m)
            lines.append(f"  {h.node} ({h.kind}) {'map' if len(h.maps) == 1 else 'maps'} {span_text(h.maps)} "
                         f"← {reads or 'nothing'}  [{h.rule}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        srcs = ", ".join(f"{s.layer}[{span_text(s.maps)}]" for s in self.sources)
        return f"<MapSources map {self.out_map} of {self.layer!r} ← {srcs}>"


def span_text(maps, limit: int = 12) -> str:
    """`0–3, 8, 10–11`: sorted ints as runs (at most `limit` runs, then how many more)."""
    maps = sorted(int(m) for m in maps)
    runs: list = []
    for m in maps:
        if runs and m == runs[-1][1] + 1:
            runs[-1][1] = m
        else:
            runs.append([m, m])
    parts = [f"{a}" if a == b else f"{a}–{b}" for a, b in runs[:limit]]
    more = f", … ({len(maps)} maps)" if len(runs) > limit else ""
    return (", ".join(parts) + more) if parts else "none"


# --------------------------------------------------------------------------------------------------
# Shapes and per-node wiring
# --------------------------------------------------------------------------------------------------
def value_shapes(model, input_shape=None, op: str = "map_sources") -> dict:
    """Per-example shape of every value of `model` (inputs and nodes), without running it."""
    try:
        return model.node_shapes(input_shape)
    except ShapeError as e:
        raise ValueError(f"{op}: {e}") from None
    except ValueError as e:
        raise ValueError(f"{op}: {e}; pass input_shape=(H, W, C) (one example)") from None


def _is_source(layer) -> bool:
    return getattr(layer, "role", None) in ("conv", "dense")


def _moves_values(layer) -> bool:
    """A shape layer that moves values between positions and maps (Reshape, Transpose)."""
    return getattr(layer, "role", None) == "shape" and getattr(layer, "spatial", None) is None


def _conv_rule(layer) -> str:
    c_in, g = connections(layer).shape[0], _groups(layer)
    if getattr(layer, "connections", None) is not None:
        return "connection table: its column"
    if g == 1:
        return f"full conv: all {c_in} maps"
    if g == c_in:
        return "depthwise: one map (diagonal)"
    return f"groups={g}: the {c_in // g} maps of its group (block diagonal)"


def _concat_blocks(node, shapes) -> list:
    """(input name, first map, last map + 1) of a channel concatenation, in order."""
    blocks, offset = [], 0
    for name in node.inputs:
        c = shapes[name][-1]
        blocks.append((name, offset, offset + c))
        offset += c
    return blocks


def _channel_concat(layer, shape) -> bool:
    axis = getattr(layer, "axis", -1)
    return axis % (len(shape) + 1) == len(shape)  # the last axis of the batched array


def _same_maps(c_in: int, c_out: int) -> np.ndarray:
    """Map i → map i, or every output map from the single map of an input that broadcasts."""
    return np.ones((1, c_out), bool) if c_in == 1 and c_out > 1 else np.eye(c_in, c_out, dtype=bool)


def _flatten_matrix(shape_in, f: int) -> np.ndarray:
    c = shape_in[-1]
    m = np.zeros((c, f), bool)  # (c, f): feature j of an (h, w, c) input comes from map j mod c
    m[np.arange(f) % c, np.arange(f)] = True
    return m


def _run_layers(layers, x: np.ndarray) -> np.ndarray:
    with no_grad():
        for layer in layers:
            x = as_array(layer(x))
    return x


def _index_matrix(layers, shape_in, shape_out):
    """Push element indices through layers that only move values: (matrix (C_in, C_out), the
    permutation when each value keeps its position and only maps are reordered, else None). None
    for both when the layers do not just move values."""
    size = int(np.prod(shape_in))
    idx = np.arange(size, dtype=np.float64).reshape((1,) + tuple(shape_in))  # (1, *shape_in)
    out = _run_layers(layers, idx)[0]  # (*shape_out)
    if out.shape != tuple(shape_out) or not np.array_equal(out, np.round(out)) or out.min() < 0 or out.max() >= size:
        return None, None
    src = np.unravel_index(out.astype(np.int64), tuple(shape_in))  # per output value: its input index
    c_in, c_out = shape_in[-1], shape_out[-1]
    m = np.zeros((c_in, c_out), bool)
    m[src[-1].ravel(), np.broadcast_to(np.arange(c_out), out.shape).ravel()] = True
    perm = None
    same_place = len(shape_in) == len(shape_out) and tuple(shape_in) == tuple(shape_out) and all(
        np.array_equal(src[a], np.broadcast_to(np.arange(shape_in[a]).reshape(
            [-1 if k == a else 1 for k in range(len(shape_in))]), out.shape)) for a in range(len(shape_in) - 1))
    if same_place and (m.sum(axis=0) == 1).all() and (m.sum(axis=1) == 1).all():
        perm = [int(i) for i in np.argmax(m, axis=0)]  # map j ← map perm[j]
    return m, perm


def _probe(layer, shape_in, shape_out, limit: int = PROBE_LIMIT) -> np.ndarray | None:
    """Measure which output maps each input map feeds: perturb input map i (float64) and see which
    output maps change. None when the layer is too large to measure (input size × maps > `limit`)."""
    c_in, c_out = shape_in[-1], shape_out[-1]
    if int(np.prod(shape_in)) * c_in > limit or len(shape_out) < 1:
        return None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1,) + tuple(shape_in))  # (1, *shape_in)
    was_training = getattr(layer, "training", False)
    layer.eval()
    try:
        base = _run_layers([layer], x)[0]
        m = np.zeros((c_in, c_out), bool)
        for i in range(c_in):
            xp = x.copy()
            xp[..., i] += rng.standard_normal(xp.shape[:-1]) + 1.0
            out = _run_layers([layer], xp)[0]
            scale = np.maximum(np.abs(base), 1.0)
            changed = np.abs(out - base) > 1e-9 * scale  # (*shape_out)
            m[i] = changed.reshape(-1, c_out).any(axis=0)
    finally:
        if was_training:
            layer.train()
    return m


def _shape_run(node, nodes_by_name, shapes) -> tuple[str, list]:
    """The value where a run of value-moving shape layers ending at `node` starts — the nearest one
    back with `node`'s output shape (a shuffle), else the input of the first — and the run's layers."""
    run, current = [node], node
    while True:
        start = current.inputs[0]
        if shapes[start] == shapes[node.name] or start not in nodes_by_name:
            break
        before = nodes_by_name[start]
        if not _moves_values(before.layer) or len(before.inputs) != 1:
            break
        run.insert(0, before)
        current = before
    return start, [n.layer for n in run]


class _Wiring:
    """Each node's channel wiring: a list of (value read, bool matrix (C_value, C_node) or None for
    'every map'), a rule text and, for a shuffle, its permutation. Computed once per node."""

    def __init__(self, model, shapes: dict, probe_limit: int = PROBE_LIMIT):
        self.nodes = model_nodes(model)
        self.by_name = {n.name: n for n in self.nodes}
        self.shapes = shapes
        self.probe_limit = probe_limit  # layers larger than this are not measured (see `_probe`)
        self._cache: dict = {}

    def __call__(self, node):
        if node.name not in self._cache:
            self._cache[node.name] = self._wiring(node)
        return self._cache[node.name]

    def _wiring(self, node):
        layer, shapes = node.layer, self.shapes
        out_shape, in_shape = shapes[node.name], shapes[node.inputs[0]]
        role, spatial = getattr(layer, "role", None), getattr(layer, "spatial", None)
        if role == "conv":
            return [(node.inputs[0], connections(layer))], _conv_rule(layer), None
        if role == "dense":
            return [(node.inputs[0], None)], f"dense: all {in_shape[-1]} inputs", None
        if role == "merge" and not getattr(layer, "elementwise", False) and _channel_concat(layer, out_shape):
            reads = []
            for name, lo, hi in _concat_blocks(node, shapes):
                m = np.zeros((hi - lo, out_shape[-1]), bool)
                m[np.arange(hi - lo), np.arange(lo, hi)] = True
                reads.append((name, m))
            text = "concatenation: " + ", ".join(f"{n} at {span_text(range(lo, hi))}"
                                                 for n, lo, hi in _concat_blocks(node, shapes))
            return reads, text, None
        if role == "merge" and (getattr(layer, "elementwise", False) or spatial is None):
            return [(i, _same_maps(shapes[i][-1], out_shape[-1])) for i in node.inputs], \
                "the same map of each input", None
        if spatial == "flatten" and len(in_shape) > 1:
            return [(node.inputs[0], _flatten_matrix(in_shape, out_shape[-1]))], \
                f"flatten: feature j ← map j mod {in_shape[-1]}", None
        keeps = getattr(layer, "elementwise", False) or spatial in ("pad", "flatten") or \
            (role == "pool" and spatial in ("window", "all"))
        if keeps:
            return [(node.inputs[0], _same_maps(in_shape[-1], out_shape[-1]))], "same map", None
        if _moves_values(layer) and len(node.inputs) == 1:
            start, layers = _shape_run(node, self.by_name, shapes)
            m, perm = _index_matrix(layers, shapes[start], out_shape)
            if m is not None:
                text = ("channel shuffle: map j ← map π(j)" if perm is not None and perm != sorted(perm)
                        else "moves values (reshape/transpose)")
                return [(start, m)], text, perm
        if len(node.inputs) == 1:
            try:
                m = _probe(layer, in_shape, out_shape, self.probe_limit)
            except (ValueError, TypeError):  # a layer that cannot run on a float64 probe: assume full wiring
                m = None
            if m is not None:
                return [(node.inputs[0], m)], "measured (each input map perturbed)", None
        return [(i, None) for i in node.inputs], "wiring not declared: every map assumed", None


# --------------------------------------------------------------------------------------------------
# The trace
# --------------------------------------------------------------------------------------------------
def _needed(matrix, maps: set, c_in: int) -> set:
    if matrix is None:
        return set(range(c_in))
    rows = matrix[:, sorted(maps)].any(axis=1)  # (c_in,)
    return {int(i) for i in np.flatnonzero(rows)}


def _check_out_map(out_map, c: int, name: str) -> int:
    if isinstance(out_map, (bool, np.bool_)) or not isinstance(out_map, (int, np.integer)):
        raise TypeError(f"map_sources: out_map must be an int; received {out_map!r}")
    if not 0 <= out_map < c:
        raise ValueError(f"map_sources: out_map must be in [0, {c - 1}] (layer {name!r} has {c} maps); "
                         f"received {out_map}")
    return int(out_map)


def map_sources(model, layer: str, out_map: int, input_shape=None) -> MapSources:
    """Which maps of which earlier layers feed output map `out_map` of `layer` (a node name).

    `model` is a `Sequential` or a `Graph` whose input shape is known (or give `input_shape`, as
    `summary` takes it). See the module docstring for the rules and how far back the trace goes
    (to the nearest conv/dense layers and the inputs). Nothing is run, except to measure a layer
    whose channel wiring its attributes do not declare. Returns a `MapSources`."""
    nodes = model_nodes(model)
    names = [n.name for n in nodes]
    if not isinstance(layer, str) or layer not in names:
        raise ValueError(f"map_sources: layer must be the name of one of the model's layers "
                         f"({', '.join(names)}); received {layer!r}")
    shapes = value_shapes(model, input_shape)
    target = nodes[names.index(layer)]
    out_map = _check_out_map(out_map, shapes[layer][-1], layer)
    wiring = _Wiring(model, shapes)
    need: dict = {layer: {out_map}}
    hops, found = [], {}
    for node in reversed(nodes[: names.index(layer) + 1]):
        maps = need.pop(node.name, None)
        if not maps:
            continue
        if node is not target and _is_source(node.layer):
            found[node.name] = maps
            continue
        reads_spec, rule, perm = wiring(node)
        reads = {}
        for value, matrix in reads_spec:
            got = _needed(matrix, maps, shapes[value][-1])
            reads[value] = sorted(set(reads.get(value, [])) | got)
            need.setdefault(value, set()).update(got)
        hops.append(Hop(node.name, type(node.layer).__name__, rule, sorted(maps), reads, perm))
    for name in input_names(model):
        if need.get(name):
            found[name] = need[name]
    order = {n: k for k, n in enumerate(input_names(model) + names)}
    sources = [MapSource(n, "input" if n not in wiring.by_name else type(wiring.by_name[n].layer).__name__,
                         sorted(m), shapes[n][-1]) for n, m in sorted(found.items(), key=lambda kv: order[kv[0]])]
    return MapSources(layer, type(target.layer).__name__, out_map, sources, hops)


def node_wiring(model, shapes: dict, keeps_positions: dict | None = None) -> dict:
    """Node name → a short text of its structural channel wiring, for the nodes where it is not
    the obvious one (concatenations with their offsets, channel shuffles with their permutation,
    depthwise convs); used by `summary`. When `keeps_positions` is a dict, it receives node name →
    the value a run of shape layers ending there starts from, for runs that keep every value at its
    position (a shuffle), so that a receptive field passes through them."""
    wiring = _Wiring(model, shapes)
    out = {}
    for node in wiring.nodes:
        role = getattr(node.layer, "role", None)
        structural = (role == "merge" and not getattr(node.layer, "elementwise", False)) or \
            _moves_values(node.layer)
        if role == "conv" and _groups(node.layer) > 1 and _groups(node.layer) == connections(node.layer).shape[0]:
            k = connections(node.layer).shape[1] // _groups(node.layer)
            out[node.name] = "depthwise: map o ← map o" if k == 1 else f"depthwise ×{k}: map o ← map o // {k}"
        elif structural:
            try:
                reads, rule, perm = wiring(node)
            except (ValueError, TypeError):  # a layer that cannot run on index data: nothing to show
                continue
            if perm is not None and keeps_positions is not None:
                keeps_positions[node.name] = reads[0][0]
            if perm is not None and perm != sorted(perm):
                shown = ", ".join(map(str, perm[:16])) + (", …" if len(perm) > 16 else "")
                out[node.name] = f"shuffle of {reads[0][0]}: map j ← π(j), π = [{shown}]"
            elif role == "merge":
                out[node.name] = rule
    return out
