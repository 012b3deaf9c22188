"""`load(path) -> Graph | Sequential`: an ONNX graph as a featuremaps model (being written)."""
from __future__ import annotations

__all__ = ["load"]


def load(model_or_path, *, input_shape=None, max_bytes=None):
    raise NotImplementedError("featuremaps.onnx.load is being written")
