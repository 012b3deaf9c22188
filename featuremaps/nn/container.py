"""`Sequential`: layers applied in order, each reachable by position or by name."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .._json import jsonable
from .module import Module, ShapeError, from_config, register

__all__ = ["Sequential"]


@register
class Sequential(Module):
    """Apply `layers` in order.

    `layers` is a list of modules (named "0", "1", ...) or of `(name, module)` pairs; names are
    unique, non-empty and contain no ".". `input_shape` is the per-example input `(H, W, C)` (or
    `(F,)`), kept in the config so that tools know what the model expects.

    `model[i]` and `model["C3"]` return a layer; `model[a:b]` a new Sequential sharing the layers.
    """

    def __init__(self, layers=(), *, input_shape=None):
        super().__init__()
        layers = list(layers)
        if layers and all(isinstance(item, (tuple, list)) for item in layers):
            named = [tuple(item) for item in layers]
        elif all(isinstance(item, Module) for item in layers):
            named = [(str(i), m) for i, m in enumerate(layers)]
        else:
            raise TypeError("Sequential: layers must be a list of modules or a list of (name, module) pairs; "
                            f"received {[type(item).__name__ for item in layers]}")
        seen = set()
        for item in named:
            if len(item) != 2 or not isinstance(item[0], str) or not isinstance(item[1], Module):
                raise TypeError(f"Sequential: each pair must be (name: str, module: Module); received {item!r:.120}")
            name = item[0]
            if not name or "." in name or name in seen:
                why = "empty" if not name else ("contains '.'" if "." in name else "repeated")
                raise ValueError(f"Sequential: layer names must be unique, non-empty and without '.'; "
                                 f"received {name!r} ({why})")
            seen.add(name)
            if item[1].role == "merge":
                raise TypeError(f"Sequential: layer {name!r} ({type(item[1]).__name__}) is a merge layer: it takes "
                                "several inputs, and a Sequential passes one; it needs a graph model "
                                "(featuremaps.nn.Graph)")
            self._modules[name] = item[1]
        if input_shape is not None:
            try:
                shape = tuple(int(s) for s in input_shape)
            except TypeError:
                shape = ()
            if len(shape) not in (1, 3) or any(s < 1 for s in shape):
                raise ValueError("Sequential: input_shape must be a per-example shape (H, W, C) or (F,) of "
                                 f"positive ints, without the batch dimension; received {input_shape!r}")
            input_shape = shape
        self.input_shape = input_shape

    def forward(self, x):
        from . import fused
        if fused.applies():  # no autograd and the compiled kernels on: the fused inference plan
            return fused.run_chain(list(self._modules.values()), x)
        for layer in self._modules.values():
            x = layer(x)
        return x

    # --- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def names(self) -> list[str]:
        return list(self._modules)

    @property
    def input_names(self) -> list[str]:
        return ["input"]

    @property
    def output_names(self) -> list[str]:
        return [next(reversed(self._modules))] if self._modules else ["input"]

    def nodes(self):
        """The layers as `featuremaps.nn.graph.Node`s: each reads the one before it, the first "input"."""
        from .graph import Node
        names = ["input"] + list(self._modules)
        return [Node(name, layer, (prev,)) for prev, (name, layer) in zip(names, self._modules.items())]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._modules:
                raise KeyError(f"Sequential: no layer named {key!r}; layers are {list(self._modules)}")
            return self._modules[key]
        if isinstance(key, slice):
            return Sequential(list(self._modules.items())[key])
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            n = len(self._modules)
            if not -n <= key < n:
                raise IndexError(f"Sequential: index {key} out of range for {n} layers")
            return list(self._modules.values())[key]
        raise TypeError(f"Sequential: index with an int, a slice or a layer name; received {type(key).__name__}")

    def __contains__(self, name) -> bool:
        return name in self._modules

    # --- shapes and config ------------------------------------------------------------------------------
    def compute_output_shape(self, input_shape=None):
        """Chain each layer's rule; `input_shape` defaults to `self.input_shape`.

        A layer that cannot take its input raises `ShapeError` naming it by its dotted name.
        """
        shape = self.input_shape if input_shape is None else input_shape
        if shape is None:
            raise ValueError("Sequential.compute_output_shape: input_shape not given and the model has none")
        shape = tuple(shape)
        for name, layer in self._modules.items():
            try:
                shape = layer.compute_output_shape(shape)
            except ShapeError as e:
                raise e.within(name) from None
        return shape

    def node_shapes(self, input_shape=None) -> dict:
        """Per-example shape of every value: "input", then each layer's output (see `Graph.node_shapes`)."""
        from .graph import value_shapes
        shape = self.input_shape if input_shape is None else input_shape
        if shape is None:
            raise ValueError("Sequential.node_shapes: input_shape not given and the model has none")
        return value_shapes(self, {"input": tuple(int(s) for s in shape)})

    def get_config(self) -> dict:
        return {"class": "Sequential", "input_shape": jsonable(self.input_shape),
                "layers": [{"name": name, "config": layer.get_config()} for name, layer in self._modules.items()]}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"Sequential.from_config: 'layers' must be a list; received {layers!r:.120}")
        pairs = []
        for item in layers:
            if not isinstance(item, dict) or "name" not in item or "config" not in item:
                raise ValueError("Sequential.from_config: each layer must be {'name': ..., 'config': ...}; "
                                 f"received {item!r:.120}")
            pairs.append((item["name"], from_config(item["config"])))
        return cls(pairs, input_shape=config.get("input_shape"))

    def __repr__(self) -> str:
        lines = [f"Sequential(input_shape={self.input_shape!r}," if self.input_shape is not None else "Sequential("]
        for name, layer in self._modules.items():
            body = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)
