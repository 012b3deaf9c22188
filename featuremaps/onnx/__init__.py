"""`featuremaps.onnx`: run ONNX graphs with featuremaps' own NumPy ops (extra `onnx`).

`run(model_or_path, feeds)` executes an ONNX graph: inputs and outputs are NCHW, as in ONNX;
inside, spatial tensors are kept channels-last (NHWC) and OIHW weights become HWIO once per
initializer, so a chain of Conv / pool / norm / activation ops never transposes. The `onnx`
package only parses the file (imported lazily); every number is computed by
`featuremaps.functional` or NumPy. Opsets 7–21 of the ops CNNs use are supported (later opsets
too where those ops only gained element types); see `supported_ops()`, which also has the
ReduceMean/Sum/Max/Min that torch's dynamo exporter writes for a global average pool. Local
functions (the dynamo exporter's) are inlined first. Each intermediate tensor is dropped after its
last reader, so its memory is reused; inference BatchNorm runs as one multiply-add with its scale
and shift computed once per node. Not supported: 3-D convolution and pooling, training
mode, MaxPool's Indices output, Resize's cubic mode, antialias and tf_crop_and_resize.

Safety: nothing in a file is executed or unpickled; external data is read only from files inside
the model's own directory (absolute paths, '..' and symlinks that leave it are refused); tensors
whose size exceeds `max_bytes` are refused before they are allocated (left at its default, the budget
is `featuremaps.limits` max_tensor_bytes, 4 GiB unless raised by `limits.override` or
FEATUREMAPS_MAX_TENSOR_BYTES); a graph of more than max_graph_nodes nodes is refused; an unsupported
op, a cycle, a missing tensor or a failing node gives one `ONNXError` naming it, and, for a model
given as a path, the file.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from . import _ops, _ops_nn  # noqa: F401 - registers the converters
from ._layout import Value
from ._loader import DEFAULT_MAX_BYTES, ONNXError, budget, node_label, parse, to_array, topo_order
from ._registry import lookup, supported_ops
from ._import import importable_ops, load as _load_graph
from ._export import export
from .. import limits

__all__ = ["run", "prepare", "load", "export", "importable_ops", "Program", "ONNXError", "supported_ops",
           "DEFAULT_MAX_BYTES"]

MIN_OPSET = 7


def _attrs(node, where: str, onnx) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
            raise ONNXError(f"{where}: attribute {a.name!r} holds a subgraph, which is not supported")
        out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def _opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ONNXError("the model imports no version of the default ONNX opset ('' / 'ai.onnx')")
    v = int(versions[0])
    if v < MIN_OPSET:
        raise ONNXError(f"the model uses opset {v}; featuremaps.onnx supports opsets {MIN_OPSET} and later "
                        f"(re-export with a newer opset, e.g. onnx.version_converter)")
    return v


def _plan(nodes, opset: int, onnx) -> list:
    """(node, converter, since_version) per node, or ONE error listing every unsupported node."""
    plan, bad = [], {}
    for i, n in enumerate(nodes):
        fn, version = None, None
        if n.domain in ("", "ai.onnx"):
            try:
                version = onnx.defs.get_schema(n.op_type, opset, "").since_version
            except Exception:  # onnx raises SchemaError for unknown ops
                version = None
            fn = lookup(n.op_type, version) if version is not None else None
        if fn is None:
            key = n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}.{n.op_type}"
            key = key if version is None or n.op_type not in supported_ops() else f"{key} (version {version})"
            bad.setdefault(key, []).append(n.name or f"#{i}")
        plan.append((n, fn, version))
    if bad:
        listed = "; ".join(f"{op}: nodes {', '.join(map(repr, names))}" for op, names in sorted(bad.items()))
        raise ONNXError(f"the model uses ops featuremaps.onnx does not support: {listed}. Supported ops "
                        f"(opset {MIN_OPSET} to 21): {', '.join(supported_ops())}")
    return plan


def _naming_the_file(model_or_path, e: Exception) -> Exception:
    """`e` (an ONNXError, or a plain ValueError/TypeError) with the file's path in front, when the model came
    from a path the message does not name yet; of the same type."""
    if not isinstance(model_or_path, (str, os.PathLike)):
        return e
    path = os.fspath(model_or_path)
    return e if path in str(e) else type(e)(f"{path}: {e}")


def _plain(e: Exception) -> bool:
    return type(e) in (ONNXError, ValueError, TypeError)


@functools.wraps(_load_graph)
def load(model_or_path, *, input_shape=None, max_bytes=None):
    try:
        return _load_graph(model_or_path, input_shape=input_shape, max_bytes=max_bytes)
    except (ValueError, TypeError) as e:  # e.g. an input_shape that disagrees with the file's fixed dims
        if not _plain(e):
            raise
        raise _naming_the_file(model_or_path, e) from None


def _contiguous(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy()  # (np.ascontiguousarray would make a 0-d array 1-d)


def _without_initializers(model):
    """A copy of a model this module parsed, without its initializers (which are then arrays). The
    parsed bytes live as long as any part of the message does (protobuf frees a message's memory as
    one block), so dropping the old model halves the weights' memory while a model is loaded."""
    model.graph.ClearField("initializer")
    return type(model).FromString(model.SerializeToString())


class Program:
    """A parsed, checked ONNX graph, ready to run many times (weights converted once and cached)."""

    def __init__(self, model_or_path, *, max_bytes: int | None = None):
        """`max_bytes` None (or DEFAULT_MAX_BYTES) means the limit max_tensor_bytes in force. An `ONNXError`
        raised while the model is read and checked names the file when `model_or_path` is a path."""
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer))
                                      or max_bytes <= 0):
            raise ValueError(f"run: max_bytes must be a positive number of bytes; received {max_bytes!r}")
        self.max_bytes = budget(None if max_bytes is None else int(max_bytes))
        self.source = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
        try:
            self._read(model_or_path)
        except ONNXError as e:
            raise _naming_the_file(model_or_path, e) from None

    def _read(self, model_or_path) -> None:
        import onnx
        model, self.base_dir = parse(model_or_path)
        owned = model is not model_or_path  # parsed here from a path or bytes: no one else holds it
        if model.functions:  # the dynamo exporter's local functions
            from onnx import inliner
            model, owned = inliner.inline_local_functions(model), True
        self.arrays = self._initializers(model.graph)
        if owned:
            model = _without_initializers(model)
        g = model.graph
        opset = _opset(model)
        self.inputs = [i for i in g.input if i.name not in self.arrays]
        self.outputs = [o.name for o in g.output]
        known = set(self.arrays) | {i.name for i in g.input}
        order = topo_order(g, known)
        self.plan = _plan(order.nodes, opset, onnx)
        keep = set(self.outputs)
        self._dead = [[] for _ in order.nodes]  # tensors whose last reader is node k, dropped after it runs
        for name, k in order.last_use.items():
            if name and name not in keep:
                self._dead[k].append(name)
        self.attrs = [_attrs(n, node_label(n, i), onnx) for i, (n, _, _) in enumerate(self.plan)]
        for o in self.outputs:
            if o not in known and not any(o in n.output for n, _, _ in self.plan):
                raise ONNXError(f"graph output {o!r} is produced by no node (is the file truncated?)")
        self._cache = {}

    def _initializers(self, g) -> dict:
        """Every initializer as an array, each checked against the budget before it is read."""
        total, arrays = 0, {}
        for t in g.initializer:
            arrays[t.name] = to_array(t, f"initializer {t.name!r}", self.base_dir, self.max_bytes)
            total += arrays[t.name].nbytes
            if total > self.max_bytes:
                raise ONNXError(f"the initializers need more than the memory budget of {self.max_bytes:,} bytes "
                                f"(reached at {t.name!r}); pass max_bytes=... to allow more, or "
                                f"{limits.how_to_raise('max_tensor_bytes')}")
        return arrays

    def drop_converted(self) -> None:
        """Forget the converted weights `cached` holds (`load` builds layers of its own from the arrays)."""
        self._cache.clear()

    def cached(self, name: str, kind: str, a: np.ndarray, convert):
        """convert(a), remembered per initializer `name` (so a weight is transposed once)."""
        if name not in self.arrays:
            return convert(a)
        key = (name, kind)
        if key not in self._cache:
            self._cache[key] = convert(a)
        return self._cache[key]

    def _feeds(self, feeds) -> dict:
        if not isinstance(feeds, dict):
            raise TypeError(f"run: feeds must be a dict of input name → array; received {type(feeds).__name__}")
        names = [i.name for i in self.inputs]
        missing = [n for n in names if n not in feeds]
        extra = [n for n in feeds if n not in names and n not in self.arrays]
        if missing or extra:
            raise ValueError(f"run: the graph's inputs are {names}; missing {missing}, unknown {extra}")
        env = {}
        for i in self.inputs:
            a = np.asarray(feeds[i.name])
            dims = i.type.tensor_type.shape.dim if i.type.tensor_type.HasField("shape") else None
            if dims is not None and (len(dims) != a.ndim or any(
                    d.HasField("dim_value") and d.dim_value != s for d, s in zip(dims, a.shape))):
                want = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
                raise ValueError(f"run: input {i.name!r} must have shape {want}; received {a.shape}")
            env[i.name] = Value(a)
        for name, a in self.arrays.items():
            if name not in env:
                env[name] = Value(a)
        return env

    def step(self, i: int, env: dict) -> tuple:
        """Run node `i` on the values in `env` and store its outputs there; returns (node, outputs).
        A failing node raises one ONNXError naming it and its input shapes."""
        (node, fn, version), attrs = self.plan[i], self.attrs[i]
        ins = [env[x] if x else None for x in node.input]
        try:
            outs = fn(self, node, ins, attrs, version)
        except ONNXError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            shapes = ", ".join(str(v.shape) if v is not None else "-" for v in ins)
            raise ONNXError(f"{node_label(node, i)} failed on inputs of shape {shapes}: {e}") from e
        for name, v in zip(node.output, outs):
            if name:
                env[name] = v
        return node, outs

    def run(self, feeds: dict) -> list[np.ndarray]:
        """Execute the graph on `feeds` (name → NCHW array); returns the outputs in graph order."""
        env = self._feeds(feeds)
        for i in range(len(self.plan)):
            self.step(i, env)
            for name in self._dead[i]:  # so its memory is reused by the next arrays of its size
                env.pop(name, None)
        return [_contiguous(env[o].nchw()) for o in self.outputs]


def prepare(model_or_path, *, max_bytes: int | None = None) -> Program:
    """Parse and check a model once; call `.run(feeds)` on the result as often as needed."""
    return Program(model_or_path, max_bytes=max_bytes)


def run(model_or_path, feeds: dict, *, max_bytes: int | None = None) -> list[np.ndarray]:
    """Run an ONNX model (path, bytes or ModelProto) on `feeds` (input name → NCHW ndarray).

    Returns the graph's outputs, in order, as ndarrays in ONNX's layout. `max_bytes` bounds the
    memory any single tensor (and all initializers together) may need; larger ones are refused
    before they are allocated. Left at None it is the limit max_tensor_bytes (`featuremaps.limits`).
    """
    program = Program(model_or_path, max_bytes=max_bytes)
    try:
        return program.run(feeds)
    except ONNXError as e:
        raise _naming_the_file(model_or_path, e) from None
