"""`featuremaps.keras`: Keras model files as featuremaps models, and back (extra `keras`: h5py only).

`load(path)` reads Keras 3 `.keras` files and legacy `.h5` files into a `Graph` or `Sequential`;
`export(model, path)` writes a `.keras` file that Keras 3 loads. Neither needs Keras or TensorFlow,
and nothing in a file is ever executed (a Lambda layer or a custom object is refused).
"""
from ._load import load
from ._export import KerasExportError, export
from ._read import KerasFileError

__all__ = ["load", "export", "KerasFileError", "KerasExportError"]
