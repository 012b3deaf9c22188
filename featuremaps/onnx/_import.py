"""`load(path) -> Graph | Sequential`: an ONNX graph as a featuremaps model (NHWC input).

The file is parsed and checked by `Program` (so every safety rule of `run` holds: protobuf only,
external data inside the model's directory, the memory budget, local functions inlined). Then:

1. Each tensor is classed as computed from the graph input or constant. `Shape` of a computed
   value is a constant once the input shape is fixed, so shape subgraphs (torch's
   `x.view(x.size(0), -1)`: Shape → Gather → Unsqueeze → Concat → Reshape) fold away.
2. The graph is run once by `run`'s own converters on an input of the given shape: that gives
   every tensor's shape and the value of every constant.
3. Each computed node becomes featuremaps layers (`_import_ops`), channels-last. Transposes and
   reshapes become relabellings where the memory order allows (`_import_layout`); a flatten of
   maps keeps (h, w, c) order and the Dense after it gets its weight rows permuted; an Add of a
   per-channel constant after a Conv or Dense joins its bias; Dropout and Identity go.

Every such step is one line of `model.import_log`. `model.onnx_tensors` maps each featuremaps node
that equals an ONNX tensor (NHWC where 4-D) to that tensor's name. A chain becomes a `Sequential`.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ._import_build import Builder, _clean, own_copies, readable_name
from ._import_layout import NHWC, Held, Unsupported
from ._import_ops import IMPORTERS
from ._loader import DEFAULT_MAX_BYTES, ONNXError, node_label

__all__ = ["load", "importable_ops"]


def importable_ops() -> list[str]:
    """The ONNX op types `load` turns into featuremaps layers (others are fine when constant)."""
    return sorted(IMPORTERS)


def _classify(nodes, inputs: set):
    """(computed tensors, shape-derived constants): Shape/Size of a computed value is constant."""
    dyn, shaped = set(inputs), set()
    for n in nodes:
        ins = [x for x in n.input if x]
        if n.op_type in ("Shape", "Size"):
            if any(x in dyn for x in ins):
                shaped.update(o for o in n.output if o)
        elif any(x in dyn for x in ins):
            dyn.update(o for o in n.output if o)
        elif any(x in shaped for x in ins):
            shaped.update(o for o in n.output if o)
    return dyn, shaped


def _check_importable(nodes, dyn: set) -> None:
    bad = {}
    for i, n in enumerate(nodes):
        if any(o in dyn for o in n.output) and n.op_type not in IMPORTERS:
            bad.setdefault(n.op_type, []).append(n.name or f"#{i}")
    if bad:
        listed = "; ".join(f"{op}: nodes {', '.join(map(repr, names))}" for op, names in sorted(bad.items()))
        raise ONNXError(f"load: the model uses ops that have no featuremaps layer form: {listed}. No model was "
                        f"built. Ops load converts: {', '.join(importable_ops())} (any supported op is fine where "
                        f"its inputs are constants)")


def _dims(vi) -> list:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _input_shapes(inputs, input_shape) -> dict:
    """ONNX input name → concrete ONNX shape (batch 1 where free), from the file and `input_shape`."""
    out = {}
    for vi in inputs:
        dims = _dims(vi)
        given = input_shape.get(vi.name) if isinstance(input_shape, dict) else input_shape
        if isinstance(input_shape, dict) is False and input_shape is not None and len(inputs) > 1:
            raise ValueError(f"load: the model has inputs {[i.name for i in inputs]}; give input_shape as a dict "
                             f"name → per-example shape")
        if not dims:
            raise ONNXError(f"load: input {vi.name!r} has no declared shape; it must be (N, C, H, W) or (N, F)")
        if given is not None:
            given = tuple(int(s) for s in given)
            want = (given[2], given[0], given[1]) if len(dims) == 4 and len(given) == 3 else given
            if len(want) != len(dims) - 1:
                raise ValueError(f"load: input_shape for {vi.name!r} must be per-example "
                                 f"{'(H, W, C)' if len(dims) == 4 else f'of {len(dims) - 1} dims'} (the model's "
                                 f"input has dims {dims}); received {given}")
            for d, w in zip(dims[1:], want):
                if isinstance(d, int) and d > 0 and d != w:
                    raise ValueError(f"load: input_shape {given} for {vi.name!r} disagrees with the model's "
                                     f"fixed dims {dims}")
            ex = want
        else:
            free = [d for d in dims[1:] if not (isinstance(d, int) and d > 0)]
            if free:
                raise ONNXError(f"load: input {vi.name!r} has free dims {dims} (N, C, H, W); pass "
                                f"input_shape=(H, W, C) (or a dict name → shape) to fix them")
            ex = tuple(dims[1:])
        batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else 1
        out[vi.name] = (int(batch),) + tuple(int(d) for d in ex)
    return out


def _evaluate(prog, feeds: dict, dyn: set):
    """Run the graph once: (shape of every tensor, value of every constant tensor)."""
    env = prog._feeds(feeds)
    shapes = {k: tuple(v.shape) for k, v in env.items()}
    consts = dict(prog.arrays)
    left = {}
    for n, _, _ in prog.plan:
        for x in n.input:
            left[x] = left.get(x, 0) + 1
    for i in range(len(prog.plan)):
        node, outs = prog.step(i, env)
        for name, v in zip(node.output, outs):
            if name:
                shapes[name] = tuple(v.shape)
                if name not in dyn:
                    consts[name] = np.ascontiguousarray(v.nchw())
        for x in node.input:
            left[x] -= 1
            if left[x] == 0 and x in dyn and x not in prog.outputs:
                env.pop(x, None)
    return shapes, consts


def _log_shape_folds(b, nodes, dyn, shaped, feeds) -> None:
    producer = {o: n for n in nodes for o in n.output if o}
    for n in nodes:
        if not any(o in dyn for o in n.output):
            continue
        for x in n.input:
            if x in shaped:
                chain, todo = [], [x]
                while todo:
                    t = todo.pop()
                    p = producer.get(t)
                    if p is not None and p not in chain:
                        chain.append(p)
                        todo += [i for i in p.input if i in shaped or (i in producer and producer[i].op_type
                                                                        in ("Shape", "Size"))]
                steps = ", ".join(f"{p.op_type} {p.name!r}" for p in reversed(chain))
                b.log.append(f"shape subgraph ({steps}) evaluated for input shape {list(feeds.values())[0]}: "
                             f"{n.op_type} {n.name!r} reads {x!r} = {b.consts[x].tolist()}")


def _convert(b, prog, nodes, attrs, dyn) -> None:
    inits = set(prog.arrays)
    for i, (node, a) in enumerate(zip(nodes, attrs)):
        if not any(o in dyn for o in node.output):
            continue
        version = next(v for n, _, v in prog.plan if n is node)
        try:
            IMPORTERS[node.op_type](b, node, a, version, readable_name(node, inits))
        except Unsupported as e:
            raise ONNXError(f"load: {node_label(node, i)}: {e}; no model was built") from None


def _assemble(b, prog, input_names: dict, shapes: dict, input_shape_of: dict):
    outs = []
    for o in prog.outputs:
        h = b.held.get(o)
        if h is None:
            raise ONNXError(f"load: graph output {o!r} is a constant (it does not depend on the input)")
        h = b.canonical(h, _clean(o) or "output")
        if h.name in input_names.values():
            raise ONNXError(f"load: graph output {o!r} is the graph input itself")
        outs.append(h.name)
        b.onnx_tensors.setdefault(h.name, o)
    ins = list(input_names.values())
    chain = len(ins) == 1 and len(outs) == 1 and b.nodes and outs[0] == b.nodes[-1][0] and all(
        inputs == [prev] for (_, _, inputs), prev in zip(b.nodes, ins + [n for n, _, _ in b.nodes]))
    if chain:
        model = nn.Sequential([(n, layer) for n, layer, _ in b.nodes], input_shape=input_shape_of[ins[0]])
    else:
        model = nn.Graph({n: input_shape_of[n] for n in ins}, b.nodes, outs)
    return model.eval()


def load(model_or_path, *, input_shape=None, max_bytes=DEFAULT_MAX_BYTES):
    """An ONNX model (path, bytes or ModelProto) as a featuremaps `Sequential` (a chain) or `Graph`.

    The model's input becomes NHWC (an ONNX (N, C, H, W) input is fed as (N, H, W, C)); `input_shape`
    is its per-example shape (H, W, C) (a dict name → shape for several inputs), needed when the file
    leaves dims free. An op with no featuremaps layer form raises one `ONNXError` listing every such
    op with its nodes. The result has `import_log` (list of str, one line per fold) and
    `onnx_tensors` (featuremaps node → the ONNX tensor it equals, NHWC where 4-D)."""
    from . import Program
    prog = Program(model_or_path, max_bytes=max_bytes)
    nodes, attrs = [n for n, _, _ in prog.plan], prog.attrs
    dyn, shaped = _classify(nodes, {i.name for i in prog.inputs})
    _check_importable(nodes, dyn)
    feeds_shape = _input_shapes(prog.inputs, input_shape)
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in prog.inputs:
        import onnx
        dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = rng.standard_normal(feeds_shape[vi.name]).astype(dtype)
    shapes, consts = _evaluate(prog, feeds, dyn)
    prog.drop_converted()  # the run's HWIO weights: the layers get their own below (peak memory)
    taken = set()
    input_names, input_shape_of = {}, {}
    b = Builder(consts, shapes, taken)
    for vi in prog.inputs:
        name = b.unique(_clean(vi.name) or "input")
        s = feeds_shape[vi.name]
        perm = NHWC if len(s) == 4 else tuple(range(len(s)))
        h = Held(name, s, perm, tuple(s[p] for p in perm[1:]))
        b.held[vi.name] = h
        input_names[vi.name], input_shape_of[name] = name, h.fshape
    b.readers = {}
    for n in nodes:
        for x in n.input:
            b.readers[x] = b.readers.get(x, 0) + 1
    for o in prog.outputs:
        b.readers[o] = b.readers.get(o, 0) + 1
    _log_shape_folds(b, nodes, dyn, shaped, feeds_shape)
    _convert(b, prog, nodes, attrs, dyn)
    model = _assemble(b, prog, input_names, shapes, input_shape_of)
    own_copies(model)
    model.import_log = list(b.log)
    model.onnx_tensors = {k: v for k, v in b.onnx_tensors.items() if k in b.layers}
    return model
