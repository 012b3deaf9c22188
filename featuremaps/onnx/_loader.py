"""Parse an ONNX file safely: protobuf only, external data confined to the model's directory,
a memory budget checked before anything large is allocated, and a topological order (or a clear
error naming the nodes of a cycle or the node that reads a missing tensor).

Nothing in a model file is executed or unpickled: the file is decoded by protobuf, tensors are
read from their raw bytes or typed fields by `onnx.numpy_helper`, and external data is read by
plain `open`/`seek`/`read` after the path checks below (we never call `onnx.load_external_data`).
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .. import limits

DEFAULT_MAX_BYTES = limits.DEFAULTS["max_tensor_bytes"]  # 4 GiB; the default max_bytes follows the limit


class ONNXError(ValueError):
    """A model file that cannot be read or run: the message names the file, node or tensor."""


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the extra is installed in the test env
        raise ImportError("featuremaps.onnx needs the 'onnx' package: pip install 'featuremaps[onnx]'") from None
    return onnx


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n:,} bytes"


def budget(max_bytes: int | None) -> int:
    """The memory budget in force: `max_bytes` when the caller chose one, else (None, or the unchanged
    default DEFAULT_MAX_BYTES) `featuremaps.limits` max_tensor_bytes, which `limits.override` and
    FEATUREMAPS_MAX_TENSOR_BYTES set."""
    return limits.get("max_tensor_bytes") if max_bytes is None or max_bytes == DEFAULT_MAX_BYTES else max_bytes


def check_budget(nbytes: int, max_bytes: int | None, what: str) -> None:
    """Refuse an allocation of `nbytes` larger than the budget (see `budget`), before it is made."""
    bound = budget(max_bytes)
    if nbytes > bound:
        raise ONNXError(f"{what} would need {_gib(nbytes)}, more than the memory budget of {_gib(bound)}; "
                        f"pass max_bytes=... to run() to allow more, or {limits.how_to_raise('max_tensor_bytes')}")


def tensor_nbytes(t, what: str) -> int:
    """Bytes a TensorProto's array needs, from its dims and type alone (nothing allocated)."""
    onnx = _onnx()
    if any(d < 0 for d in t.dims):
        raise ONNXError(f"{what}: negative dimension in {list(t.dims)}")
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    except (KeyError, ValueError, TypeError):
        raise ONNXError(f"{what}: unknown tensor data type {t.data_type}") from None
    n = 1
    for d in t.dims:
        n *= int(d)
    return n * max(np.dtype(dtype).itemsize, 1)


# --- external data --------------------------------------------------------------------------
def _external_info(t) -> dict:
    return {e.key: e.value for e in t.external_data}


def _safe_path(base_dir: str, location: str, what: str) -> str:
    """Resolve `location` inside `base_dir`, refusing absolute paths, '..' and escaping symlinks."""
    if not location:
        raise ONNXError(f"{what}: external data has no 'location'")
    if "\0" in location:
        raise ONNXError(f"{what}: external data location {location!r} contains a NUL byte; refused")
    parts = location.replace("\\", "/").split("/")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise ONNXError(f"{what}: external data location {location!r} is an absolute path; only files inside "
                        f"the model's directory {base_dir!r} are read")
    if ".." in parts:
        raise ONNXError(f"{what}: external data location {location!r} contains '..'; only files inside "
                        f"the model's directory {base_dir!r} are read")
    root = os.path.realpath(base_dir)
    full = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, full]) != root:
        raise ONNXError(f"{what}: external data location {location!r} resolves to {full!r}, outside the model's "
                        f"directory {root!r} (a symlink leaving it?); refused")
    if not os.path.isfile(full):
        raise ONNXError(f"{what}: external data file {location!r} not found in {root!r}")
    return full


def _read_external(t, base_dir: str | None, max_bytes: int, what: str) -> None:
    """Fill t.raw_data from its external file after the path and size checks."""
    info = _external_info(t)
    if base_dir is None:
        raise ONNXError(f"{what}: the tensor's data is in an external file, but the model was given as an "
                        f"object, not a path; pass the .onnx file's path")
    path = _safe_path(base_dir, info.get("location", ""), what)
    need = tensor_nbytes(t, what)
    check_budget(need, max_bytes, what)
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else need
    except ValueError:
        raise ONNXError(f"{what}: external data offset/length must be integers; received {info}") from None
    size = os.path.getsize(path)
    if offset < 0 or length != need or offset + length > size:
        raise ONNXError(f"{what}: external data needs {need} bytes at offset {offset} of {info['location']!r}, "
                        f"but the entry says length {length} and the file has {size} bytes")
    with open(path, "rb") as f:
        f.seek(offset)
        t.raw_data = f.read(length)
    del t.external_data[:]
    t.data_location = 0  # DEFAULT


def to_array(t, what: str, base_dir: str | None, max_bytes: int) -> np.ndarray:
    """TensorProto → ndarray, with the external-data and budget checks; `what` names it in errors."""
    onnx = _onnx()
    check_budget(tensor_nbytes(t, what), max_bytes, what)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        _read_external(t, base_dir, max_bytes, what)
    if t.HasField("raw_data") and len(t.raw_data) != tensor_nbytes(t, what) and t.data_type != onnx.TensorProto.STRING:
        raise ONNXError(f"{what}: holds {len(t.raw_data)} bytes of data but its dims {list(t.dims)} need "
                        f"{tensor_nbytes(t, what)}")
    try:
        return onnx.numpy_helper.to_array(t)
    except (ValueError, TypeError) as e:
        raise ONNXError(f"{what}: cannot be read as an array ({e})") from None


# --- parsing ----------------------------------------------------------------------------------
def parse(model_or_path):
    """Return (ModelProto, base_dir): decode a path or bytes, or take a ModelProto as is."""
    onnx = _onnx()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, None
    if isinstance(model_or_path, (bytes, bytearray)):
        data, base, name = bytes(model_or_path), None, "the model bytes"
    elif isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise ONNXError(f"ONNX file {path!r} not found")
        limits.check("max_tensor_bytes", os.path.getsize(path), f"ONNX file {path!r}", ONNXError)
        with open(path, "rb") as f:
            data = f.read()
        base, name = os.path.dirname(os.path.abspath(path)), repr(path)
    else:
        raise TypeError(f"run: model_or_path must be a path, bytes or an onnx.ModelProto; "
                        f"received {type(model_or_path).__name__}")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise ONNXError(f"{name} is not a valid ONNX file (truncated or malformed: {e})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ONNXError(f"{name} is not a valid ONNX file (truncated or malformed: it has no graph)")
    return model, base


def node_label(node, index: int) -> str:
    return f"node {node.name or f'#{index}'!r} ({node.op_type})"


@dataclass
class Order:
    """A topological order of a graph's nodes plus what each tensor's last reader is."""
    nodes: list
    last_use: dict = field(default_factory=dict)


def topo_order(graph, known: set) -> Order:
    """Kahn's algorithm over tensor names; errors name the missing tensor's reader or the cycle. A graph of
    more than `featuremaps.limits` max_graph_nodes nodes is refused first."""
    limits.check("max_graph_nodes", len(graph.node), f"the graph {graph.name!r}", ONNXError)
    producers = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            if o:
                producers[o] = i
    for i, n in enumerate(graph.node):
        for name in n.input:
            if name and name not in known and name not in producers:
                raise ONNXError(f"{node_label(n, i)} reads tensor {name!r}, which is not a graph input, an "
                                f"initializer or any node's output (missing initializer?)")
    waiting = [sum(1 for x in set(n.input) if x and x not in known) for n in graph.node]
    readers = {}
    for i, n in enumerate(graph.node):
        for x in set(n.input):
            if x and x not in known:
                readers.setdefault(x, []).append(i)
    ready = deque(i for i, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for o in graph.node[i].output:
            for j in readers.get(o, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
    if len(order) != len(graph.node):
        placed = set(order)
        stuck = [node_label(graph.node[i], i) for i in range(len(graph.node)) if i not in placed]
        raise ONNXError(f"the graph is not a DAG: these nodes wait on each other in a cycle: {', '.join(stuck)}")
    nodes = [graph.node[i] for i in order]
    last = {}
    for k, n in enumerate(nodes):
        for x in n.input:
            last[x] = k
    return Order(nodes, last)
