"""Merge layers: `Add`, `Multiply`, `Average`, `Maximum` and `Concatenate`, each taking 2 or more inputs.

They are called with several inputs, `layer(a, b, ...)` (or one list of them, as in Keras), so they
are for a graph model (`featuremaps.nn.Graph`), never a `Sequential`, which refuses them. Their
`compute_output_shape` takes the per-example shapes of every input: `layer.compute_output_shape(s1,
s2)` or `layer.compute_output_shape([s1, s2])`. Add, Multiply, Average and Maximum broadcast as
NumPy does (ONNX's rule; equal shapes, Keras's, are the common case).
"""
from __future__ import annotations

from functools import reduce

import numpy as np

from .. import functional as F
from .module import Module, kwarg_repr, register

__all__ = ["Add", "Multiply", "Average", "Maximum", "Concatenate"]


class _Merge(Module):
    role, spatial, elementwise = "merge", "same", True  # each output value reads the same index of every input

    def __call__(self, *inputs):
        return self.forward(*inputs)

    def forward(self, *inputs):
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            inputs = tuple(inputs[0])
        if len(inputs) < 2:
            raise ValueError(f"{type(self).__name__}: needs at least 2 inputs (a merge layer); received {len(inputs)}")
        return self._merge(list(inputs))

    def compute_output_shape(self, *input_shapes):
        """The per-example output shape for the per-example shapes of every input."""
        name = type(self).__name__
        shapes = input_shapes
        if len(shapes) == 1 and isinstance(shapes[0], (list, tuple)) and shapes[0] \
                and all(isinstance(s, (list, tuple)) for s in shapes[0]):
            shapes = tuple(shapes[0])
        if len(shapes) < 2:
            got = shapes[0] if len(shapes) == 1 and isinstance(shapes[0], (list, tuple)) else ()
            self._shape_error(got, "the shapes of 2 or more inputs (a merge layer takes several)")
        try:
            shapes = [tuple(int(s) for s in shape) for shape in shapes]
        except TypeError:
            raise TypeError(f"{name}.compute_output_shape: each input shape must be a tuple of ints without the "
                            f"batch dimension; received {input_shapes!r}") from None
        for shape in shapes:
            if not shape or any(s < 1 for s in shape):
                self._shape_error(shape, "per-example shapes of positive sizes (no batch dimension)")
        return self._merged_shape(shapes)

    def _merged_shape(self, shapes):
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            self._shape_error(shapes[0], f"input shapes that broadcast together; received {shapes}")


@register
class Add(_Merge):
    """x₀ + x₁ + … (`F.add`, left to right; ResNet's shortcut)."""

    combine = "sum"

    def _merge(self, xs):
        return reduce(F.add, xs)


@register
class Multiply(_Merge):
    """x₀ · x₁ · … (`F.mul`, left to right; squeeze-and-excitation's gating)."""

    combine = "product"

    def _merge(self, xs):
        return reduce(F.mul, xs)


@register
class Average(_Merge):
    """(x₀ + x₁ + …) / n (`F.average`)."""

    combine = "mean"

    def _merge(self, xs):
        return F.average(*xs)


@register
class Maximum(_Merge):
    """Element-wise maximum (`F.maximum`); tied inputs share the gradient evenly."""

    combine = "max"

    def _merge(self, xs):
        return F.maximum(*xs)


@register
class Concatenate(_Merge):
    """Join the inputs along `axis` (`F.concat`): the channel axis by default (DenseNet, Inception).

    `axis` counts the batch axis, as in Keras: −1 (channels), 1 … rank − 1; 0 (the batch) is refused.
    Along the channel axis each position keeps its place; along another one it moves."""

    combine = "concat"

    elementwise = False

    def __init__(self, axis: int = -1):
        super().__init__()
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Concatenate: axis must be a non-zero int (axis 0 is the batch); received {axis!r}")
        self.axis = int(axis)
        self.spatial = "same" if self.axis == -1 else None

    def _per_example_axis(self, rank: int) -> int:
        ax = self.axis % (rank + 1)  # in the batched array of rank + 1
        if not 1 <= ax <= rank or not -(rank + 1) <= self.axis <= rank:
            return -1
        return ax - 1

    def _merge(self, xs):
        return F.concat(xs, axis=self.axis)

    def _merged_shape(self, shapes):
        rank = len(shapes[0])
        ax = self._per_example_axis(rank)
        rest = [s[:ax] + s[ax + 1:] for s in shapes] if ax >= 0 else []
        if ax < 0 or any(len(s) != rank for s in shapes) or any(r != rest[0] for r in rest):
            self._shape_error(shapes[0], f"inputs of one rank whose sizes agree except on axis {self.axis} "
                                         f"(the batch axis counted); received {shapes}")
        return shapes[0][:ax] + (sum(s[ax] for s in shapes),) + shapes[0][ax + 1:]

    def get_config(self):
        return {"class": "Concatenate", "axis": self.axis}

    def _repr_args(self):
        return kwarg_repr("axis", self.axis, -1)
