"""The numba kernels (the `fast` extra) give results bit-identical to the pure NumPy path.

The other test modules run with the kernels on (numba is part of the test extra), so the torch
oracles check the accelerated path; here every accelerated step is compared bit for bit with the
NumPy path on random shapes, both dtypes, one and two threads, ties, NaN and ±inf. CI runs the
suite a second time on the NumPy path (`.ci/run`: FEATUREMAPS_NUMBA=0 with
FEATUREMAPS_CI_VARIANT=numpy-haswell); these comparisons switch the kernels on for themselves.
"""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import featuremaps.functional as fn
from featuremaps import Tensor, models, optim
from featuremaps.functional import accel, conv_algos
from featuremaps.functional import conv as conv_mod
from featuremaps.functional import threads as threads_mod
from tests.oracles import run_op


CI_NUMPY_VARIANT = "numpy-haswell"  # .ci/run's second run: the NumPy path (FEATUREMAPS_NUMBA=0)


def test_numba_is_installed_and_on():
    """CI must exercise the kernels: the test extra installs numba and nothing switches it off.
    The one exception says so twice, FEATUREMAPS_CI_VARIANT=numpy-haswell and FEATUREMAPS_NUMBA=0
    (.ci/run's NumPy-path run); there the kernels must be off, and this checks that instead."""
    assert accel.numba_available()
    if os.environ.get("FEATUREMAPS_CI_VARIANT") == CI_NUMPY_VARIANT:
        assert os.environ.get("FEATUREMAPS_NUMBA") == "0", "the NumPy-path CI variant must set FEATUREMAPS_NUMBA=0"
        assert not accel.numba_enabled()
    else:
        assert accel.numba_enabled(), "numba is installed but switched off (FEATUREMAPS_NUMBA=0?)"


@contextlib.contextmanager
def _numba_on():
    """The kernels on, even where FEATUREMAPS_NUMBA=0 switched them off for the rest of the suite."""
    assert accel.numba_available()
    was = accel.numba_enabled()
    accel.use_numba(True)
    try:
        yield
    finally:
        accel.use_numba(was)


def _both(run):
    """run() with the kernels on, then on the NumPy path: the two lists of arrays. The direct conv,
    which reorders sums (tests/test_fused.py holds it to rounding), is not offered in the first run."""
    with _numba_on(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_algos, "_direct", lambda: None)
        conv_algos.clear()
        fast = run()
    conv_algos.clear()
    with accel.numba_disabled():
        slow = run()
    return fast, slow


def _assert_identical(fast, slow, names):
    for f, s, name in zip(fast, slow, names):
        assert f.dtype == s.dtype and f.shape == s.shape, name
        # bit patterns, NaN payloads aside: equal_nan compares NaN positions, view compares the rest
        np.testing.assert_array_equal(np.isnan(f), np.isnan(s), err_msg=name)
        ok = ~np.isnan(f)
        np.testing.assert_array_equal(f[ok].view(f"i{f.itemsize}"), s[ok].view(f"i{s.itemsize}"), err_msg=name)


def _grads(op, arrays, seed=0):
    """[output, *input gradients] for the seeded random upstream gradient (tests/oracles.run_op)."""
    out, grads, _ = run_op(op, arrays, seed=seed)
    return [out, *grads]


@st.composite
def tile_pool_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    h, w = draw(st.integers(kh, 3 * kh + 2)), draw(st.integers(kw, 3 * kw + 2))
    kind = draw(st.sampled_from(["normal", "ties", "special"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, h, w, c), (kh, kw), kind, dtype, draw(st.integers(0, 2 ** 16))


@settings(max_examples=60, deadline=None)
@given(tile_pool_case(), st.booleans())
def test_max_pool_tiles_identical(case, two_threads):
    shape, kernel, kind, dtype, seed = case
    rng = np.random.default_rng(seed)
    if kind == "ties":
        x = rng.integers(-1, 2, shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
        if kind == "special":
            flat = x.reshape(-1)
            picks = rng.choice(flat.size, size=max(1, flat.size // 5), replace=False)
            flat[picks] = rng.choice([np.nan, np.inf, -np.inf], size=picks.size)
    mp = pytest.MonkeyPatch()
    if two_threads:
        mp.setattr(threads_mod, "THREADS", 2)
        mp.setattr(threads_mod, "MIN_BYTES", 0)
    try:
        fast, slow = _both(lambda: _grads(lambda t: fn.max_pool2d(t, kernel), [x], seed))
    finally:
        mp.undo()
    _assert_identical(fast, slow, ["y", "dx"])


@st.composite
def row_conv_case(draw):
    """Convs on the row-window input-gradient path (stride 1 along W, one group) with few input
    maps (channel-major adds, NumPy either way) and many (the kernel's adds)."""
    c = draw(st.sampled_from([1, 2, 3, 6, 16, 20]))
    o = draw(st.integers(1, 8))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh = draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - sum(pads[0])), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - sum(pads[1])), 9))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (draw(st.integers(1, 3)), h, w, c), (kh, kw, c, o), dict(stride=(sh, 1), dilation=(dh, dw), padding=pads), \
        dtype, draw(st.integers(0, 2 ** 16))


@st.composite
def col_conv_case(draw):
    """Convs on the column-matrix input-gradient path: stride > 1 along W, any padding/dilation."""
    c, o = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 7))  # kw 5..7 at stride 2: 3-4 terms per sum
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(2, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - sum(pads[0])), 10))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - sum(pads[1])), 16))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (draw(st.integers(1, 3)), h, w, c), (kh, kw, c, o), dict(stride=(sh, sw), dilation=(dh, dw), padding=pads), \
        dtype, draw(st.integers(0, 2 ** 16))


@settings(max_examples=60, deadline=None)
@given(st.one_of(row_conv_case(), col_conv_case()), st.booleans())
def test_conv_input_gradient_identical(case, two_threads):
    xs, ws, opts, dtype, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[3:]))
    mp = pytest.MonkeyPatch()
    if two_threads:
        mp.setattr(threads_mod, "THREADS", 2)
        mp.setattr(threads_mod, "MIN_BYTES", 0)
    g = conv_mod._layer_shape(xs, ws, 1, opts["stride"], opts["padding"], opts["dilation"], "test")
    with _numba_on():
        twins = [name for name in conv_algos.candidates(g, dtype)["dx"]  # blocks_numba has no NumPy twin:
                 if name.endswith("_numba") and name.removesuffix("_numba") in conv_algos.NAMES["dx"]]
    with accel.numba_disabled():
        base = conv_algos.rule(g, dtype)  # the NumPy path's forward and dW, in both runs (not the direct conv)
    try:
        for name in twins or ["pointwise"]:  # each compiled dx against its NumPy twin (the rule may pick another)
            with _numba_on(), conv_algos.use_conv_algorithm(base.forward, base.dw, name):
                fast = _grads(lambda *t: fn.conv2d(*t, **opts), [x, w, b], seed)
            with accel.numba_disabled(), conv_algos.use_conv_algorithm(base.forward, base.dw,
                                                                       name.removesuffix("_numba")):
                slow = _grads(lambda *t: fn.conv2d(*t, **opts), [x, w, b], seed)
            _assert_identical(fast, slow, [f"{name} {what}" for what in ("y", "dx", "dw", "db")])
    finally:
        mp.undo()


def test_lenet_training_steps_identical():
    """Three SGD steps of the zoo's lenet and lenet5 end in the same weights either way."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 8)

    def train(name):
        model = models.get(name, rng=np.random.default_rng(0))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            loss = fn.cross_entropy(model(Tensor(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.data for p in model.parameters()]

    for name in ("lenet", "lenet5"):
        fast, slow = _both(lambda: train(name))
        _assert_identical(fast, slow, [f"{name} parameter {i}" for i in range(len(fast))])


def test_a_backward_after_switching_off_still_works():
    """A forward run with the kernels keeps what its backward needs, even if they are switched off
    before the backward."""
    x = np.random.default_rng(0).integers(-1, 2, (2, 4, 6, 3)).astype(np.float64)
    t = Tensor(x, requires_grad=True)
    y = fn.max_pool2d(t, 2)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    with accel.numba_disabled():
        y.backward(gy)
        ref = Tensor(x, requires_grad=True)
        fn.max_pool2d(ref, 2).backward(gy)
    _assert_identical([t.grad], [ref.grad], ["dx"])


def test_use_numba_switch_and_errors():
    was = accel.numba_enabled()
    try:
        accel.use_numba(False)
        assert not accel.numba_enabled()
        assert accel.kernels() is None
        accel.use_numba(True)
        assert accel.numba_enabled()
    finally:
        accel.use_numba(was)  # as the environment set it, for the tests that follow
    with pytest.raises(TypeError, match="use_numba: flag must be True or False; received 'yes'"):
        accel.use_numba("yes")


def test_environment_variable_switches_it_off():
    code = "from featuremaps.functional import accel; print(accel.numba_available(), accel.numba_enabled())"
    env = dict(os.environ, FEATUREMAPS_NUMBA="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 300), st.integers(0, 2 ** 16))
def test_tanh_backward_identical(dtype, size, seed):
    x = (np.random.default_rng(seed).standard_normal(size) * 3).astype(dtype)
    fast, slow = _both(lambda: _grads(fn.tanh, [x], seed))
    _assert_identical(fast, slow, ["y", "dx"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_momentum_identical(dtype):
    """Five updates with a changing learning rate; the fused update is used only for plain momentum."""
    rng = np.random.default_rng(5)
    w0, grads = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((5, 7, 5)).astype(dtype)

    def run(**kw):
        p = Tensor(w0.copy(), requires_grad=True)
        opt = optim.SGD([p], lr=0.1, momentum=0.9, **kw)
        for k, g in enumerate(grads):
            opt.lr = 0.1 / (k + 1)
            p.grad = g.copy()
            opt.step()
        return [p.data, opt.state["momentum_buffer"][0]]

    for kw in ({}, {"nesterov": True}, {"weight_decay": 0.01}):
        fast, slow = _both(lambda: run(**kw))
        _assert_identical(fast, slow, ["p", "buffer"])


def test_other_dtypes_take_the_numpy_path():
    """The kernels are compiled for float32 and float64 only; float16 (and mixed dtypes) fall back."""
    x = np.random.default_rng(6).standard_normal((2, 4, 4, 3)).astype(np.float16)
    fast, slow = _both(lambda: _grads(lambda t: fn.tanh(fn.max_pool2d(t, 2)), [x]))
    _assert_identical(fast, slow, ["y", "dx"])
    assert accel.kernels(x) is None and accel.kernels(x.astype(np.float32), x.astype(np.float64)) is None
    with _numba_on():
        assert accel.kernels(x.astype(np.float32)) is not None


def test_without_numba_everything_runs_on_numpy():
    """numba missing (or failing to import): no error, the NumPy path, and the reason is kept."""
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np, featuremaps.functional as F\n"
            "from featuremaps.functional import accel\n"
            "y = F.max_pool2d(np.arange(16.0).reshape(1, 4, 4, 1), 2)\n"
            "print(accel.numba_available(), accel.numba_enabled(), y.ravel().tolist())\n"
            "print(accel.numba_unavailable_reason())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "False False [5.0, 7.0, 13.0, 15.0]"
    assert "numba" in out[1] and "Error" in out[1]


@pytest.mark.parametrize("var,value,message", [
    ("FEATUREMAPS_NUMBA", "maybe",
     "FEATUREMAPS_NUMBA must be 0/false/no/off or 1/true/yes/on (or unset); received 'maybe'"),
    ("FEATUREMAPS_NUM_THREADS", "two", "FEATUREMAPS_NUM_THREADS must be a positive integer (or unset); received 'two'"),
    ("FEATUREMAPS_NUM_THREADS", "0", "FEATUREMAPS_NUM_THREADS must be a positive integer (or unset); received '0'"),
])
def test_bad_environment_values_are_named(var, value, message):
    env = dict(os.environ, **{var: value})
    out = subprocess.run([sys.executable, "-c", "import featuremaps"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == f"ValueError: {message}"
