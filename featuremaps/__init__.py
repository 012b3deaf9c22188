"""featuremaps: convolutional networks from first principles in NumPy, with every feature map visible.

Layout is channels-last throughout: activations NHWC, conv weights HWIO `(kh, kw, in/groups, out)`,
so `w[:, :, :, n]` holds the filters of output map n. The conv formula and output-size rule are
stated once, in `featuremaps.functional.conv`.

Public API (everything else is an implementation detail):
- `Tensor`, `no_grad`, `is_grad_enabled`, `apply` — autograd (`featuremaps.tensor`)
- `functional` — stateless ops: conv2d, conv_transpose2d, pooling, linear, activations, norms, losses;
  `functional.use_numba(flag)` switches the optional compiled kernels (the `fast` extra)
- `nn` — layers, `Sequential` and `Graph`; `init` — initialisers; `tables` — connection tables
- `models` — the model zoo (`models.get("lenet5")`); `data` — MNIST/Fashion-MNIST/CIFAR-10/sample
- `optim`, `schedules`, `train` (fit/evaluate), `checkpoint` (save/load)
- `load_model(path, arch=None)` — a checkpoint, run directory, ONNX, Keras (.keras, legacy .h5) or
  safetensors file (with `arch`, a zoo model name), chosen by content, in eval mode
- `inspect` — `summary`, `connections`, `filters_for_output`, `explain`, `activations`,
  `receptive_field`, `map_sources`
- `limits` — the resource limits every file loader checks before allocating (`limits.override(...)`,
  `FEATUREMAPS_MAX_*`; the README's Security section)
- `layouts` — the weight conventions of other frameworks and `verify_conversion`: `import featuremaps.layouts`
- imported on demand, each with its extra: `featuremaps.onnx` (`run`, `load`, `export`; extra `onnx`),
  `featuremaps.keras` (`load`, `export`; extra `keras`), `featuremaps.torch` (`from_module`,
  `load_state_dict`, `export_state_dict`; extra `torch`), `featuremaps.theano` (`lenet_from_params`),
  `featuremaps.distributed` (`Communicator`, `DataParallel`: training over MPI; extra `mpi`)
- `pictures` (PNG figures; needs the `plot` extra) and `report` (the offline HTML page) are imported
  on demand: `import featuremaps.pictures`, `import featuremaps.report`.
"""
from .tensor import Tensor, apply, is_grad_enabled, no_grad
from . import functional, init, nn, tables, models, data, optim, schedules, inspect, train, checkpoint, limits
from .inspect import summary
from ._load import load_model

__version__ = "0.1.0"
__all__ = ["Tensor", "apply", "no_grad", "is_grad_enabled", "functional", "nn", "init", "tables",
           "models", "data", "optim", "schedules", "inspect", "train", "checkpoint", "summary",
           "load_model", "limits", "__version__"]
