"""`export(model, path, opset=17)`: a featuremaps `Sequential` or `Graph` as an ONNX file.

The file follows ONNX's conventions at its boundary: a graph input of per-example shape (H, W, C)
is an ONNX input (N, C, H, W) (N symbolic unless `batch` is given), a vector input (N, F); every
rank-4 graph output is NCHW, every other one as featuremaps computes it. Inside, each featuremaps
node becomes the ONNX node (or the few nodes) of the same name whose last output tensor carries
that name; weights are initializers named as in `state_dict()` ("C1.weight"), conv weights
written OIHW (from HWIO). Nested containers are flattened with dotted names ("block.conv").
How each layer is written, and how layouts are kept, is in `featuremaps.onnx._export_layers`.

The model is written as it computes in eval mode: BatchNorm with its running statistics, Dropout
left out. H and W are fixed (a 'same' padding is resolved for them), so a model needs an input
shape: the one it was built with, or `input_shape=`.

Every layout conversion and rewrite (a weight transposed, a Transpose inserted before a Flatten,
a Dropout left out, a connection table written as zero kernels) is one line of a log: it is
returned on the model as `model.export_log` (a list of str) and stored in the file's metadata under
"featuremaps.export_log". The file passes `onnx.checker.check_model(full_check=True)` before it is
written, atomically (`featuremaps._atomic`); an existing file is replaced only with `overwrite=True`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import nn
from .._atomic import atomic_write
from ._export_emit import Emitter
from ._export_layers import NO_ONNX_FORM, converter_for
from ._loader import ONNXError

__all__ = ["export", "MIN_EXPORT_OPSET"]

MIN_EXPORT_OPSET = 13  # Softmax's single-axis form; Clip, Pad and Resize take their operands as inputs
_MAX_PROTO = 2**31 - 1  # protobuf's limit for one message: larger models would need external data


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("featuremaps.onnx.export needs the `onnx` package: pip install 'featuremaps[onnx]'") from None
    return onnx


def _walk(model, prefix: str = ""):
    """(dotted name, layer) of every non-container layer, nested containers included."""
    for n in nn.graph.model_nodes(model):
        name = f"{prefix}{n.name}"
        if nn.graph.is_container(n.layer):
            yield from _walk(n.layer, name + ".")
        else:
            yield name, n.layer


def _check_layers(model) -> None:
    bad = [(name, type(layer).__name__) for name, layer in _walk(model) if converter_for(layer) is None]
    if bad:
        listed = ", ".join(f"{name!r} ({kind})" for name, kind in bad)
        none = f" Registered layers without one: {', '.join(c.__name__ for c in NO_ONNX_FORM)}." if NO_ONNX_FORM else ""
        raise ONNXError(f"export: {len(bad)} layer(s) have no ONNX form: {listed}.{none} Replace them, or "
                        "export a model without them")


def _input_shapes(model, input_shape) -> dict:
    names = nn.graph.input_names(model)
    if input_shape is None:
        given = dict(model.input_shapes) if isinstance(model, nn.Graph) else {"input": model.input_shape}
    elif isinstance(input_shape, dict):
        given = {n: input_shape.get(n) for n in names}
    else:
        given = {names[0]: input_shape} if len(names) == 1 else dict(zip(names, input_shape))
    missing = [n for n in names if given.get(n) is None]
    if missing:
        raise ValueError(f"export: no per-example shape for input(s) {missing}; the model was built without one, "
                         "so pass input_shape=(H, W, C) (or a dict name → shape for several inputs)")
    out = {}
    for n in names:
        shape = tuple(int(s) for s in given[n])
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError(f"export: input_shape of {n!r} must be (H, W, C) or (F,) without the batch dimension; "
                             f"received {given[n]!r}")
        out[n] = shape
    return out


def _emit(e: Emitter, model, env: dict, shapes_in: dict, prefix: str) -> dict:
    """Emit `model`'s nodes, reading `env` (featuremaps name → tensor); returns every value's tensor."""
    shapes = nn.graph.value_shapes(model, shapes_in)
    env = dict(env)
    for n in nn.graph.model_nodes(model):
        name = f"{prefix}{n.name}"
        ins = [env[i] for i in n.inputs]
        if nn.graph.is_container(n.layer):
            inner = nn.graph.input_names(n.layer)
            sub = _emit(e, n.layer, dict(zip(inner, ins)), {k: shapes[i] for k, i in zip(inner, n.inputs)},
                        name + ".")
            outs = n.layer.output_names
            if len(outs) != 1:
                raise ONNXError(f"export: nested graph {name!r} has {len(outs)} outputs; only one-output nested "
                                "models can be exported")
            env[n.name] = sub[outs[0]]
            continue
        e.claim(name)
        env[n.name] = converter_for(n.layer)(e, name, n.layer, ins, [shapes[i] for i in n.inputs], shapes[n.name])
    return env


def _value_info(onnx, name: str, shape: tuple, elem: int, batch):
    n = batch if batch is not None else "N"
    dims = [n, shape[2], shape[0], shape[1]] if len(shape) == 3 else [n, *shape]
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def _rename(nodes, old: str, new: str) -> None:
    for node in nodes:
        for seq in (node.input, node.output):
            for k, t in enumerate(seq):
                if t == old:
                    seq[k] = new


def _outputs(e: Emitter, model, env: dict, shapes: dict, elem: int, batch) -> list:
    """The graph outputs, named as the model's output nodes, rank-4 ones in NCHW."""
    infos = []
    for o in model.output_names:
        t = env[o]
        if t != o or e.layout[t] != e.boundary(t):
            if t == o:  # the producer's tensor takes another name; the output node takes this one
                t = e.fresh(f"{o}/nhwc")
                _rename(e.nodes, o, t)
                e.tag(t, e.layout[o], e.rank[o])
            if e.layout[t] != e.boundary(t):
                e.node("Transpose", [t], o, name=e.fresh(f"{o}/to_nchw"), perm=[0, 3, 1, 2], layout="nchw", rank=4)
                e.log.append(f"output {o!r}: Transpose {t!r} NHWC → NCHW (rank-4 outputs are NCHW)")
            else:
                e.node("Identity", [t], o, name=e.fresh(f"{o}/output"), layout=e.layout[t], rank=e.rank[t])
        infos.append(_value_info(e.onnx, o, shapes[o], elem, batch))
    return infos


def _check_args(model, opset, batch, onnx) -> None:
    if not isinstance(model, (nn.Sequential, nn.Graph)):
        raise TypeError(f"export: model must be a featuremaps.nn.Sequential or Graph; received {type(model).__name__}")
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_EXPORT_OPSET <= opset <= top:
        raise ValueError(f"export: opset must be an int from {MIN_EXPORT_OPSET} to {top} (this onnx package's "
                         f"newest); received {opset!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
        raise ValueError(f"export: batch must be None (a symbolic batch dimension 'N') or a positive int; "
                         f"received {batch!r}")


def build(model, *, opset: int = 17, batch=None, input_shape=None):
    """The ONNX `ModelProto` of `model` and its log (what `export` writes); see the module docstring."""
    onnx = _onnx()
    _check_args(model, opset, batch, onnx)
    _check_layers(model)
    inputs = _input_shapes(model, input_shape)
    dtype = model.parameter_dtype("export")
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    e = Emitter(onnx, int(opset), dtype)
    env, in_infos = {}, []
    for name, shape in inputs.items():
        env[name] = e.tag(e.claim(name), "nchw" if len(shape) == 3 else "plain", len(shape) + 1)
        in_infos.append(_value_info(onnx, name, shape, elem, batch))
        if len(shape) == 3:
            e.log.append(f"input {name!r}: NHWC {shape} read as ONNX NCHW (N, {shape[2]}, {shape[0]}, {shape[1]})")
    env = _emit(e, model, env, inputs, "")
    out_infos = _outputs(e, model, env, nn.graph.value_shapes(model, inputs), elem, batch)
    graph = onnx.helper.make_graph(e.nodes, "featuremaps", in_infos, out_infos, e.inits)
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="featuremaps",
                                   producer_version=_version(), ir_version=onnx.helper.find_min_ir_version_for(opsets))
    onnx.helper.set_model_props(proto, {"featuremaps.export_log": "\n".join(e.log)})
    return proto, e.log


def _version() -> str:
    from .. import __version__
    return __version__


def export(model, path, *, opset: int = 17, batch=None, input_shape=None, overwrite: bool = False) -> Path:
    """Write `model` (a `Sequential` or `Graph`) to the ONNX file `path`; returns the path.

    `opset` is the default-domain opset (13 to the installed onnx package's newest); `batch` fixes
    the batch dimension (None: symbolic 'N'); `input_shape` is the per-example (H, W, C) when the
    model was built without one (a dict name → shape for several inputs). An existing `path` is
    replaced only with `overwrite=True`. The conversion log is set on `model.export_log` and stored
    in the file. Raises `ONNXError` naming every layer that has no ONNX form.
    """
    onnx = _onnx()
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"export: path {str(path)!r} is a directory; give a file name such as model.onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"export: the directory of path {str(path)!r} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"export: {str(path)!r} exists; pass overwrite=True to replace it")
    proto, log = build(model, opset=opset, batch=batch, input_shape=input_shape)
    data = proto.SerializeToString()
    if len(data) > _MAX_PROTO:
        raise ONNXError(f"export: the model needs {len(data):,} bytes, more than one ONNX file holds (2 GiB) without "
                        "external data, which export does not write")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ONNXError(f"export: the ONNX graph built for this model fails onnx.checker (a bug in "
                        f"featuremaps.onnx.export; please report it): {err}") from err
    with atomic_write(path, suffix=".onnx.tmp") as tmp:
        tmp.write_bytes(data)
    object.__setattr__(model, "export_log", list(log))
    return path
