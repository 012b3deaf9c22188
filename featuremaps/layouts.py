"""Weight layouts and conventions of other frameworks, mapped onto featuremaps' own, and a check.

featuremaps is channels-last: activations NHWC, conv weights HWIO `(kh, kw, in/groups, out)`, dense
weights `(in, out)`, and its conv is a cross-correlation (the formula in `featuremaps.functional.conv`).
The frameworks weights come from differ in four ways, and each function here maps one of them:

| convention                | Keras / TF          | PyTorch, ONNX, Caffe   | Theano (`conv2d`, filter_flip=True) |
|---------------------------|---------------------|------------------------|-------------------------------------|
| conv weight               | HWIO (kh, kw, i, o) | OIHW (o, i, kh, kw)    | OIHW, kernel flipped (true conv)    |
| flatten before dense      | (h, w, c)           | (c, h, w)              | (c, h, w)                           |
| dense weight              | (in, out)           | (out, in); ONNX Gemm either | (in, out)                      |
| BatchNorm running update  | r·m + b·(1 − m)     | torch r·(1 − m) + b·m; ONNX as Keras; Caffe sums | —         |

Plus Caffe's BGR input order (`bgr_to_rgb`) and its ceil-mode pooling (`caffe_pool_padding`).
`verify_conversion` runs a converted model and the original side by side on a probe input and finds
the first layer where they part.

Every function is pure (NumPy in, new NumPy out) and names its argument in its errors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

__all__ = ["oihw_to_hwio", "hwio_to_oihw", "flip_kernels", "bgr_to_rgb", "flatten_permutation",
           "caffe_pool_padding", "caffe_pool_output_size", "batchnorm_from", "BatchNormArgs",
           "verify_conversion", "Verification", "LayerCheck", "default_rtol"]

_WEIGHT_LAYOUTS = ("HWIO", "OIHW")


# --- argument checks ------------------------------------------------------------------------------
def _array(a, name: str, op: str) -> np.ndarray:
    arr = np.asarray(a.data if hasattr(a, "data") and not isinstance(a, np.ndarray) else a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {name} must be a numeric array; received {type(a).__name__} of dtype {arr.dtype}")
    return arr


def _conv_weight(w, layout: str, op: str, name: str = "weight") -> np.ndarray:
    arr = _array(w, name, op)
    if layout not in _WEIGHT_LAYOUTS:
        raise ValueError(f"{op}: layout must be one of {_WEIGHT_LAYOUTS}; received {layout!r}")
    if arr.ndim != 4:
        axes = "(kh, kw, in, out)" if layout == "HWIO" else "(out, in, kh, kw)"
        raise ValueError(f"{op}: {name} must be a 4-D {layout} conv weight {axes}; received shape {arr.shape}")
    return arr


def _int(v, name: str, op: str, low: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{op}: {name} must be an int ≥ {low}; received {v!r}")
    return int(v)


def _pair(v, name: str, op: str, low: int) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or an (h, w) pair; received {v!r}")
        return _int(v[0], name, op, low), _int(v[1], name, op, low)
    return _int(v, name, op, low), _int(v, name, op, low)


# --- conv weights -----------------------------------------------------------------------------------
def oihw_to_hwio(weight) -> np.ndarray:
    """A PyTorch / ONNX / Caffe / Theano conv weight `(out, in/groups, kh, kw)` as featuremaps' (and
    Keras/TF's) `(kh, kw, in/groups, out)`: `weight.transpose(2, 3, 1, 0)`, a new C-ordered array.

    The same transpose maps a PyTorch ConvTranspose2d weight `(in, out/groups, kh, kw)` to
    featuremaps' `Conv2DTranspose` weight `(kh, kw, out/groups, in)`. It does not flip: a Theano
    weight also needs `flip_kernels` (before or after, the flip commutes with the transpose).
    """
    w = _conv_weight(weight, "OIHW", "oihw_to_hwio")
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))  # (o, i, kh, kw) -> (kh, kw, i, o)


def hwio_to_oihw(weight) -> np.ndarray:
    """featuremaps' (and Keras/TF's) conv weight `(kh, kw, in/groups, out)` as PyTorch / ONNX /
    Caffe's `(out, in/groups, kh, kw)`: `weight.transpose(3, 2, 0, 1)`, the inverse of `oihw_to_hwio`."""
    w = _conv_weight(weight, "HWIO", "hwio_to_oihw")
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # (kh, kw, i, o) -> (o, i, kh, kw)


def flip_kernels(weight, layout: str = "HWIO") -> np.ndarray:
    """Each kernel rotated by 180° (both spatial axes reversed): `w[::-1, ::-1]` for HWIO,
    `w[:, :, ::-1, ::-1]` for OIHW.

    Theano's `conv2d` (with its default `filter_flip=True`) computes a true convolution, which is a
    cross-correlation with the flipped kernel; featuremaps, PyTorch, Keras, ONNX and Caffe compute
    cross-correlations. So a Theano weight `W` (out, in, kh, kw) becomes featuremaps' kernel
    `oihw_to_hwio(flip_kernels(W, "OIHW"))`. The flip is its own inverse.
    """
    w = _conv_weight(weight, layout, "flip_kernels")
    return np.ascontiguousarray(w[::-1, ::-1] if layout == "HWIO" else w[:, :, ::-1, ::-1])


def bgr_to_rgb(weight, layout: str = "HWIO") -> np.ndarray:
    """A first conv layer's weight trained on BGR input (Caffe and OpenCV read images as BGR), made
    to take RGB input: its input-channel axis reversed, axis 2 of HWIO `(kh, kw, 3, out)` or axis 1
    of OIHW `(out, 3, kh, kw)`. The same applied again maps RGB back to BGR.

    A per-channel input mean or scale that goes with the weights (Caffe's [104, 117, 123]) is in
    BGR order too: reverse it as well (`mean[::-1]`).
    """
    op = "bgr_to_rgb"
    w = _conv_weight(weight, layout, op)
    axis = 2 if layout == "HWIO" else 1
    if w.shape[axis] != 3:
        raise ValueError(f"{op}: weight must have 3 input channels (axis {axis} of {layout}) to swap BGR and RGB; "
                         f"received shape {w.shape}")
    return np.ascontiguousarray(np.flip(w, axis=axis))


# --- flatten order --------------------------------------------------------------------------------
def flatten_permutation(h: int, w: int, c: int, source: str = "CHW", target: str = "HWC") -> np.ndarray:
    """The index array `perm` of length h·w·c with `flat_target = flat_source[perm]`: position i of
    a `target`-ordered flattening holds element `perm[i]` of the `source`-ordered one.

    PyTorch, ONNX, Caffe and Theano flatten NCHW maps in (c, h, w) order; featuremaps and Keras/TF
    flatten NHWC maps in (h, w, c) order. A first dense layer trained on `source` order computes
    `flat_source @ W`, so on `target` order it needs the permuted rows:
    - featuremaps / Keras / Theano weight `(in, out)`: `W_target = W_source[perm]`;
    - PyTorch Linear / ONNX Gemm weight `(out, in)`: `W_target = W_source[:, perm]`.
    `source` and `target` are each an ordering of the letters H, W, C.
    """
    op = "flatten_permutation"
    dims = {"H": _int(h, "h", op, 1), "W": _int(w, "w", op, 1), "C": _int(c, "c", op, 1)}
    for name, order in (("source", source), ("target", target)):
        if not isinstance(order, str) or sorted(order.upper()) != ["C", "H", "W"]:
            raise ValueError(f"{op}: {name} must be an ordering of the letters H, W, C such as 'CHW' or 'HWC'; "
                             f"received {order!r}")
    source, target = source.upper(), target.upper()
    index = np.arange(h * w * c).reshape([dims[a] for a in source])  # source-order positions, by axis
    return index.transpose([source.index(a) for a in target]).ravel()  # read in target order


# --- Caffe's ceil-mode pooling --------------------------------------------------------------------
def _caffe_axis(size: int, k: int, s: int, p: int, clip: bool) -> int:
    """Caffe's pooled size along one axis: ceil((size + 2p − k) / s) + 1, minus the last window when
    `clip` (some padding) and it would start at or past the end of the input and its top padding."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if clip and (out - 1) * s >= size + p:
        out -= 1
    return out


def caffe_pool_output_size(size, kernel, stride=1, pad=0) -> tuple[int, int]:
    """Caffe's PoolingLayer output (h, w): ceil((h + 2·pad − kernel) / stride) + 1 per axis, then,
    when any pad is nonzero, one window fewer on an axis whose last window would start at or past
    `size + pad` (Caffe's clipping rule; PyTorch's `ceil_mode=True` applies it always)."""
    op = "caffe_pool_output_size"
    size, kernel = _pair(size, "size", op, 1), _pair(kernel, "kernel", op, 1)
    stride, pad = _pair(stride, "stride", op, 1), _pair(pad, "pad", op, 0)
    for axis, (n, k, p) in zip("HW", zip(size, kernel, pad)):
        if p >= k:
            raise ValueError(f"{op}: pad must be smaller than kernel (Caffe's check) along {axis}; "
                             f"received pad {p}, kernel {k}")
        if n + 2 * p < k:
            raise ValueError(f"{op}: kernel {k} is larger than the padded input {n} + 2·{p} along {axis}")
    clip = any(pad)
    return tuple(_caffe_axis(n, k, s, p, clip) for n, k, s, p in zip(size, kernel, stride, pad))  # type: ignore


def caffe_pool_padding(size, kernel, stride=1, pad=0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Caffe's ceil-mode pooling as explicit asymmetric pads `((top, bottom), (left, right))` for a
    plain floor-mode (valid) pooling of the padded input.

    Caffe pads `pad` on every side and rounds the output size up (`caffe_pool_output_size`), so its
    last window may reach past the bottom/right padding; this returns `pad` for top and left and, for
    bottom and right, `pad` plus whatever the last window overhangs. `size`, `kernel`, `stride` and
    `pad` are ints or (h, w) pairs.

    - MAX pooling: padding the input with −inf by these pads and max-pooling without padding equals
      Caffe (featuremaps' `MaxPool2D(kernel, stride, padding=pads)` takes them when no side exceeds
      `kernel // 2`; `MaxPool2D(kernel, stride, padding=pad, ceil_mode=True)` is the same always).
    - AVE pooling: Caffe divides by the window clipped to `size + pad` (the extra pads do not count),
      which is `AvgPool2D(kernel, stride, padding=pad, ceil_mode=True, count_include_pad=True)`;
      zero-padding by these pads would divide the last windows by the full kernel size instead.

    Caffe without any padding skips the clipping rule: a kernel smaller than the stride can then put
    a last window wholly outside the input, which no padding reproduces; that case is refused.
    """
    op = "caffe_pool_padding"
    out = caffe_pool_output_size(size, kernel, stride, pad)
    size, kernel = _pair(size, "size", op, 1), _pair(kernel, "kernel", op, 1)
    stride, pad = _pair(stride, "stride", op, 1), _pair(pad, "pad", op, 0)
    pads = []
    for axis, (n, k, s, p, o) in zip("HW", zip(size, kernel, stride, pad, out)):
        if (o - 1) * s >= n + p:
            raise ValueError(f"{op}: with no padding, Caffe's last window along {axis} starts at {(o - 1) * s}, "
                             f"outside the input of size {n} (kernel {k} < stride {s}); no padding reproduces it")
        pads.append((p, max((o - 1) * s + k - n - p, 0)))  # bottom/right: what the last window reaches past
    return pads[0], pads[1]


# --- BatchNorm conventions ------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchNormArgs:
    """featuremaps `BatchNorm2D` arguments and state: `BatchNorm2D(num_features, momentum, eps)` with
    parameters `weight` (γ), `bias` (β) and buffers `running_mean`, `running_var`. `note` says what
    was converted, one line for an import log. `layer()` builds the layer; `state()` is its state dict."""
    num_features: int
    momentum: float
    eps: float
    weight: np.ndarray
    bias: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    note: str

    def state(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": self.bias, "running_mean": self.running_mean,
                "running_var": self.running_var}

    def layer(self, dtype=None):
        """A `featuremaps.nn.BatchNorm2D` holding these values (in `dtype`, default theirs), eval mode."""
        from .nn import BatchNorm2D
        bn = BatchNorm2D(self.num_features, momentum=self.momentum, eps=self.eps)
        bn.astype(np.result_type(self.running_mean.dtype, np.float32) if dtype is None else dtype)
        bn.load_state_dict(self.state())
        return bn.eval()


# framework -> (names: our field -> its keyword, defaults of eps and momentum keywords)
_BN = {
    "featuremaps": ({"weight": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var",
                     "eps": "eps", "momentum": "momentum"}, {"eps": 1e-5, "momentum": 0.1}),
    "torch": ({"weight": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var",
               "eps": "eps", "momentum": "momentum"}, {"eps": 1e-5, "momentum": 0.1}),
    "keras": ({"weight": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance",
               "eps": "epsilon", "momentum": "momentum"}, {"epsilon": 1e-3, "momentum": 0.99}),
    "onnx": ({"weight": "scale", "bias": "B", "mean": "input_mean", "var": "input_var",
              "eps": "epsilon", "momentum": "momentum"}, {"epsilon": 1e-5, "momentum": 0.9}),
    "caffe": ({"weight": "scale", "bias": "bias", "mean": "mean", "var": "variance", "eps": "eps",
               "momentum": "moving_average_fraction"}, {"eps": 1e-5, "moving_average_fraction": 0.999}),
}
_BN_ALIASES = {"pytorch": "torch", "tensorflow": "keras", "tf": "keras", "tf.keras": "keras"}


def _bn_kwargs(framework: str, kwargs: dict) -> tuple[str, dict]:
    op = "batchnorm_from"
    if not isinstance(framework, str) or _BN_ALIASES.get(framework.lower(), framework.lower()) not in _BN:
        raise ValueError(f"{op}: framework must be one of {sorted(_BN) + sorted(_BN_ALIASES)}; received {framework!r}")
    fw = _BN_ALIASES.get(framework.lower(), framework.lower())
    names, defaults = _BN[fw]
    allowed = set(names.values()) | ({"scale_factor"} if fw == "caffe" else set())
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"{op}: {fw} BatchNorm takes the keywords {sorted(allowed)}; received unknown {unknown}")
    for ours in ("mean", "var"):
        if kwargs.get(names[ours]) is None:
            raise TypeError(f"{op}: {fw} needs {names[ours]!r} (the stored {ours}); it was not given")
    got = {ours: kwargs.get(theirs, defaults.get(theirs)) for ours, theirs in names.items()}
    got["scale_factor"] = kwargs.get("scale_factor")
    return fw, got


def _bn_vector(v, name: str, c: int | None, default: float, dtype) -> np.ndarray:
    """`v` as a new float vector of `c` values (any length when `c` is None), or `default` × c."""
    if v is None:
        return np.full(c, default, dtype)
    arr = _array(v, name, "batchnorm_from")
    if arr.ndim != 1 or arr.size == 0 or (c is not None and arr.shape != (c,)):
        want = "one value per channel" if c is None else f"{c} values, one per channel"
        raise ValueError(f"batchnorm_from: {name} must be a vector of {want}; received shape {arr.shape}")
    return arr.astype(np.result_type(arr.dtype, np.float32))  # (a copy: astype copies by default)


def _bn_momentum(fw: str, m, theirs: str) -> float:
    """featuremaps' momentum (running ← (1 − m)·running + m·batch) from the framework's."""
    if m is None:
        raise ValueError(f"batchnorm_from: {fw} momentum=None (a cumulative average) has no featuremaps equivalent; "
                         "pass a number")
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"batchnorm_from: {theirs} must be in [0, 1]; received {m}")
    return m if fw in ("torch", "featuremaps") else 1.0 - m


def batchnorm_from(framework: str, **kwargs) -> BatchNormArgs:
    """A framework's BatchNorm values, under its own names, as featuremaps `BatchNorm2D` arguments.

    All compute `y = γ · (x − mean) / √(var + eps) + β` at inference; they differ in names, defaults
    and how the running statistics move during training (b: the batch statistic):

    - `featuremaps`, `torch`: weight, bias, running_mean, running_var, eps (1e-5), momentum (0.1):
      `running ← (1 − momentum)·running + momentum·b`, storing the unbiased batch variance. torch's
      momentum=None (cumulative average) is refused.
    - `keras` (also `tf`): gamma, beta, moving_mean, moving_variance, epsilon (1e-3), momentum (0.99):
      `moving ← momentum·moving + (1 − momentum)·b`, so featuremaps' momentum is 1 − momentum. Keras
      stores the biased batch variance, so in training the variances drift apart by m/(m − 1).
    - `onnx`: scale, B, input_mean, input_var, epsilon (1e-5), momentum (0.9): as Keras.
    - `caffe`: mean, variance, scale_factor (its three blobs), eps (1e-5), moving_average_fraction
      (λ, 0.999); γ and β live in the following Scale layer: pass them as scale and bias. Caffe keeps
      decayed sums, `s ← λ·s + 1`, `sum ← λ·sum + b`; the statistic is sum / s (0 when s = 0). As
      s → 1/(1 − λ) this is featuremaps' update with momentum 1 − λ.

    A missing γ is 1 and a missing β is 0 (Keras `scale=False` / `center=False`). Returns a
    `BatchNormArgs`; its `note` is one import-log line naming the conventions mapped.
    """
    fw, got = _bn_kwargs(framework, kwargs)
    names = _BN[fw][0]
    mean = _bn_vector(got["mean"], names["mean"], None, 0.0, None)
    c = mean.shape[0]
    var = _bn_vector(got["var"], names["var"], c, 1.0, None)
    notes = []
    if fw == "caffe":
        s = got["scale_factor"]
        s = 1.0 if s is None else float(np.asarray(s).reshape(-1)[0])
        factor = 0.0 if s == 0 else 1.0 / s
        mean, var = mean * factor, var * factor
        notes.append(f"mean and variance divided by scale_factor {s:g}")
    dtype = mean.dtype
    weight = _bn_vector(got["weight"], names["weight"], c, 1.0, dtype)
    bias = _bn_vector(got["bias"], names["bias"], c, 0.0, dtype)
    eps = float(got["eps"])
    if not eps > 0.0:
        raise ValueError(f"batchnorm_from: {names['eps']} must be > 0; received {got['eps']}")
    momentum = _bn_momentum(fw, got["momentum"], names["momentum"])
    if fw not in ("torch", "featuremaps"):
        notes.append(f"momentum = 1 − {names['momentum']} {float(got['momentum']):g} = {momentum:g}")
    note = f"BatchNorm from {fw}: eps {eps:g}" + "".join(f"; {n}" for n in notes)
    return BatchNormArgs(c, momentum, eps, weight, bias, mean, var, note)


# --- verify_conversion ----------------------------------------------------------------------------
def default_rtol(dtype) -> float:
    """The relative tolerance `verify_conversion` uses for values computed in `dtype`: a third of
    √eps (1.2e-4 for float32, 5.0e-9 for float64), of each layer's largest reference magnitude.
    Two implementations of the same net agree to about half their significant bits after many
    rounded layers (float16: 1.0e-2)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    return math.sqrt(eps) / 3


@dataclass
class LayerCheck:
    """One comparison: the layer, the largest |ours − reference|, the tolerance `tol` (= `rtol` ×
    the layer's largest reference magnitude), and in `note` why it could not compare (a shape)."""
    name: str
    max_diff: float
    tol: float
    ok: bool
    rtol: float
    note: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "DIFF"
        if math.isnan(self.tol):  # not compared: the note says why
            return f"{mark} {self.name:<24} not compared{self.note}"
        return f"{mark} {self.name:<24} max |diff| {self.max_diff:.3g}  (tol {self.tol:.3g}){self.note}"


@dataclass
class Verification:
    """What `verify_conversion` found: `ok`, `output` (the final output's `LayerCheck`, or None when
    the reference gave activations without it), `first_divergent` (the first layer whose output
    differs while its predecessor's agrees, or None), `max_diff` (largest difference of the final
    output, or of any compared layer when the output was not given), `rtol` and `checked` (the
    layers compared, in execution order: the bisection's probes). `to_text()` prints it."""
    ok: bool
    output: LayerCheck | None
    first_divergent: str | None
    max_diff: float
    rtol: float
    checked: list = field(default_factory=list)
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def to_text(self) -> str:
        head = (f"conversion verified: max |diff| {self.max_diff:.3g} (rtol {self.rtol:.3g})" if self.ok else
                f"conversion DIVERGES: max |diff| {self.max_diff:.3g} (rtol {self.rtol:.3g})"
                + (f"; first diverging layer: {self.first_divergent}" if self.first_divergent else ""))
        lines = [head] + [f"  {c.line()}" for c in self.checked]
        if self.output is not None and all(c.name != self.output.name for c in self.checked):
            lines.append(f"  {self.output.line()}")
        return "\n".join(lines + ([f"  {self.hint}"] if self.hint else []))


def _per_example(ref, ours: np.ndarray) -> np.ndarray:
    ref = np.asarray(ref.detach().numpy() if hasattr(ref, "detach") else ref)
    if ref.ndim == ours.ndim + 1 and ref.shape[0] == 1:
        ref = ref[0]  # a batch of one (1, ...) -> (...)
    return ref


def _compare(name: str, ours: np.ndarray, ref, rtol: float | None) -> LayerCheck:
    ref = _per_example(ref, ours)
    if ref.dtype.kind not in "biuf":
        return LayerCheck(name, math.inf, math.nan, False, math.nan, f"  (reference is not numeric: {ref.dtype})")
    coarser = ours.dtype if ref.dtype.kind != "f" or ref.dtype.itemsize >= ours.dtype.itemsize else ref.dtype
    r = default_rtol(coarser) if rtol is None else float(rtol)
    if ref.shape != ours.shape:
        hint = ""
        if ours.ndim == 3 and ref.shape == (ours.shape[2], *ours.shape[:2]):
            hint = ": the reference looks channels-first; return (H, W, C) maps"
        note = f"  (shape {ref.shape} vs featuremaps {ours.shape}{hint})"
        return LayerCheck(name, math.inf, math.nan, False, r, note)
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    scale = float(np.max(np.abs(b), initial=0.0))
    tol = r * (scale if scale > 0 else 1.0)
    diff = float(np.max(np.abs(a - b), initial=0.0))
    ok = bool(diff <= tol) or bool(np.array_equal(a, b, equal_nan=True))  # NaN diff: only equal NaNs pass
    return LayerCheck(name, diff, tol, ok, r)


def _bisect(names: list[str], check: Callable[[int], LayerCheck]) -> tuple[int | None, list[LayerCheck]]:
    """The index of a layer that differs while the one before it agrees (or the first layer), by
    bisection over `names` in execution order: O(log n) comparisons. None when the last agrees."""
    probed: dict[int, LayerCheck] = {}

    def ok(i: int) -> bool:
        if i not in probed:
            probed[i] = check(i)
        return probed[i].ok

    if ok(len(names) - 1):
        return None, [probed[i] for i in sorted(probed)]
    lo, hi = -1, len(names) - 1  # invariant: lo agrees (−1: the input), hi differs
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return hi, [probed[i] for i in sorted(probed)]


def _in_model_dtype(model, x):
    """The probe in the dtype of the model's parameters (float32 models get float32 probes)."""
    dtypes = {p.data.dtype for p in model.parameters() if p is not None}
    if len(dtypes) != 1:
        return x
    dt = dtypes.pop()
    return {k: v.astype(dt) for k, v in x.items()} if isinstance(x, dict) else x.astype(dt)


def verify_conversion(reference_fn, model, probe, *, rtol: float | None = None) -> Verification:
    """Run `reference_fn` (the original framework) and `model` (featuremaps) on `probe` and say where
    they part.

    `probe` is one input `(H, W, C)` or a batch of one `(1, H, W, C)` (for a graph with several
    inputs, a dict name → input), cast to the dtype of the model's parameters. `reference_fn`
    receives it as the batch of one, in featuremaps' NHWC layout (convert inside it), and returns
    either the final output, or a dict of named activations in featuremaps' layout (`(H, W, C)` maps
    or `(F,)` vectors, with or without the batch axis) keyed by featuremaps layer names; the key
    "output" stands for the model's final (first) output.

    With activations, the first diverging layer is found by bisection over featuremaps' own
    activations (`inspect.activations`): a layer that differs while the compared one before it
    agrees (when the last compared layer agrees, the conversion passes). A layer differs when
    max |ours − reference| exceeds `rtol` (default `default_rtol` of the coarser dtype) times its
    largest reference magnitude. Every reference activation's shape is checked first: a mismatch
    (say, NCHW maps) fails at the first such layer.
    """
    from .inspect.activations import _run, as_model_input
    x = _in_model_dtype(model, as_model_input(model, probe, "verify_conversion"))
    ref = reference_fn(x)
    acts = {a.name: a.array for a in _run(model, x)}
    outputs = list(getattr(model, "output_names", None) or [list(acts)[-1]])
    out_name = outputs[0]
    if not isinstance(ref, Mapping):
        if len(outputs) != 1:
            raise ValueError(f"verify_conversion: this model has outputs {outputs}; reference_fn must return a dict "
                             f"with one array for each; received a {type(ref).__name__}")
        out = _compare(out_name, acts[out_name], ref, rtol)
        hint = "" if out.ok else ("the reference gave only the final output: return a dict of named activations "
                                  "from reference_fn to find the first diverging layer")
        return Verification(out.ok, out, None if out.ok else out_name, out.max_diff, out.rtol, [], hint)
    ref = {(out_name if k == "output" else str(k)): v for k, v in ref.items()}
    unknown = [k for k in ref if k not in acts]
    if unknown:
        raise ValueError(f"verify_conversion: reference_fn returned activations {unknown} that name no featuremaps "
                         f"layer; valid names: {', '.join(acts)}")
    names = [n for n in acts if n in ref]
    compare = lambda i: _compare(names[i], acts[names[i]], ref[names[i]], rtol)  # noqa: E731
    shapes = [i for i, n in enumerate(names) if _per_example(ref[n], acts[n]).shape != acts[n].shape]
    if shapes:  # a reference in another layout: every layer is checked for that first, not bisected
        checked = [compare(i) for i in shapes]
        return Verification(False, None, names[shapes[0]], math.inf, checked[0].rtol, checked,
                            "reference activations must have featuremaps' per-example shapes")
    first, checked = _bisect(names, compare)
    output = next((c for c in checked if c.name == out_name), None)
    if output is None and out_name in ref:
        output = _compare(out_name, acts[out_name], ref[out_name], rtol)
    ok = first is None and (output is None or output.ok)
    max_diff = output.max_diff if output is not None else max(c.max_diff for c in checked)
    return Verification(ok, output, None if first is None else names[first], max_diff,
                        (output or checked[-1]).rtol, checked)
