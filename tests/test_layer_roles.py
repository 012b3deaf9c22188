"""Every layer class says what it is (`role`, `spatial`, `elementwise`, `decomposition`; see
`featuremaps.nn.Module`), and every tool decides from that, never from class names.

The classes are found by subclass discovery of `nn.Module` in `featuremaps.nn`, so a new layer is
tested here with no edit: it is built from its constructor's required arguments (values by name in
`SIZES`), placed in a small model (on maps, and on vectors where it takes them), and then
- `summary` lists it with its output shape;
- `receptive_field` traces through it, and contains every input pixel whose change moves the unit
  (a perturbation oracle, independent of the tracer);
- `explain` decomposes it when its `decomposition` is set (and agrees with the engine), refuses it
  otherwise, and follows a value through it when it keeps positions;
- `report_data` gives it the op its attributes call for, and a Python mirror of the page's sums
  reproduces the engine's values from the op's embedded numbers.
A last test scans `featuremaps/` for class-name lists of layer kinds.
"""
from __future__ import annotations

import ast
import base64
import inspect as pyinspect
from pathlib import Path

import numpy as np
import pytest

import featuremaps
from featuremaps import nn, summary
from featuremaps.inspect import activations, explain, receptive_field
from featuremaps.inspect.explain import explainable_kinds
from featuremaps.inspect.receptive import layer_role
from featuremaps.nn.module import ROLES
from featuremaps.report.build import report_data
from tests.oracles import assert_sum_close

C, HW, C_IN = 4, 6, 2  # the layer under test receives C maps of HW×HW (or C features); the model's input has C_IN
#: Values for constructor arguments without a default, by name. A new layer whose constructor needs
#: another one fails `test_every_layer_class_can_be_built` until it is added here.
SIZES = {"in_channels": C, "out_channels": C, "channels": C, "num_features": C, "in_features": C,
         "out_features": 3, "kernel_size": 3, "size": 3, "padding": 1, "target_shape": (-1,), "perm": (1, 0, 2),
         "scale": 0.5, "threshold": -0.5, "value": -1.0}
CONTAINERS = {"Sequential", "Graph"}  # hold layers; not layers themselves
SPATIAL = (None, "same", "window", "pad", "flatten", "all")
DECOMPOSITIONS = (None, "weighted_sum", "window_max", "window_mean")
#: Names an old class-name list used although no such class exists.
PHANTOMS = {"BatchNorm1D", "DepthwiseConv2D"}
#: The largest slope of any layer here on `_model`'s weights (|weight| ≤ 1.5): BatchNorm's γ/√(1 + eps) and
#: Subsampling2D's coefficient; ScaledTanh's is 1.7159·2/3 ≈ 1.14.
STEEPEST = 2.0


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


ALL_CLASSES = sorted({c for c in _subclasses(nn.Module) if c.__module__.startswith("featuremaps.nn.")},
                     key=lambda c: c.__name__)
LAYER_CLASSES = [c for c in ALL_CLASSES if not c.__name__.startswith("_") and c.__name__ not in CONTAINERS]
#: Layers with several inputs (role 'merge'): they live in graph models, not in a Sequential, so the
#: single-chain tests below place the other layers only; `test_merge_layers_*` cover these.
MERGE_CLASSES = [c for c in LAYER_CLASSES if c.role == "merge"]


def _build(cls) -> nn.Module:
    args = {}
    for name, p in pyinspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in SIZES:
            pytest.fail(f"{cls.__name__}: no test value for its required argument {name!r}; add one to SIZES")
        args[name] = SIZES[name]
    return cls(**args)


def _takes(layer, shape) -> tuple | None:
    try:
        return tuple(layer.compute_output_shape(shape))
    except nn.ShapeError:
        return None


def _cases():
    for cls in LAYER_CLASSES:
        if cls in MERGE_CLASSES:
            continue
        layer = _build(cls)
        for placement, shape in (("maps", (HW, HW, C)), ("vector", (C,))):
            if _takes(layer, shape) is not None:
                yield pytest.param(cls, placement, id=f"{cls.__name__}-{placement}")


def _model(cls, placement: str):
    """input (HW, HW, C_IN) → conv 'pre' to C maps → [global pool 'vec'] → the layer 'L' → [flatten] →
    dense 'head', in float64 so that the perturbation oracle sees every dependence."""
    rng = np.random.default_rng(7)
    layer = _build(cls)
    front = [("pre", nn.Conv2D(C_IN, C, 3, padding=1, rng=rng))]
    if placement == "vector":
        front.append(("vec", nn.GlobalAvgPool2D()))
    out = _takes(layer, (HW, HW, C) if placement == "maps" else (C,))
    back = [("flat", nn.Flatten())] if len(out) == 3 else []
    model = nn.Sequential(front + [("L", layer)] + back + [("head", nn.Dense(int(np.prod(out)), 3, rng=rng))],
                          input_shape=(HW, HW, C_IN))
    for p in model.parameters():  # weights and biases away from 0, so every term shows
        p.data = rng.uniform(0.5, 1.5, p.data.shape) * rng.choice([-1.0, 1.0], p.data.shape)
    model.astype(np.float64)
    x = np.random.default_rng(3).standard_normal((HW, HW, C_IN))
    return model, layer, x, out


def _unit(model, x, out: tuple) -> tuple[tuple, tuple | None]:
    """The unit looked at: the largest output of 'L' at the centre of its maps (or of its vector; a
    ReLU's largest output is the one most likely to be positive); and its position (None for vectors)."""
    y = next(a.array for a in activations(model, x) if a.name == "L")
    if len(out) == 1:
        return (int(np.argmax(y)),), None
    pos = (out[0] // 2, out[1] // 2)
    return pos + (int(np.argmax(y[pos])),), pos


def _value_of(model, x, name: str, unit: tuple) -> float:
    return float(next(a.array for a in activations(model, x) if a.name == name)[unit])


# --- the attributes -----------------------------------------------------------------------------------
def test_every_layer_class_is_discovered_and_can_be_built():
    names = {c.__name__ for c in LAYER_CLASSES}
    assert {"Conv2D", "Dense", "MaxPool2D", "Subsampling2D", "ReLU", "BatchNorm2D", "Flatten"} <= names
    assert names <= set(nn.__all__), "every public layer class is exported by featuremaps.nn"
    for cls in LAYER_CLASSES:
        assert isinstance(_build(cls), cls)
        shapes = ((HW, HW, C), (C,))
        if cls in MERGE_CLASSES:  # several inputs of one shape
            takes = [_takes(_build(cls), [s, s]) for s in shapes]
            assert _takes(_build(cls), (HW, HW, C)) is None, f"{cls.__name__} must refuse a single input shape"
        else:
            takes = [_takes(_build(cls), s) for s in shapes]
        assert any(takes), f"{cls.__name__} takes neither maps nor vectors"


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_attributes_are_from_the_documented_sets(cls):
    assert cls.role in ROLES and cls.spatial in SPATIAL and cls.decomposition in DECOMPOSITIONS
    assert isinstance(cls.elementwise, bool)
    if cls.elementwise:
        assert cls.spatial == "same", "a value computed from its own input value keeps its position"
    if cls.decomposition == "weighted_sum":
        assert cls.role in ("conv", "dense") and cls.spatial in ("window", "all")
    if cls.decomposition in ("window_max", "window_mean"):
        assert cls.role == "pool" and cls.spatial in ("window", "all")


@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_elementwise_says_whether_a_value_depends_on_its_own_input_alone(cls, placement):
    """Change one input value: an element-wise layer (in eval mode) changes that output value only; a
    layer that keeps the shape but is not element-wise (LRN, Softmax) changes others too."""
    layer = _build(cls).eval()
    layer.astype(np.float64)
    shape = (1, HW, HW, C) if placement == "maps" else (1, C)
    x = np.random.default_rng(1).standard_normal(shape)
    y = np.asarray(layer(x).data)
    if y.shape != x.shape:
        assert not layer.elementwise, "an element-wise layer keeps the shape"
        return
    at = (0, 2, 3, 1) if placement == "maps" else (0, 1)
    xp = x.copy()
    xp[at] += 1.0
    changed = np.asarray(layer(xp).data) != y
    others = changed.copy()
    others[at] = False
    if layer.elementwise:
        assert not others.any(), f"{cls.__name__} is marked element-wise but other values moved"
    elif layer.spatial == "same":
        assert others.any(), f"{cls.__name__} keeps the shape and mixes values: is it element-wise?"


@pytest.mark.parametrize("cls", MERGE_CLASSES, ids=lambda c: c.__name__)
def test_merge_layers_take_several_inputs_and_a_sequential_refuses_them(cls):
    layer = _build(cls).eval()
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((1, HW, HW, C)) for _ in range(3)]
    y = np.asarray(layer(*xs))
    assert np.array_equal(y, np.asarray(layer(xs)))  # a list of inputs, as in Keras, is the same call
    assert y.shape[1:] == layer.compute_output_shape(*[x.shape[1:] for x in xs])
    assert layer.compute_output_shape([x.shape[1:] for x in xs]) == y.shape[1:]
    if layer.elementwise:  # changing one input value moves only the output value at its index
        xp = [x.copy() for x in xs]
        xp[1][0, 2, 3, 1] += 1.0
        changed = np.asarray(layer(*xp)) != y
        assert changed[0, 2, 3, 1] and changed.sum() == 1
    with pytest.raises(ValueError, match=f"{cls.__name__}: needs at least 2 inputs"):
        layer(xs[0])
    with pytest.raises(TypeError, match=f"Sequential: layer 'm' \\({cls.__name__}\\) is a merge layer"):
        nn.Sequential([("pre", nn.ReLU()), ("m", layer)])


COMBINE = {"sum": lambda xs: xs[0] + xs[1] + xs[2], "product": lambda xs: xs[0] * xs[1] * xs[2],
           "mean": lambda xs: (xs[0] + xs[1] + xs[2]) / 3, "max": lambda xs: np.maximum.reduce(xs),
           "concat": lambda xs: np.concatenate(xs, axis=-1)}


@pytest.mark.parametrize("cls", MERGE_CLASSES, ids=lambda c: c.__name__)
def test_merge_layers_combine_as_their_class_says(cls):
    """`combine` (read by explain) is what the layer computes, checked on small integers (exact)."""
    layer = _build(cls)
    assert cls.combine in COMBINE, f"{cls.__name__}.combine must be one of {sorted(COMBINE)}"
    xs = [np.random.default_rng(i).integers(-4, 5, (1, HW, HW, C)).astype(np.float64) for i in range(3)]
    assert np.array_equal(np.asarray(layer(*xs)), COMBINE[cls.combine](xs))


def test_explainable_kinds_are_the_classes_with_a_decomposition():
    assert set(explainable_kinds()) == {c.__name__ for c in LAYER_CLASSES if c.decomposition is not None}
    assert explainable_kinds()[:2] == ["Conv2D", "Dense"]


# --- summary ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_summary_lists_it(cls, placement):
    model, layer, _, out = _model(cls, placement)
    s = summary(model)
    assert s.error is None
    row = s["L"]
    assert row["type"] == cls.__name__ and tuple(row["output_shape"]) == out
    assert row["params"] == layer.num_parameters()
    assert (row["receptive_field"] is None) == (layer.spatial is None)


# --- receptive_field against a perturbation oracle ------------------------------------------------------
def _dependence(model, x, unit) -> np.ndarray:
    """Input pixels whose change (±8 on every channel: large enough to wake a dead ReLU) changes the
    unit of layer 'L'."""
    base = _value_of(model, x, "L", unit)
    moved = np.zeros((HW, HW), bool)
    for r, c in np.ndindex(HW, HW):
        for step in (8.0, -8.0):
            xp = x.copy()
            xp[r, c, :] += step
            moved[r, c] |= _value_of(model, xp, "L", unit) != base
    return moved


@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_receptive_field_holds_every_pixel_the_unit_depends_on(cls, placement):
    model, layer, x, out = _model(cls, placement)
    unit, pos = _unit(model, x, out)
    if layer.spatial is None:  # how positions move is unknown: the tracer must say so, never guess
        with pytest.raises(ValueError, match="cannot trace the receptive field through layer 'L'.*spatial "
                                             "attribute is None"):
            receptive_field(model, "L", pos)
        return
    moved = _dependence(model, x, unit)
    assert moved.any(), "the oracle must see the unit depend on some pixel"
    rf = receptive_field(model, "L", pos)
    missing = moved & ~rf.mask
    assert not missing.any(), f"pixels {np.argwhere(missing).tolist()} move the unit but are outside the field"


def test_softmax_over_another_axis_mixes_positions_and_says_so():
    model = nn.Sequential([("pre", nn.Conv2D(C_IN, C, 1, rng=0)), ("L", nn.Softmax(axis=1))],
                          input_shape=(HW, HW, C_IN))
    model.astype(np.float64)
    assert nn.Softmax().spatial == "same" and model.L.spatial is None
    x = np.random.default_rng(0).standard_normal((HW, HW, C_IN))
    assert _dependence(model, x, (2, 3, 0))[:, 3].sum() == HW  # every row of the column feeds the unit
    with pytest.raises(ValueError, match="cannot trace the receptive field through layer 'L'.*spatial "
                                         "attribute is None"):
        receptive_field(model, "L", (2, 3))


# --- explain ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_explain_decomposes_it_or_says_why_not(cls, placement):
    model, layer, x, out = _model(cls, placement)
    unit, pos = _unit(model, x, out)
    if layer.decomposition is None:
        with pytest.raises(ValueError, match=f"cannot explain layer 'L' of kind {cls.__name__}; explainable kinds: "
                                             + ", ".join(explainable_kinds())):
            explain(model, x, "L", unit[-1], pos)
        return
    e = explain(model, x, "L", unit[-1], pos)
    assert (e.kind, e.role, e.decomposition) == (cls.__name__, layer.role, layer.decomposition)
    assert e.engine_value == _value_of(model, x, "L", unit) and e.agrees, e.to_text()
    d = e.to_dict()
    assert (d["role"], d["decomposition"]) == (layer.role, layer.decomposition)
    for text in (e.to_text(), e.to_markdown(), e._repr_html_(), repr(e), e.to_json()):
        assert e.symbol in text
    assert "y^{\\text{L}}" in e.to_latex()


@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_explain_follows_a_value_through_it(cls, placement):
    """The layer before 'L' is explained; when 'L' keeps positions (or pools) the explanation goes on
    through it, and its recomputed value matches the engine's."""
    model, layer, x, out = _model(cls, placement)
    before = "pre" if placement == "maps" else "vec"
    e = explain(model, x, before, 0, None if placement == "vector" else (HW // 2, HW // 2))
    kept = tuple(out) == tuple(summary(model)[before]["output_shape"])  # GLU halves the maps: not kept
    through = layer_role(layer) in ("pool", "global_pool") or \
        (layer_role(layer) in ("activation", "elementwise") and kept)
    assert [s.layer for s in e.after][:1] == (["L"] if through else [])
    if through and e.after[0].value is not None:  # None: a pool window count other than one
        step = e.after[0]
        # 'L' applied to the recomputed value and to the engine's: they differ by at most the layer's
        # steepest slope times e.difference, plus the rounding of the layer itself (a few ulps)
        bound = STEEPEST * e.difference + 4 * np.finfo(np.float64).eps * max(1.0, abs(step.engine_value))
        assert abs(step.value - step.engine_value) <= bound


# --- report_data --------------------------------------------------------------------------------------
def _decode(text: str, dtype: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _taps(op, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Input rows and columns the window of output (r, c) taps, as the page computes them."""
    (t, _), (left, _) = op["pad"]
    rows = r * op["stride"][0] + np.arange(op["kernel"][0]) * op["dilation"][0] - t
    cols = c * op["stride"][1] + np.arange(op["kernel"][1]) * op["dilation"][1] - left
    return rows, cols


def _page_value(op: dict, x_in: np.ndarray, unit: tuple, c_out: int, dtype: str):
    """(value, Σ|terms|, number of terms) of one unit from the op's embedded numbers, as the page sums it."""
    if op["type"] == "dense":
        w = _decode(op["weight"], dtype, (op["in_features"], c_out))
        b = 0.0 if op["bias"] is None else _decode(op["bias"], dtype, (c_out,))[unit[0]]
        terms = np.append(x_in * w[:, unit[0]], b)
        return terms.sum(), np.abs(terms).sum(), terms.size
    if op["type"] == "global_pool":
        m = x_in[:, :, unit[0]]
        return (m.max(), np.abs(m).max(), 1) if op["mode"] == "max" else (m.mean(), np.abs(m).mean(), m.size)
    r, c, o = unit
    rows, cols = _taps(op, r, c)
    inside = ((rows >= 0) & (rows < x_in.shape[0]))[:, None] & ((cols >= 0) & (cols < x_in.shape[1]))[None, :]
    rr, cc = np.clip(rows, 0, x_in.shape[0] - 1), np.clip(cols, 0, x_in.shape[1] - 1)
    win = np.where(inside[:, :, None], x_in[np.ix_(rr, cc)], 0.0)  # (kh, kw, C_in)
    if op["type"] == "conv":
        k = _decode(op["kernels"], dtype, tuple(op["kernel"]) + (op["in_maps"], c_out))[:, :, :, o]
        b = 0.0 if op["bias"] is None else _decode(op["bias"], dtype, (c_out,))[o]
        terms = np.append(win * k, b)
        return terms.sum(), np.abs(terms).sum(), terms.size
    vals = win[:, :, o][inside]
    if op["mode"] == "max":
        return vals.max(), np.abs(vals).max(), 1
    n = vals.size if op.get("count_include_pad") is False else inside.size
    mean = vals.sum() / n
    if op["mode"] == "subsampling":
        coef, bias = op["coef"][o], op["bias"][o]
        return mean * coef + bias, np.abs(vals).sum() / n * abs(coef) + abs(bias), n + 2
    return mean, np.abs(vals).sum() / n, n


def _expected_op(layer) -> str | None:
    """The op type the page needs for a layer, by its attributes."""
    if layer.role in ("conv", "dense"):
        return layer.role
    if layer.role == "pool" and layer.decomposition is not None:
        return "pool" if layer.spatial == "window" else "global_pool"
    if layer.elementwise:
        return "elementwise"
    return {"flatten": "flatten", "pad": "zeropad"}.get(layer.spatial)


@pytest.mark.parametrize("cls, placement", list(_cases()))
def test_report_gives_it_the_op_its_attributes_call_for(cls, placement):
    model, layer, x, out = _model(cls, placement)
    data = report_data(model, x)
    entries = {e["name"]: e for e in data["layers"]}
    entry, before = entries["L"], data["layers"][entries["L"]["index"] - 1]
    op = entry["op"]
    assert (None if op is None else op["type"]) == _expected_op(layer)
    assert entry["kind"] == cls.__name__ and tuple(entry["shape"]) == out
    x_in = _decode(before["values"], data["dtype"], before["shape"])
    y = _decode(entry["values"], data["dtype"], entry["shape"])
    if op is None or op["type"] == "elementwise":
        assert op is None or y.shape == x_in.shape
    elif op["type"] == "flatten":
        np.testing.assert_array_equal(y, x_in.ravel())
    elif op["type"] == "zeropad":
        (t, b), (left, right) = op["pad"]
        np.testing.assert_array_equal(y, np.pad(x_in, ((t, b), (left, right), (0, 0))))
    else:
        unit, _ = _unit(model, x, out)
        value, abs_sum, n = _page_value(op, x_in, unit, out[-1], data["dtype"])
        # the page's sum and the engine's differ only by the order of an n-term float64 sum
        assert_sum_close(value, y[unit], abs_sum, np.float64, n, err_msg=f"{cls.__name__} {op['type']}")
    if op is not None and op["type"] in ("conv", "dense"):
        assert "L" in [r["layer"] for r in data["references"]]


# --- no class-name lists of layer kinds ------------------------------------------------------------------
KIND_NAMES = {c.__name__ for c in ALL_CLASSES if not c.__name__.startswith("_")} | PHANTOMS


def _names_a_kind(node) -> bool:
    """`kind`, `x.kind` (not `dtype.kind`), or anything ending in `.__name__` / `.__module__`."""
    if isinstance(node, ast.Name):
        return node.id == "kind"
    if isinstance(node, ast.Attribute):
        dtype_kind = node.attr == "kind" and "dtype" in ast.unparse(node.value)  # ndarray.dtype.kind: 'f', 'i', ...
        return node.attr in ("__name__", "__module__") or (node.attr == "kind" and not dtype_kind)
    return False


def _kind_constants(node) -> list[str]:
    """Layer class names among a node's string constants (the node itself, or a tuple/list/set's items)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in KIND_NAMES]


def class_name_tests(source: str) -> list[tuple[int, str]]:
    """(line, code) of every place that decides by a layer's class name: a comparison (==, !=, in,
    not in) with a class-name string or a collection of them; a tuple, list, set or dict key of
    class names (outside `__all__`); and `.startswith`/`.endswith` or `in` on an expression naming a
    kind, a `__name__` or a `__module__`."""
    tree = ast.parse(source)
    exports = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)}
    hits = []
    for node in ast.walk(tree):
        bad = False
        if isinstance(node, ast.Compare):
            operands = [node.left] + node.comparators
            substring = isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and _names_a_kind(node.comparators[0])
            bad = substring or any(_kind_constants(o) for o in operands)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and id(node) not in exports:
            bad = bool(_kind_constants(node))
        elif isinstance(node, ast.Dict):
            bad = any(k is not None and _kind_constants(k) for k in node.keys)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("startswith", "endswith"):
            bad = _names_a_kind(node.func.value)
        if bad:
            hits.append((node.lineno, ast.unparse(node)[:100]))
    return hits


def test_the_scan_finds_the_old_patterns():
    old = '''
conv_kinds = ("Conv2D", "DepthwiseConv2D")
if kind == "Dense": pass
if self.kind in ("MaxPool2D", "GlobalMaxPool2D"): pass
last = {"MaxPool2D": "max"}.get(kind)
if kind.startswith("Global"): pass
mode = "max" if "Max" in kind else "avg"
ok = type(layer).__module__.endswith("nn.activation")
'''
    assert sorted({line for line, _ in class_name_tests(old)}) == [2, 3, 4, 5, 6, 7, 8]
    fine = '''
__all__ = ["Conv2D", "Dense"]
op = "Conv2D"
config = {"class": "Dense", "in_features": 3}
if layer.role == "conv" and layer.decomposition in ("window_max", "window_mean"): pass
'''
    assert class_name_tests(fine) == []


#: Packages whose string constants are another framework's vocabulary, not featuremaps layer kinds:
#: ONNX op types and Keras/torch class names (Add, Reshape, Conv2D, Sequential, …) share names with
#: featuremaps' layer classes.
FORMAT_VOCABULARY = ("onnx", "keras", "torch")


def test_no_class_name_lists_of_layer_kinds_remain():
    root = Path(featuremaps.__file__).parent
    sources = [p for p in sorted(root.rglob("*.py")) if p.relative_to(root).parts[0] not in FORMAT_VOCABULARY]
    hits = [f"{p.relative_to(root.parent)}:{line}: {code}" for p in sources
            for line, code in class_name_tests(p.read_text(encoding="utf-8"))]
    why = "decide by the layer's class attributes (featuremaps.nn.Module), not its name"
    assert hits == [], why + ":\n" + "\n".join(hits)
