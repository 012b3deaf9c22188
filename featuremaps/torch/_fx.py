"""`from_module(module, input_shape)`: a `torch.nn.Module` as a featuremaps model, through torch.fx.

1. The module is traced symbolically (`torch.fx.symbolic_trace`), so its `forward` is never run on
   a file's say-so: the graph is what the Python code does with a proxy input.
2. The traced graph is run once on a zero input of the given shape (`_Record`): that gives the
   shape of every tensor and the value of every non-tensor (the ints of `x.size(0)`), so the shape
   arithmetic of `x.view(x.size(0), -1)` needs no layer.
3. Each node computed from the input becomes featuremaps layers (`_fx_ops`), channels-last. The
   ONNX importer's `Builder` does the layout work (torch tensors are NCHW like ONNX's): permutes and
   reshapes are relabellings where the memory order allows, a flatten of maps keeps (h, w, c) order
   and the Dense after it gets its weight rows permuted; every such step is one line of
   `model.import_log`.

A chain becomes a `Sequential`. `model.torch_modules` maps each featuremaps node with weights to
the torch module path it came from (what `export_state_dict` names the tensors after).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..onnx._import import _assemble
from ..onnx._import_build import Builder, _clean, own_copies
from ..onnx._import_layout import NHWC, Held, Unsupported
from ._fx_ops import converter_for

__all__ = ["from_module", "ONNX_ROUTE"]

ONNX_ROUTE = ("the ONNX route handles more: torch.onnx.export(module, x, 'model.onnx', dynamo=False), then "
              "featuremaps.onnx.load('model.onnx')")


def _torch():
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        raise ImportError("featuremaps.torch.from_module needs torch (pip install torch); torch is not "
                          "installed") from None
    return torch


def _check_shape(input_shape) -> tuple:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"from_module: input_shape must be the per-example shape (H, W, C) (or (F,) for "
                         f"vectors) of positive ints; received {input_shape!r}")
    return shape


def _trace(torch, module):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_module: module must be a torch.nn.Module; received {type(module).__name__}")
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as e:  # TraceError, control flow on a proxy, ...: fx raises many kinds
        raise ValueError(f"from_module: torch.fx cannot trace {type(module).__name__}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. {ONNX_ROUTE}") from None


def _record(torch, gm, example):
    """Run the traced graph once: node name → its value (tensors as is)."""
    values = {}

    class _Record(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n.name] = out
            return out

    with torch.no_grad():
        _Record(gm).run(example)
    return values


def _dtype(torch, module):
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _classify(torch, gm, values):
    """(computed tensor nodes, in order; placeholder nodes): a tensor is computed when it depends on
    an input; everything else (parameters, sizes, ints) is a constant."""
    dyn, order, inputs = set(), [], []
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            inputs.append(n)
            dyn.add(n.name)
        elif n.op in ("call_module", "call_function", "call_method"):
            reads = {a.name for a in n.all_input_nodes}
            if reads & dyn and isinstance(values.get(n.name), torch.Tensor):
                dyn.add(n.name)
                order.append(n)
    return order, inputs, dyn


def _check_mapped(gm, order) -> None:
    bad = []
    for n in order:
        if converter_for(gm, n) is None:
            what = (f"module {n.target!r} ({type(gm.get_submodule(n.target)).__name__})" if n.op == "call_module"
                    else f"{n.op} {getattr(n.target, '__name__', n.target)!s}")
            bad.append(f"node {n.name!r}: {what}")
    if bad:
        raise ValueError(f"from_module: no featuremaps layer form for {len(bad)} node(s): {'; '.join(bad)}. "
                         f"No model was built; {ONNX_ROUTE}")


def _builder(torch, values, dyn):
    shapes, consts = {}, {}
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            shapes[k] = tuple(v.shape)
            if k not in dyn:
                consts[k] = v.detach().cpu().numpy()
    return Builder(consts, shapes, set())


def from_module(module, input_shape):
    """`module` (a `torch.nn.Module`) as a featuremaps `Sequential` (a chain) or `Graph`, in eval mode.

    `input_shape` is the per-example featuremaps shape, (H, W, C) for images (the torch input is
    (N, C, H, W)). The module is put in eval mode and traced with torch.fx; a module fx cannot trace,
    or one with nodes that have no featuremaps layer form, raises one ValueError naming them (and
    the ONNX route). The result has `import_log` and `torch_modules` (featuremaps node → torch module
    path, for the nodes with weights)."""
    torch = _torch()
    shape = _check_shape(input_shape)
    gm = _trace(torch, module.eval())
    nchw = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    example = torch.zeros((1,) + nchw, dtype=_dtype(torch, module))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"from_module: the module's forward must take one input; it takes "
                         f"{[n.name for n in placeholders]}. {ONNX_ROUTE}")
    try:
        values = _record(torch, gm, example)
    except Exception as e:
        raise ValueError(f"from_module: {type(module).__name__} does not run on an input of shape "
                         f"{tuple(example.shape)} (NCHW, from input_shape {shape}): {type(e).__name__}: {e}") from None
    order, inputs, dyn = _classify(torch, gm, values)
    _check_mapped(gm, order)
    b = _builder(torch, values, dyn)
    b.readers = {n.name: len(n.users) for n in gm.graph.nodes}
    name = b.unique(_clean(inputs[0].name) or "input")
    s = (1,) + nchw
    perm = NHWC if len(s) == 4 else (0, 1)
    b.held[inputs[0].name] = Held(name, s, perm, tuple(s[p] for p in perm[1:]))
    cx = SimpleNamespace(b=b, gm=gm, values=values, torch=torch, torch_modules={})
    for n in order:
        before = len(b.nodes)
        try:
            converter_for(gm, n)(cx, n)
        except Unsupported as e:
            raise ValueError(f"from_module: node {n.name!r} ({n.op} {getattr(n.target, '__name__', n.target)!s}): "
                             f"{e}. No model was built; {ONNX_ROUTE}") from None
        if n.op == "call_module":
            for fm_name, layer, _ in b.nodes[before:]:
                if layer.parameters() or dict(layer.named_buffers()):
                    cx.torch_modules[fm_name] = n.target
    outputs = _outputs(gm)
    model = _assemble(b, SimpleNamespace(outputs=outputs), {inputs[0].name: name}, b.shapes, {name: b.held[
        inputs[0].name].fshape})
    own_copies(model)
    model.import_log = list(b.log)
    model.torch_modules = dict(cx.torch_modules)
    return model


def _outputs(gm) -> list[str]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    arg = out.args[0]
    items = list(arg) if isinstance(arg, (tuple, list)) else [arg]
    if not all(hasattr(a, "name") for a in items):
        raise ValueError(f"from_module: the module must return a tensor or a tuple of tensors; it returns {arg!r}")
    return [a.name for a in items]


def example_input(input_shape, dtype=np.float32, seed=0) -> np.ndarray:
    """A random NHWC batch of 2 for `input_shape` (tests and probes)."""
    return np.random.default_rng(seed).standard_normal((2,) + _check_shape(input_shape)).astype(dtype)
