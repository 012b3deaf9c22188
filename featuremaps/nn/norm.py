"""Normalisation and regularisation layers: `BatchNorm2D`, `InstanceNorm`, `Dropout`, `LocalResponseNorm`."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .activation import _number
from .conv import _positive_int
from .module import Module, as_rng, kwarg_repr, register

__all__ = ["BatchNorm2D", "InstanceNorm", "Dropout", "LocalResponseNorm"]


@register
class BatchNorm2D(Module):
    """Batch normalisation over the last (channel) axis of NHWC maps or (N, C) vectors: `F.batch_norm`.

    Parameters `weight` (γ, starts at 1) and `bias` (β, starts at 0), shape `(num_features,)`.
    Buffers `running_mean` (starts at 0) and `running_var` (starts at 1). In training mode the batch
    statistics are used and the running ones updated with `momentum`; in eval mode the running ones
    are used.

    `sync` (default None) is the hook of synchronised batch norm: set to a
    `featuremaps.distributed.Communicator` (`featuremaps.distributed.set_sync_batchnorm`), training
    mode normalises with the statistics of every rank's rows (`featuremaps.distributed.sync_bn`)
    instead of this process's batch alone.
    """

    role, spatial, elementwise = "norm", "same", True
    sync = None

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features", "BatchNorm2D")
        self.momentum = _number(momentum, "momentum", "BatchNorm2D")
        self.eps = _number(eps, "eps", "BatchNorm2D")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNorm2D: momentum must be in [0, 1]; received {momentum}")
        if not self.eps > 0.0:
            raise ValueError(f"BatchNorm2D: eps must be > 0; received {eps}")
        self.register_parameter("weight", np.ones(self.num_features, np.float32))
        self.register_parameter("bias", np.zeros(self.num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(self.num_features, np.float32))
        self.register_buffer("running_var", np.ones(self.num_features, np.float32))

    def forward(self, x):
        if self.sync is not None and self.training:
            from ..distributed.sync_bn import sync_batch_norm
            return sync_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                                   momentum=self.momentum, eps=self.eps, comm=self.sync)
        return F.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape, ranks=(1, 3))
        if shape[-1] != self.num_features:
            self._shape_error(shape, f"{self.num_features} channels on the last axis (num_features); "
                                     f"it has {shape[-1]}")
        return shape

    def get_config(self):
        return {"class": "BatchNorm2D", "num_features": self.num_features, "momentum": self.momentum,
                "eps": self.eps}

    def _repr_args(self):
        return ([str(self.num_features)] + kwarg_repr("momentum", self.momentum, 0.1)
                + kwarg_repr("eps", self.eps, 1e-5))


@register
class InstanceNorm(Module):
    """Instance normalisation of NHWC maps (`F.instance_norm`, ONNX InstanceNormalization): each map of
    each example is normalised over its own H × W positions, then scaled by `weight` (γ, starts at 1)
    and shifted by `bias` (β, starts at 0), shape `(num_features,)`; `affine=False` has neither.
    There are no running statistics: training and eval mode compute the same thing.
    """

    role = "norm"  # spatial None: every value depends on every position of its map

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features", "InstanceNorm")
        self.eps = _number(eps, "eps", "InstanceNorm")
        if not self.eps > 0.0:
            raise ValueError(f"InstanceNorm: eps must be > 0; received {eps}")
        if not isinstance(affine, (bool, np.bool_)):
            raise TypeError(f"InstanceNorm: affine must be True or False; received {affine!r}")
        self.affine = bool(affine)
        self.register_parameter("weight", np.ones(self.num_features, np.float32) if self.affine else None)
        self.register_parameter("bias", np.zeros(self.num_features, np.float32) if self.affine else None)

    def forward(self, x):
        return F.instance_norm(x, self.weight, self.bias, eps=self.eps)

    def compute_output_shape(self, input_shape):
        shape = self._check_rank(input_shape)
        if shape[-1] != self.num_features:
            self._shape_error(shape, f"{self.num_features} channels on the last axis (num_features); "
                                     f"it has {shape[-1]}")
        return shape

    def get_config(self):
        return {"class": "InstanceNorm", "num_features": self.num_features, "eps": self.eps, "affine": self.affine}

    def _repr_args(self):
        return [str(self.num_features)] + kwarg_repr("eps", self.eps, 1e-5) + kwarg_repr("affine", self.affine, True)


@register
class Dropout(Module):
    """Zero each unit with probability `p` in training mode and scale the rest by 1/(1 − p)
    (`F.dropout`); the identity in eval mode.

    The masks come from `self.rng`: the `rng` argument (Generator or int seed; None means seed 0).
    `model.set_rng(rng)` gives every Dropout in a model its own stream spawned from `rng`.
    """

    uses_rng = True
    role, spatial, elementwise = "other", "same", True

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = _number(p, "p", "Dropout")
        if not 0.0 <= self.p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1); received {p}")
        self.rng = as_rng(rng, "Dropout")

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training, rng=self.rng)

    def compute_output_shape(self, input_shape):
        return self._check_rank(input_shape, ranks=(1, 3))

    def get_config(self):
        return {"class": "Dropout", "p": self.p}

    def _repr_args(self):
        return kwarg_repr("p", self.p, 0.5)


@register
class LocalResponseNorm(Module):
    """Normalise each unit by the activity of `size` neighbouring channels at the same pixel
    (`F.local_response_norm`, AlexNet's LRN)."""

    role, spatial = "norm", "same"  # not element-wise: each value is divided by its neighbours' activity

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size = _positive_int(size, "size", "LocalResponseNorm")
        self.alpha = _number(alpha, "alpha", "LocalResponseNorm")
        self.beta = _number(beta, "beta", "LocalResponseNorm")
        self.k = _number(k, "k", "LocalResponseNorm")

    def forward(self, x):
        return F.local_response_norm(x, self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def compute_output_shape(self, input_shape):
        return self._check_rank(input_shape)

    def get_config(self):
        return {"class": "LocalResponseNorm", "size": self.size, "alpha": self.alpha, "beta": self.beta,
                "k": self.k}

    def _repr_args(self):
        return ([str(self.size)] + kwarg_repr("alpha", self.alpha, 1e-4) + kwarg_repr("beta", self.beta, 0.75)
                + kwarg_repr("k", self.k, 1.0))
