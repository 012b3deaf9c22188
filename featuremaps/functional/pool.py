"""(Placeholder: being written.)"""
__all__ = ['avg_pool2d', 'global_avg_pool2d', 'global_max_pool2d', 'max_pool2d']


def avg_pool2d(*a, **k):
    raise NotImplementedError


def global_avg_pool2d(*a, **k):
    raise NotImplementedError


def global_max_pool2d(*a, **k):
    raise NotImplementedError


def max_pool2d(*a, **k):
    raise NotImplementedError

