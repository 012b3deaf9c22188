"""Writing Keras files (being written)."""
from __future__ import annotations


def export(model, path, *, overwrite: bool = False):
    raise NotImplementedError("featuremaps.keras.export is being written")
