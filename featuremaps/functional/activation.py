"""(Placeholder: being written.)"""
__all__ = ['elu', 'leaky_relu', 'log_softmax', 'relu', 'sigmoid', 'softmax', 'tanh']


def elu(*a, **k):
    raise NotImplementedError


def leaky_relu(*a, **k):
    raise NotImplementedError


def log_softmax(*a, **k):
    raise NotImplementedError


def relu(*a, **k):
    raise NotImplementedError


def sigmoid(*a, **k):
    raise NotImplementedError


def softmax(*a, **k):
    raise NotImplementedError


def tanh(*a, **k):
    raise NotImplementedError

