"""Convolution. THE formula and output-size rule of featuremaps live here; other docs point here.

(Placeholder: being written.)
"""
__all__ = ["conv2d", "conv_transpose2d", "conv_output_size"]


def conv2d(*a, **k):
    raise NotImplementedError


def conv_transpose2d(*a, **k):
    raise NotImplementedError


def conv_output_size(*a, **k):
    raise NotImplementedError
