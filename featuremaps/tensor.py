"""`Tensor`: an ndarray with define-by-run, reverse-mode autograd.

Every differentiable op in featuremaps is a *pair* of plain NumPy functions:

    forward(*arrays, needs=(bool, ...), **params) -> (out, ctx)
    backward(ctx, grad_out, needs) -> tuple of input gradients (None where not needed)

`apply(forward, backward, *inputs, **params)` is the one place that connects such a pair to the tape.
It unwraps Tensors, runs the forward on ndarrays, and, when some input needs a gradient, records a
node whose backward calls the pair's backward. When every input is an ndarray the result is an
ndarray, so each functional op takes ndarrays or Tensors and returns the same kind.

Gradients accumulate with ``+=`` across fan-out and across repeated ``backward()`` calls, as in
PyTorch; `.grad` is kept on leaf tensors (those created by the user with ``requires_grad=True``).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "apply", "as_array"]

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside a `no_grad()` block."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager that runs ops without recording them on the tape."""
    prev = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = prev


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert user data to an ndarray. ndarrays keep their dtype; Python numbers and lists of
    numbers become float32 (the library default)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype.kind in "iuf":
            arr = arr.astype(np.float32)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Tensor: data must be numeric; received an array of dtype {arr.dtype}")
    return arr


def as_array(x: Any) -> np.ndarray:
    """The ndarray behind `x` (a Tensor or anything `np.asarray` accepts)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


class Tensor:
    """An n-dimensional array that can record the ops applied to it and back-propagate through them.

    `Tensor(data, requires_grad=False, dtype=None)`. Python numbers and lists become float32;
    ndarrays keep their dtype, so float64 works everywhere (use it for gradient checks).
    """

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected ops

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        self.data: np.ndarray = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"Tensor: requires_grad=True needs a floating dtype; received dtype {self.data.dtype}"
            )
        self.requires_grad: bool = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor | None, ...] = ()
        self._backward: Callable[[np.ndarray], tuple] | None = None

    # --- basic properties -------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: self.transpose())

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new Tensor sharing the data, cut off from the tape."""
        return Tensor(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, threshold=20, precision=4)}, dtype={self.dtype}{grad})"

    def zero_grad(self) -> None:
        self.grad = None

    # --- backward -----------------------------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Back-propagate from this tensor; `grad` defaults to ones for a single-element tensor."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input had requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: grad must be given for a non-scalar tensor; received none for shape {self.shape}"
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(as_array(grad), dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward: grad must have shape {self.shape}; received {grad.shape}")

        order: list[Tensor] = []
        seen: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:  # iterative topological sort (deep nets would overflow recursion)
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for p in node._parents:
                if p is not None and p.requires_grad and id(p) not in seen:
                    stack.append((p, False))

        grads: dict[int, np.ndarray] = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or parent is None or not parent.requires_grad:
                    continue
                if id(parent) in grads:
                    grads[id(parent)] = grads[id(parent)] + pg
                else:
                    grads[id(parent)] = pg



def apply(forward: Callable, backward: Callable, *inputs: Any, **params: Any):
    """Run one differentiable op: `forward(*arrays, needs=..., **params) -> (out, ctx)`.

    Returns an ndarray when no input is a Tensor, otherwise a Tensor that is on the tape when
    grad mode is on and some input requires grad. `backward(ctx, grad_out, needs)` must return one
    gradient (or None) per input, each with that input's shape.
    """
    any_tensor = False
    arrays = []
    for x in inputs:
        if isinstance(x, Tensor):
            any_tensor = True
            arrays.append(x.data)
        else:
            arrays.append(x)
    record = is_grad_enabled()
    needs = tuple(record and isinstance(x, Tensor) and x.requires_grad for x in inputs)
    out, ctx = forward(*arrays, needs=needs, **params)
    if not any_tensor:
        return out
    if not any(needs):
        return Tensor(out)
    t = Tensor(out)
    t.requires_grad = True
    t._parents = tuple(x if isinstance(x, Tensor) else None for x in inputs)
    t._backward = lambda g: backward(ctx, g, needs)
    return t
