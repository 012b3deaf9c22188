"""`featuremaps.functional`: stateless, differentiable ops on NHWC arrays.

Every op takes ndarrays or `Tensor`s and returns the same kind. Each is one forward/backward pair
run by `featuremaps.tensor.apply`. Layouts are channels-last: activations (N, H, W, C), conv
weights HWIO (KH, KW, C_in // groups, C_out). The conv formula and output-size rule are stated
once, in `featuremaps.functional.conv`. With numba installed (the `fast` extra) some steps run as
compiled kernels that agree with the NumPy path to float rounding; `use_numba(False)` /
`numba_disabled()` turn them off (`featuremaps.functional.accel`).
"""
from .arith import (abs, add, average, div, exp, log, matmul, max, maximum, mean, min, minimum, mul, neg, power, sqrt,
                    sub, sum)
from .shape import concat, flatten, getitem, pad, reshape, transpose
from .conv import (conv2d, conv_algorithm, conv_output_size, conv_transpose2d, get_max_workspace_bytes,
                   release_workspace, set_max_workspace_bytes, workspace_limit)
from .pool import avg_pool2d, global_avg_pool2d, global_max_pool2d, max_pool2d
from .linear import linear
from .activation import (celu, clip, elu, gelu, glu, hard_sigmoid, hard_swish, leaky_relu, log_softmax, mish, prelu,
                         relu, relu6, sigmoid, silu, softmax, softplus, softsign, squareplus, tanh)
from .shrink import hard_shrink, soft_shrink, tanh_shrink, threshold
from .sparse import sparse_plus, sparse_sigmoid, sparsemax
from .norm import batch_norm, dropout, instance_norm, local_response_norm
from .resize import resize
from .loss import cross_entropy, mse_loss, nll_loss
from .accel import numba_available, numba_disabled, numba_enabled, use_numba

from ._bind import bind_tensor_methods as _bind

_bind()
del _bind
