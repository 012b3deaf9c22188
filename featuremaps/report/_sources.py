"""Map sources for a graph's report: which maps of which earlier layers feed each map.

`featuremaps.inspect.map_sources` answers for one map. The page needs the answer for every map of
the nodes where it is not the obvious one: channel concatenations, channel shuffles, and grouped,
depthwise or tabled convs. `sources_view` traces all of them by the rules of `map_sources`, with
one shared wiring (each node's is worked out once) and each map's trace memoised (see `_Tracer`),
and returns what the page embeds:

- `wiring`: node name → `node_wiring`'s text (concatenation offsets, a shuffle's permutation, a
  depthwise conv), shown in the layer header;
- `nodes`: node name → `{"rule", "perm", "from", "maps"}` for the traced nodes. `rule` is the node's
  own step, as `map_sources` words it. `perm` is a shuffle's permutation (map j ← map perm[j] of
  entry `from`, the value the shuffle starts from), else None (and `from` None). `maps[j]` is
  `[path, sources]` for map j: `sources` is a flat list `[entry, runs, entry, runs, ...]`, with the
  entry indices in execution order and `runs` the maps as flat `[first, last, ...]` pairs, and
  `path` indexes `paths`;
- `paths`: lists of the entries that a trace walked through (after the node itself) and whose step
  is not the identity, as `[entry, rule]` pairs. The maps of a DenseNet share a few paths.

What is computed is structural and cheap. A layer whose wiring `map_sources` would *measure* (by
perturbing each input map) is measured only when it has at most `MEASURE_MAPS` maps; a bigger one
is assumed to read every map, and its step says so.
"""
from __future__ import annotations


import numpy as np

from ..inspect import sources as _src
from ..inspect.connectivity import _groups
from ..nn.graph import input_names

__all__ = ["sources_view", "MEASURE_MAPS"]

#: Layers with more maps than this (in or out) are never measured: their wiring is assumed full.
MEASURE_MAPS = 64


class _Wiring(_src._Wiring):
    """`map_sources`' per-node wiring, measuring only layers of at most `MEASURE_MAPS` maps; plus
    whether a node's step is the identity (map i ← map i of each value it reads)."""

    def __init__(self, model, shapes: dict):
        super().__init__(model, shapes)
        self._plain: dict = {}
        self._columns: dict = {}

    def _wiring(self, node):
        shapes = self.shapes
        if max(shapes[node.name][-1], shapes[node.inputs[0]][-1]) <= MEASURE_MAPS:
            return super()._wiring(node)
        limit, self.probe_limit = self.probe_limit, -1  # this node only: never measured
        try:
            reads, rule, perm = super()._wiring(node)
        finally:
            self.probe_limit = limit
        if rule.startswith("wiring not declared") and len(node.inputs) == 1:
            rule = f"not measured (more than {MEASURE_MAPS} maps): every map assumed"
        return reads, rule, perm

    def plain(self, node) -> bool:
        if node.name not in self._plain:
            self._plain[node.name] = all(m is not None and m.shape[0] == m.shape[1] and
                                         np.array_equal(m, np.eye(len(m), dtype=bool)) for _, m in self(node)[0])
        return self._plain[node.name]

    def column(self, node, k: int, m: int) -> list:
        """The maps of the k-th value `node` reads that feed its map m (`_needed` for one map)."""
        key = (node.name, k)
        if key not in self._columns:
            value, matrix = self(node)[0][k]
            if matrix is None:
                matrix = np.ones((self.shapes[value][-1], self.shapes[node.name][-1]), bool)
            cols, rows = np.nonzero(matrix.T)  # sorted by output map, then input map
            cuts = np.searchsorted(cols, np.arange(1, matrix.shape[1]))
            self._columns[key] = [part.tolist() for part in np.split(rows, cuts)]
        return self._columns[key][m]


def _runs(maps) -> list:
    """Sorted ints as flat [first, last, first, last, ...] runs."""
    out: list = []
    for m in sorted(maps):
        if out and m == out[-1] + 1:
            out[-1] = m
        else:
            out += [m, m]
    return out


class _Tracer:
    """Traces by `map_sources`' rules, one map at a time, memoised: the maps a set of maps reads is
    the union of what each one reads, so the trace from map m of a value is worked out once and
    shared (a DenseNet's concatenations pass each map on unchanged, block after block). A trace is
    `(sources, path)`: `((entry, maps), ...)` in execution order, and the entries walked through
    whose step is not the identity, latest first."""

    def __init__(self, wiring: _Wiring, pos: dict):
        self.wiring, self.pos = wiring, pos
        self._memo: dict = {}

    def of_target(self, node, out_map: int) -> tuple:
        """The trace of map `out_map` of `node`, starting with its own wiring (as `map_sources`)."""
        return self._through(node, out_map, walked=False)

    def _of(self, name: str, m: int) -> tuple:
        key = (name, m)
        if key not in self._memo:
            node = self.wiring.by_name.get(name)
            if node is None or _src._is_source(node.layer):  # an input, or the nearest conv/dense layer
                self._memo[key] = (((self.pos[name], (m,)),), ())
            else:
                self._memo[key] = self._through(node, m, walked=True)
        return self._memo[key]

    def _through(self, node, m: int, walked: bool) -> tuple:
        parts = []
        for k, (value, _) in enumerate(self.wiring(node)[0]):
            for i in self.wiring.column(node, k, m):
                parts.append(self._of(value, i))
        mine = (self.pos[node.name],) if walked and not self.wiring.plain(node) else ()
        if len(parts) == 1:
            return parts[0][0], mine + parts[0][1]
        found: dict = {}
        path: set = set()
        for sources, p in parts:
            path.update(p)
            for k, maps in sources:
                found.setdefault(k, set()).update(maps)
        return (tuple((k, tuple(sorted(found[k]))) for k in sorted(found)),
                mine + tuple(sorted(path, reverse=True)))


def _traced(node, wiring: _Wiring) -> bool:
    """The nodes whose maps the page traces: channel concatenations, shuffles, grouped/tabled convs."""
    layer, role = node.layer, getattr(node.layer, "role", None)
    if role == "conv":
        return _groups(layer) > 1 or getattr(layer, "connections", None) is not None
    if role == "merge":
        return not getattr(layer, "elementwise", False) and _src._channel_concat(layer, wiring.shapes[node.name])
    if _src._moves_values(layer) and len(node.inputs) == 1:
        perm = wiring(node)[2]
        return perm is not None and perm != sorted(perm)
    return False


def sources_view(model, shapes: dict) -> dict:
    """What the page embeds about map sources (see the module docstring). `shapes`: every value's
    per-example shape (inputs and nodes). A node whose wiring cannot be worked out is left out."""
    wiring = _Wiring(model, shapes)
    names = list(input_names(model)) + [n.name for n in wiring.nodes]
    pos = {n: k for k, n in enumerate(names)}
    tracer = _Tracer(wiring, pos)
    try:
        text = _src.node_wiring(model, shapes)
    except (ValueError, TypeError):
        text = {}
    paths: list = []
    path_ids: dict = {}
    nodes = {}
    for node in wiring.nodes:
        try:
            if not _traced(node, wiring):
                continue
            maps = [_map_record(tracer, names, node, j, paths, path_ids) for j in range(shapes[node.name][-1])]
        except (ValueError, TypeError, RecursionError):  # wiring that cannot be worked out: nothing to show
            continue
        reads, rule, perm = wiring(node)
        nodes[node.name] = {"rule": rule, "perm": perm, "from": pos[reads[0][0]] if perm else None, "maps": maps}
    return {"wiring": text, "nodes": nodes, "paths": paths}


def _map_record(tracer: _Tracer, names: list, node, j: int, paths: list, path_ids: dict) -> list:
    sources, key = tracer.of_target(node, j)
    if key not in path_ids:
        path_ids[key] = len(paths)
        paths.append([[k, tracer.wiring(tracer.wiring.by_name[names[k]])[1]] for k in key])
    flat: list = []
    for k, maps in sources:
        flat += [k, _runs(maps)]
    return [path_ids[key], flat]
