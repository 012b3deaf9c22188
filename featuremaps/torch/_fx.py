"""torch.fx tracing to a featuremaps model (being written)."""
from __future__ import annotations


def from_module(module, input_shape):
    raise NotImplementedError("featuremaps.torch.from_module is being written")
