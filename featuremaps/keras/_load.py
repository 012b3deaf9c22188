"""Reading Keras files (being written)."""
from __future__ import annotations


def load(path, *, max_bytes=None):
    raise NotImplementedError("featuremaps.keras.load is being written")
