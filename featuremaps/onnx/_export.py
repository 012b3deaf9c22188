"""`export(model, path, opset=17)`: a featuremaps model as an ONNX file (being written)."""
from __future__ import annotations

__all__ = ["export"]


def export(model, path, *, opset: int = 17):
    raise NotImplementedError("featuremaps.onnx.export is being written")
