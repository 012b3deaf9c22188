"""featuremaps: convolutional networks from first principles in NumPy, with every feature map visible.

Layout is channels-last throughout: activations NHWC, conv weights HWIO `(kh, kw, in/groups, out)`,
so `w[:, :, :, n]` holds the filters of output map n.
"""
from .tensor import Tensor, apply, no_grad, is_grad_enabled
from . import functional

__version__ = "0.1.0"
__all__ = ["Tensor", "apply", "no_grad", "is_grad_enabled", "functional", "__version__"]
