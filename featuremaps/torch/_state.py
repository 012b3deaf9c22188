"""State dicts between torch and featuremaps (being written)."""
from __future__ import annotations


def load_state_dict(model, source, mapping=None):
    raise NotImplementedError("featuremaps.torch.load_state_dict is being written")


def export_state_dict(model, path):
    raise NotImplementedError("featuremaps.torch.export_state_dict is being written")
