"""onnxruntime, the independent runtime the ONNX tests compare with.

onnxruntime is imported unconditionally: a missing oracle is a failure, never a skip (it is in the
test extra).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort


def ort_run(model_or_path, feeds: dict) -> list[np.ndarray]:
    """Run a ModelProto, serialized bytes or a file path (whose external data onnxruntime reads itself)
    on `feeds`, with graph optimisations off so that the graph runs as written."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3  # (some files carry unused initializers, which it warns about)
    if hasattr(model_or_path, "SerializeToString"):
        model_or_path = model_or_path.SerializeToString()
    elif not isinstance(model_or_path, bytes):
        model_or_path = str(model_or_path)
    return ort.InferenceSession(model_or_path, so, providers=["CPUExecutionProvider"]).run(None, feeds)
