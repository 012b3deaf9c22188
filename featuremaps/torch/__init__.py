"""`featuremaps.torch`: PyTorch modules and state dicts as featuremaps models and weights.

`from_module(module, input_shape)` converts a `torch.nn.Module` by `torch.fx` tracing;
`load_state_dict(model, source, mapping=None)` reads `.safetensors` (no torch needed; extra `torch`)
or `.pt`/`.pth` (through `torch.load(weights_only=True)`, never a plain unpickle);
`export_state_dict(model, path)` writes weights the equivalent torch module loads.
"""
from ._fx import from_module
from ._state import export_state_dict, load_state_dict

__all__ = ["from_module", "load_state_dict", "export_state_dict"]
