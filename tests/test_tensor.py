"""Tensor autograd: every operator against PyTorch in float64, fan-out, no_grad, dtypes, errors."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import featuremaps as fm
from featuremaps import Tensor, no_grad
from tests.oracles import gradcheck

RNG = np.random.default_rng(0)


def _pair(fm_fn, torch_fn, *arrays):
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    tt = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = fm_fn(*ts), torch_fn(*tt)
    g = RNG.standard_normal(ref.shape)
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    for t, r in zip(ts, tt):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,fm_fn,torch_fn", [
    ("add-broadcast", lambda a, b: a + b, lambda a, b: a + b),
    ("sub", lambda a, b: a - b, lambda a, b: a - b),
    ("mul", lambda a, b: a * b, lambda a, b: a * b),
    ("div", lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1)),
    ("matmul", lambda a, b: a @ b.transpose(), lambda a, b: a @ b.T),
])
def test_binary_ops_match_torch(name, fm_fn, torch_fn):
    a = RNG.standard_normal((3, 4))
    b = RNG.standard_normal((1, 4)) if name != "matmul" else RNG.standard_normal((5, 4))
    _pair(fm_fn, torch_fn, a, b)


@pytest.mark.parametrize("fm_fn,torch_fn", [
    (lambda a: a.exp(), torch.exp),
    (lambda a: (a * a + 1).log(), lambda a: torch.log(a * a + 1)),
    (lambda a: (a * a + 1).sqrt(), lambda a: torch.sqrt(a * a + 1)),
    (lambda a: a.abs(), torch.abs),
    (lambda a: -a ** 3, lambda a: -a ** 3),
    (lambda a: 2.0 - a, lambda a: 2.0 - a),
    (lambda a: 1.0 / (a * a + 1), lambda a: 1.0 / (a * a + 1)),
    (lambda a: a.sum(axis=1), lambda a: a.sum(dim=1)),
    (lambda a: a.mean(axis=(0, 2), keepdims=True), lambda a: a.mean(dim=(0, 2), keepdim=True)),
    (lambda a: a.max(axis=1), lambda a: a.max(dim=1).values),
    (lambda a: a.min(axis=-1), lambda a: a.min(dim=-1).values),
    (lambda a: a.max(), lambda a: a.max()),
    (lambda a: a.reshape(6, -1), lambda a: a.reshape(6, -1)),
    (lambda a: a.transpose(2, 0, 1), lambda a: a.permute(2, 0, 1)),
    (lambda a: a[1:, ::2, [0, 0, 3]], lambda a: a[1:, ::2, [0, 0, 3]]),
    (lambda a: a.flatten(), lambda a: a.flatten(1)),
])
def test_unary_ops_match_torch(fm_fn, torch_fn):
    _pair(fm_fn, torch_fn, RNG.standard_normal((2, 3, 4)))


def test_fan_out_accumulates_and_backward_accumulates_across_calls():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x * x + x * 3.0  # x used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3 + 2)


def test_max_gradient_goes_to_one_argmax_like_torch():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    _pair(lambda t: t.max(axis=1), lambda t: t.max(dim=1).values, a)


def test_no_grad_skips_the_tape_and_detach_cuts_it():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and fm.is_grad_enabled()
    assert not x.detach().requires_grad


def test_dtypes_float32_default_float64_kept():
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64
    assert (Tensor(np.zeros(2, np.float32)) * 2.5).dtype == np.float32
    assert (Tensor(np.zeros(2)) + 1).dtype == np.float64
    assert isinstance(Tensor(np.ones(2)).numpy(), np.ndarray)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="requires_grad"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(ValueError, match="grad must be given"):
        Tensor(np.ones(3), requires_grad=True).__mul__(2.0).backward()
    with pytest.raises(ValueError, match="cannot reshape"):
        Tensor(np.ones(6)).reshape(4, 2)
    with pytest.raises(ValueError, match="matmul"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 2**31 - 1))
def test_gradcheck_composite_expression(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    gradcheck(lambda x, y: ((x * y).exp() / (1.0 + y * y)).sum(axis=-1) - x.max(axis=-1), a, b)
