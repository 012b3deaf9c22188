"""window.Geometry, the one window geometry, against naive loops (and torch's output sizes).

Each property is checked against a loop that walks the definition: window i of an axis taps padded
position i·s + p·d for p < k, i.e. input position i·s + p·d − lo. Covered: the output size (floor
and ceil_mode, asymmetric pads), the taps and their slices, the clipped tap ranges, the window view,
the size error, the transposed conv's geometry, and scatter_add (col2im) against a naive loop and
against its numba twin. The last tests check that no second geometry type or span formula is left.
"""
import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings, strategies as st

from featuremaps import nn
from featuremaps.functional import accel, conv2d, max_pool2d
from featuremaps.functional.window import Axis, Geometry, clip, pad_hw
from featuremaps.inspect import receptive

PACKAGE = Path(__file__).resolve().parents[1] / "featuremaps"


# --- naive definitions ----------------------------------------------------------------------------
def naive_out(size, k, s, d, lo, hi, ceil_mode):
    """The number of windows, by walking them: a window counts when its last tap is inside the
    padded input; with ceil_mode, when it starts early enough that rounding up reaches it (before
    padded − span + s) and it starts inside the input or its left padding (PyTorch's rule)."""
    padded, last = size + lo + hi, max(p * d for p in range(k))
    if last >= padded:
        return 0
    count = 0
    while True:
        start = count * s
        fits = start + last < padded if not ceil_mode else (start + last < padded + s - 1 and start < size + lo)
        if not fits:
            return count
        count += 1


def naive_taps(axis, i):
    return [i * axis.s + p * axis.d - axis.lo for p in range(axis.k)]


@st.composite
def axes(draw, ceil_mode=None, max_pad=4):
    k, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    ceil = draw(st.booleans()) if ceil_mode is None else ceil_mode
    pad_max = k // 2 if ceil else max_pad  # ceil_mode is pooling's: padding at most half the window
    lo, hi = draw(st.integers(0, pad_max)), draw(st.integers(0, pad_max))
    size = draw(st.integers(1, 14))
    return Axis.of(size, k, s, d, lo, hi, ceil), ceil


def fitting_axes(**kw):
    return axes(**kw).filter(lambda a: a[0].out >= 1)


# --- one axis ---------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(axes())
def test_output_size_is_the_number_of_windows(drawn):
    a, ceil = drawn
    assert a.out == naive_out(a.size, a.k, a.s, a.d, a.lo, a.hi, ceil)
    assert a.span == max(p * a.d for p in range(a.k)) + 1
    assert a.padded == a.size + a.lo + a.hi


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 3), st.integers(1, 2), st.data())
def test_ceil_mode_sizes_match_torch(n, k, s, d, data):
    p = data.draw(st.integers(0, k // 2))
    a = Axis.of(n, k, s, d, p, p, ceil_mode=True)
    if a.out < 1:
        return
    ref = torch_F.max_pool2d(torch.zeros(1, 1, n, n), k, s, p, dilation=d, ceil_mode=True)
    assert ref.shape[-1] == a.out


@settings(max_examples=200, deadline=None)
@given(fitting_axes())
def test_taps_slices_and_clipped_ranges_walk_the_windows(drawn):
    a, _ = drawn
    room = np.arange(a.padded + a.overhang)  # padded positions, plus a ceil_mode overhang
    last = max(i * a.s + p * a.d for i in range(a.out) for p in range(a.k))
    assert a.overhang == max(last + 1 - a.padded, 0)
    for p in range(a.k):
        assert room[a.tap(p)].tolist() == [i * a.s + p * a.d for i in range(a.out)]
        inside = [(i, r) for i in range(a.out) for r in [naive_taps(a, i)[p]] if 0 <= r < a.size]
        got = a.clipped(p)
        if not inside:
            assert got is None
        else:
            assert list(zip(np.arange(a.out)[got[0]].tolist(), np.arange(a.size)[got[1]].tolist())) == inside
    phases = [room[:a.padded][ph::a.s].tolist() for ph in range(a.s)]  # positions ph, ph + s, …
    assert a.phase_size == max(len(run) for run in phases)
    for p in range(a.k):
        ph, u = a.tap_phase(p)
        reads = phases[ph][u: u + a.out] if a.overhang == 0 else None  # tap p's windows, in its phase
        assert reads is None or reads == [i * a.s + p * a.d for i in range(a.out)]
    for i in range(a.out):
        assert a.inputs(i).tolist() == naive_taps(a, i)
    assert a.starts().tolist() == [naive_taps(a, i)[0] for i in range(a.out)]
    i0 = a.out // 3
    every = [r for i in range(i0, a.out) for r in naive_taps(a, i)]
    assert a.reach(i0, a.out - 1) == (min(every), max(every))


@settings(max_examples=200, deadline=None)
@given(st.integers(-12, 12), st.integers(1, 12), st.integers(1, 10), st.integers(1, 4))
def test_clip_keeps_exactly_the_positions_inside(offset, size, out, stride):
    inside = [(i, i * stride + offset) for i in range(out) if 0 <= i * stride + offset < size]
    got = clip(offset, size, out, stride)
    assert (got is None) == (not inside)
    if inside:
        assert list(zip(range(out)[got[0]], range(size)[got[1]])) == inside


# --- the 2-D geometry --------------------------------------------------------------------------------
@st.composite
def geometries(draw, ceil_mode=None):
    (h, ceil), (w, _) = draw(fitting_axes(ceil_mode=ceil_mode)), draw(fitting_axes(ceil_mode=False))
    if ceil:  # one ceil_mode for both axes
        w = Axis.of(w.size, w.k, w.s, w.d, min(w.lo, w.k // 2), min(w.hi, w.k // 2), True)
        if w.out < 1:
            w = Axis.of(w.k * w.d + w.s, w.k, w.s, w.d, 0, 0, True)
    return Geometry(h, w)


@settings(max_examples=100, deadline=None)
@given(geometries(), st.integers(1, 3), st.integers(0, 2 ** 16))
def test_window_view_and_taps_against_a_naive_gather(geo, c, seed):
    x = np.random.default_rng(seed).standard_normal((2, *geo.size_hw, c))
    xp = pad_hw(x, geo.array_pads, np.nan)  # (n, hp, wp, c): every tap inside, padding marked NaN
    v = geo.windows(xp)
    assert v.shape == (2, *geo.out_hw, *geo.kernel, c)
    assert geo.taps() == [(p * geo.w.k + q, p, q) for p in range(geo.h.k) for q in range(geo.w.k)]
    t, l = geo.h.lo, geo.w.lo  # noqa: E741
    for i in range(geo.h.out):
        for j in range(geo.w.out):
            for _, p, q in geo.taps():
                r, col = geo.rows(i)[p], geo.cols(j)[q]
                np.testing.assert_array_equal(v[:, i, j, p, q], xp[:, r + t, col + l])
    tiles = all(a.s == a.k and a.d == 1 and a.lo == a.hi == a.overhang == 0 for a in geo)
    assert geo.tiles == tiles


@settings(max_examples=150, deadline=None)
@given(st.tuples(st.integers(1, 9), st.integers(1, 9)), st.tuples(st.integers(1, 5), st.integers(1, 5)),
       st.tuples(st.integers(1, 3), st.integers(1, 3)), st.tuples(st.integers(1, 3), st.integers(1, 3)),
       st.sampled_from([0, 1, (2, 0), ((1, 0), (0, 3)), "valid", "same", "full"]))
def test_of_validates_and_the_one_error_is_raised_exactly_when_the_kernel_does_not_fit(size, k, s, d, padding):
    geo = Geometry.of(size, k, s, padding, d, op="f")
    fits = all(naive_out(a.size, a.k, a.s, a.d, a.lo, a.hi, False) >= 1 for a in geo)
    assert (geo.misfit() is None) == fits
    if fits:
        assert geo.check("f") is geo
        return
    h, w = geo
    with pytest.raises(ValueError, match=rf"^f: the kernel {k[0]}×{k[1]}.* spans {h.span}×{w.span} but the padded "
                                         rf"input is only {h.padded}×{w.padded} "):
        geo.check("f")


def test_the_size_error_is_the_same_everywhere():
    geo = Geometry.of((4, 6), 5, padding=((0, 0), (1, 0)), dilation=(1, 2))
    problem = geo.misfit()
    assert problem == ("the kernel 5×5 (dilation 1×2) spans 5×9 but the padded input is only 4×7 "
                       "(input 4×6, padding ((0, 0), (1, 0))); the output would be 0×0")
    x, w = np.zeros((1, 4, 6, 1), np.float32), np.zeros((5, 5, 1, 1), np.float32)
    with pytest.raises(ValueError, match=re.escape(f"conv2d: {problem}.")):
        conv2d(x, w, padding=((0, 0), (1, 0)), dilation=(1, 2))
    with pytest.raises(ValueError, match=re.escape("max_pool2d: the kernel 3×5 (dilation 2×2) spans 5×9 but")):
        max_pool2d(x, (3, 5), 1, dilation=2)
    with pytest.raises(nn.ShapeError, match=re.escape(f"needs a padded input of at least 5×9: {problem}")):
        nn.Conv2D(1, 1, 5, padding=((0, 0), (1, 0)), dilation=(1, 2)).compute_output_shape((4, 6, 1))
    with pytest.raises(nn.ShapeError, match=re.escape("needs a padded input of at least 3×3: the kernel 3×3 spans")):
        nn.MaxPool2D(3).compute_output_shape((2, 5, 1))
    with pytest.raises(nn.ShapeError, match=re.escape("needs a padded input of at least 2×2: the kernel 2×2 spans")):
        nn.Subsampling2D(1).compute_output_shape((1, 5, 1))


@settings(max_examples=100, deadline=None)
@given(st.tuples(st.integers(1, 6), st.integers(1, 6)), st.tuples(st.integers(1, 4), st.integers(1, 4)),
       st.tuples(st.integers(1, 3), st.integers(1, 3)), st.tuples(st.integers(1, 2), st.integers(1, 2)),
       st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), st.data())
def test_transposed_size_is_the_largest_input_the_conv_maps_to_its_output(in_hw, k, s, d, p4, data):
    pads = ((p4[0], p4[1]), (p4[2], p4[3]))
    extra = tuple(data.draw(st.integers(0, ss - 1)) for ss in s)  # output_padding below the stride
    geo = Geometry.transposed(in_hw, k, s, pads, d, extra)
    assert geo.out_hw == in_hw
    for a, ex in zip(geo, extra):
        if a.size < 1:
            continue
        assert Axis.of(a.size, a.k, a.s, a.d, a.lo, a.hi).out == a.out  # the conv gives back the input size
        larger = a.size + a.s - ex  # one more stride than the largest output_padding allows
        assert Axis.of(larger, a.k, a.s, a.d, a.lo, a.hi).out == a.out + 1


# --- scatter_add (col2im) -------------------------------------------------------------------------
def naive_scatter(geo, out, blocks):
    out = out.copy()
    h, w = geo
    for i in range(h.out):
        for j in range(w.out):
            for p in range(h.k):
                for q in range(w.k):
                    r, c = i * h.s + p * h.d - h.lo, j * w.s + q * w.d - w.lo
                    if 0 <= r < h.size and 0 <= c < w.size:
                        out[:, r, c] += blocks[:, i, j, p, q]
    return out


@settings(max_examples=120, deadline=None)
@given(geometries(), st.sampled_from([(2,), (3, 2)]), st.integers(0, 2 ** 16))
def test_scatter_add_is_the_naive_col2im(geo, tail, seed):
    rng = np.random.default_rng(seed)
    # small integers: every sum is exact in float64, so the loop and scatter_add must agree exactly
    blocks = rng.integers(-8, 9, (2, *geo.out_hw, *geo.kernel, *tail)).astype(np.float64)
    start = rng.integers(-8, 9, (2, *geo.size_hw, *tail)).astype(np.float64)
    want = naive_scatter(geo, start, blocks)
    got = start.copy()
    geo.scatter_add(got, blocks)
    np.testing.assert_array_equal(got, want)
    per_tap = start.copy()
    geo.scatter_add(per_tap, lambda p, q: blocks[:, :, :, p, q])
    np.testing.assert_array_equal(per_tap, want)


@settings(max_examples=60, deadline=None)
@given(geometries(), st.integers(0, 2 ** 16))
def test_scatter_add_on_bools_is_the_union_of_the_windows(geo, seed):
    mask = np.random.default_rng(seed).random(geo.out_hw) < 0.3
    got = np.zeros((1, *geo.size_hw), bool)
    geo.scatter_add(got, lambda p, q: mask[None])
    want = np.zeros(geo.size_hw, bool)
    for i, j in zip(*np.nonzero(mask)):
        for r in geo.rows(i):
            for c in geo.cols(j):
                if 0 <= r < geo.h.size and 0 <= c < geo.w.size:
                    want[r, c] = True
    np.testing.assert_array_equal(got[0], want)


@settings(max_examples=60, deadline=None)
@given(geometries(ceil_mode=False), st.integers(1, 4), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2 ** 16))
def test_the_numba_twin_adds_the_same_terms_in_the_same_order(geo, c, dtype, seed):
    kernels = accel.loaded()
    assert kernels is not None, f"numba is a test dependency: {accel.numba_unavailable_reason()}"
    rng = np.random.default_rng(seed)
    blocks = rng.standard_normal((3, *geo.out_hw, *geo.kernel, c)).astype(dtype)
    start = rng.standard_normal((3, *geo.size_hw, c)).astype(dtype)
    numpy_sum, numba_sum = start.copy(), start.copy()
    geo.scatter_add(numpy_sum, blocks)
    geo.scatter_add(numba_sum, blocks, kernels)
    assert numba_sum.tobytes() == numpy_sum.tobytes()  # the twin's contract: bit for bit


# --- every consumer reads the same geometry ---------------------------------------------------------
@pytest.mark.parametrize("layer, in_hw, want", [
    (nn.Conv2D(1, 2, (3, 5), stride=(2, 1), padding=((1, 0), (2, 2)), dilation=(1, 2)), (9, 11),
     Geometry.of((9, 11), (3, 5), (2, 1), ((1, 0), (2, 2)), (1, 2))),
    (nn.Conv2D(1, 2, 3, stride=2, padding="same"), (7, 8), Geometry.of((7, 8), 3, 2, "same")),
    (nn.MaxPool2D(3, 2, 1, ceil_mode=True, dilation=2), (9, 10), Geometry.of((9, 10), 3, 2, 1, 2, ceil_mode=True)),
    (nn.AvgPool2D((2, 3), padding=((1, 0), (1, 1))), (6, 7), Geometry.of((6, 7), (2, 3), (2, 3), ((1, 0), (1, 1)))),
    (nn.Subsampling2D(1, 2), (7, 6), Geometry.of((7, 6), 2, 2)),
])
def test_layers_receptive_fields_and_ops_share_one_geometry(layer, in_hw, want):
    geo = receptive.window_geometry(layer, in_hw)
    assert geo == want and isinstance(geo, Geometry)
    shape = layer.compute_output_shape((*in_hw, 1))
    assert tuple(shape[:2]) == want.out_hw
    y = layer(np.zeros((1, *in_hw, 1), np.float32))
    assert y.shape[1:3] == want.out_hw
    assert receptive.Geometry is Geometry  # inspect.receptive's name for it, kept


# --- one geometry type, one span formula --------------------------------------------------------------
def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_only_one_geometry_type_is_left():
    found = [f"{path.relative_to(PACKAGE)}:{node.name}" for path, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and re.search(r"geom", node.name, re.IGNORECASE)]
    assert found == ["functional/window.py:Geometry"]


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    return ""


def _is_k_minus_1(node) -> bool:
    """`k - 1` for a kernel-size name (k, kh, kw, kernel, kernel_size, ...)."""
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and isinstance(node.right, ast.Constant)
            and node.right.value == 1 and re.fullmatch(r"k\w*|kernel\w*", _name(node.left)) is not None)


def test_the_dilated_span_is_written_only_in_window_py():
    """d·(k − 1) (+ 1), in either order, appears nowhere in the package but window.py."""
    found = []
    for path, tree in _modules():
        if path.relative_to(PACKAGE).as_posix() == "functional/window.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and (
                    _is_k_minus_1(node.left) or _is_k_minus_1(node.right)):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, ("a dilated span d·(k − 1) outside window.py (use window.Axis / Geometry, or "
                       "window.dilated_span): " + ", ".join(found))


def test_the_scanner_sees_a_span():
    tree = ast.parse("eh = dh * (kh - 1) + 1\new = (kernel[1] - 1) * d\nok = 2 * (block - 1)")
    hits = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
            and (_is_k_minus_1(n.left) or _is_k_minus_1(n.right))]
    assert sorted(hits) == [1, 2]
