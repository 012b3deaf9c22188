"""The inference plan: a chain of layers run with conv + bias + activation + max-pool fused.

`Sequential.forward` hands its layers here when no gradient is recorded (`no_grad`, as
`train.predict_logits` and `evaluate` run) and the compiled kernels are on
(`featuremaps.functional.accel`; `use_numba(False)` or FEATUREMAPS_NUMBA=0 switches the plan off
with them). `Graph.forward` does the same for each run of its nodes that is a simple chain
(`graph_chains`): the layers are of the kinds below, each node reads only the one before it and is
its only reader, and no value inside the run is a graph output. Training never comes here: with
autograd on, every layer runs as itself.

What the plan changes, layer by layer:

* **Conv2D → [ReLU | Tanh] → MaxPool2D (tiling) → [ReLU | Tanh]**: the conv runs without its
  bias (`F.conv2d`, whichever algorithm it picks), then one compiled pass pools the tiles and adds
  the bias to the pooled values (`functional._direct.pool_bias`), and the activations run in place
  on the pooled array. The activations are monotonic, so pooling before them selects the same
  value, and max(y) + b == max(y + b) exactly (rounding is monotonic); the only differences from
  the layer-by-layer path are the GEMM's row-order rounding without the bias row and libm's last bit.
* **Conv2D (bias-free) → BatchNorm2D (eval)**: the BatchNorm's scale folds into the conv weight and
  its shift becomes the conv's bias (computed in float64, then cast), saving the BatchNorm's pass.
* **ReLU / Tanh after a layer whose output is a fresh array**: in place, saving an allocation.

Everything else runs as the layer itself. The result agrees with the layer-by-layer path to float
rounding (tests/test_fused.py: every zoo model, tolerance derived from the dtype and the longest
reduction) and is of the same kind (Tensor or ndarray) as the input; the caller's input array is
never written to.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..functional import _direct
from ..tensor import Tensor, is_grad_enabled
from .activation import ReLU, Tanh
from .conv import Conv2D
from .dense import Dense, Flatten
from .norm import BatchNorm2D
from .pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D

__all__ = ["applies", "run_chain", "graph_chains"]

_FRESH = (Conv2D, Dense, MaxPool2D, AvgPool2D, GlobalAvgPool2D, BatchNorm2D)  # return a new array
_VIEWS = (Flatten,)  # may return a view of their input
_INPLACE = {ReLU: lambda a: np.maximum(a, 0, out=a), Tanh: lambda a: np.tanh(a, out=a)}  # F.relu's and F.tanh's ops


_CHAIN = frozenset({Conv2D, BatchNorm2D, ReLU, Tanh, MaxPool2D, *_FRESH, *_VIEWS})  # the kinds a Graph run may hold


def applies() -> bool:
    """Whether a chain runs as a plan now: no gradient is being recorded and the kernels are on."""
    return not is_grad_enabled() and _direct.available()


def _act(layer) -> bool:
    return type(layer) in _INPLACE


def _tiling_pool(layer) -> int:
    """k for a MaxPool2D over k×k tiles (stride k, no padding or dilation, floor mode), else 0."""
    if type(layer) is not MaxPool2D:
        return 0
    (kh, kw), s = layer.kernel_size, layer.stride
    ok = kh == kw and tuple(s) == (kh, kw) and tuple(map(tuple, layer._pads)) == ((0, 0), (0, 0)) \
        and tuple(layer.dilation) == (1, 1) and not layer.ceil_mode
    return kh if ok else 0


def _conv_group(layers: list, i: int):
    """(end, bn, act1, pool, act2) of the fusable group starting at layers[i] (a Conv2D), or None."""
    if type(layers[i]) is not Conv2D:
        return None
    j, bn, act1, pool, act2 = i + 1, None, None, 0, None
    if j < len(layers) and type(layers[j]) is BatchNorm2D and not layers[j].training and not layers[i].use_bias:
        bn, j = layers[j], j + 1
    if j < len(layers) and _act(layers[j]):
        act1, j = layers[j], j + 1
    if j < len(layers) and _tiling_pool(layers[j]):
        pool, j = _tiling_pool(layers[j]), j + 1
        if j < len(layers) and _act(layers[j]):
            act2, j = layers[j], j + 1
    if bn is None and pool == 0:
        return None  # conv → act alone: the conv and an in-place act (the loop in run_chain) do it
    return j, bn, act1, pool, act2


def _folded(conv: Conv2D, bn: BatchNorm2D | None, dtype):
    """The conv's weight and bias as arrays of `dtype`, with an eval-mode BatchNorm folded in."""
    w = conv.weight.data
    b = None if conv.bias is None else conv.bias.data
    if bn is None:
        return w, b
    var, mean = bn.running_var.astype(np.float64), bn.running_mean.astype(np.float64)
    scale = 1.0 / np.sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.data
    shift = -mean * scale + (0.0 if bn.bias is None else bn.bias.data.astype(np.float64))
    return (w * scale).astype(dtype), shift.astype(dtype)  # scale broadcasts over HWIO's out axis


def _run_group(layers: list, group, x: np.ndarray) -> np.ndarray:
    i_conv = layers[0]
    _, bn, act1, pool, act2 = group
    w, b = _folded(i_conv, bn, x.dtype)
    opts = dict(stride=i_conv.stride, padding=i_conv.padding, dilation=i_conv.dilation, groups=i_conv.groups,
                connections=i_conv.connections)
    if pool:
        y = F.conv2d(x, w, None, **opts)
        out = np.empty((y.shape[0], y.shape[1] // pool, y.shape[2] // pool, y.shape[3]), y.dtype)
        _direct.pool_bias(y, b, pool, out)
    else:
        out = F.conv2d(x, w, b, **opts)
    for act in (act1, act2):
        if act is not None:
            _INPLACE[type(act)](out)
    return out


def _fusable_input(layer, x) -> bool:
    a = x.data if isinstance(x, Tensor) else x
    return isinstance(a, np.ndarray) and a.ndim == 4 and a.dtype in (np.float32, np.float64) \
        and layer.weight.data.dtype == a.dtype


def run_chain(layers: list, x):
    """Run `layers` in order on x as the plan (module docstring); the result has x's kind."""
    as_tensor = isinstance(x, Tensor)
    h, owned, i = x, False, 0  # owned: h's array is ours to overwrite (never the caller's input)
    while i < len(layers):
        layer = layers[i]
        group = _conv_group(layers, i) if type(layer) is Conv2D and _fusable_input(layer, h) else None
        if group is not None:
            out = _run_group(layers[i:group[0]], group, h.data if isinstance(h, Tensor) else h)
            h, owned, i = (Tensor(out) if as_tensor else out), True, group[0]
            continue
        if owned and _act(layer) and isinstance(h, (Tensor, np.ndarray)):
            a = h.data if isinstance(h, Tensor) else h
            if a.dtype in (np.float32, np.float64):
                _INPLACE[type(layer)](a)
                i += 1
                continue
        h = layer(h)
        owned = isinstance(layer, _FRESH) or (owned and isinstance(layer, _VIEWS))
        i += 1
    return h


def graph_chains(nodes, outputs) -> dict:
    """The simple chains among a graph's `nodes` (`Node`s in topological order) that `run_chain` can
    run: first node's name → the chain's nodes, 2 or more. A chain's layers are of the plan's kinds
    (exact types), every node after the first reads only the node before it, each node but the last
    has that next node as its only reader, and only the last may be one of `outputs`. So no value
    inside a chain is seen by anything else, and the chain can run at its first node's place."""
    readers: dict = {}
    for n in nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    chains, taken, outs = {}, set(), set(outputs)
    for n in nodes:
        if n.name in taken or type(n.layer) not in _CHAIN or len(n.inputs) != 1:
            continue
        chain = [n]
        while True:
            last = chain[-1]
            nxt = readers.get(last.name, [])
            if last.name in outs or len(nxt) != 1 or type(nxt[0].layer) not in _CHAIN or nxt[0].inputs != (last.name,):
                break
            chain.append(nxt[0])
        if len(chain) > 1:
            chains[n.name] = chain
            taken.update(c.name for c in chain)
    return chains
