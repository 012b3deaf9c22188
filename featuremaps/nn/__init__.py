"""`featuremaps.nn`: layers (thin stateful wrappers over `featuremaps.functional`) and containers.

Every module has parameters/buffers/state_dict, train/eval, `get_config()` and
`compute_output_shape()`; `from_config(cfg)` rebuilds any of them (weights are not in the config:
use `load_state_dict`). Each layer class also says what it is, in the class attributes `role`,
`spatial`, `elementwise` and `decomposition` (see `Module`): the inspection tools, the report and the
pictures decide from those, so a new layer kind needs no edit outside its own module.
"""
from .module import Module, ShapeError, from_config
from .conv import Conv2D, ZeroPad2D
from .pooling import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D, Subsampling2D
from .dense import Dense, Flatten
from .activation import (CELU, ELU, GELU, GLU, Clip, Exponential, HardShrink, HardSigmoid, HardSwish, LeakyReLU,
                         LogSoftmax, Mish, PReLU, ReLU, ReLU6, ScaledTanh, Sigmoid, SiLU, Softmax, Softplus, Softsign,
                         SoftShrink, SparsePlus, SparseSigmoid, Sparsemax, Squareplus, Tanh, TanhShrink, Threshold)
from .norm import BatchNorm2D, Dropout, InstanceNorm, LocalResponseNorm
from .shape import Identity, Pad, Reshape, Transpose, Upsample
from .merge import Add, Average, Concatenate, Maximum, Multiply
from .affine import Affine, Rescaling
from .transpose_conv import Conv2DTranspose
from .crop import Cropping2D
from .container import Sequential
from .graph import Graph, Node

__all__ = ["Module", "ShapeError", "from_config", "Conv2D", "ZeroPad2D", "MaxPool2D", "AvgPool2D",
           "GlobalAvgPool2D", "GlobalMaxPool2D", "Subsampling2D", "Dense", "Flatten", "ReLU", "LeakyReLU",
           "ELU", "Tanh", "ScaledTanh", "Sigmoid", "Softmax", "BatchNorm2D", "Dropout", "LocalResponseNorm",
           "Sequential", "PReLU", "Clip", "ReLU6", "HardSigmoid", "HardSwish", "InstanceNorm", "Reshape", "Transpose",
           "Pad", "Identity", "Upsample", "Add", "Multiply", "Average", "Maximum", "Concatenate", "Graph", "Node",
           "Affine", "Rescaling", "Conv2DTranspose", "Cropping2D", "GELU", "SiLU", "Softplus", "Softsign", "Mish",
           "Exponential", "LogSoftmax", "CELU", "Squareplus", "GLU", "HardShrink", "SoftShrink", "TanhShrink",
           "Threshold", "SparsePlus", "SparseSigmoid", "Sparsemax"]
