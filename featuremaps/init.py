"""Weight initialisers. Each draws from an explicit `numpy.random.Generator`.

Every initialiser has the signature `(shape, fan_in, fan_out, rng, dtype=np.float32) -> ndarray`.
`fan_in` and `fan_out` are numbers, or arrays that broadcast against `shape`; the latter lets a
layer give each weight its own fans. A conv layer with a connection table uses this: output map n
draws its filters with fan-in `kh·kw·(number of input maps connected to n)`.

| name              | distribution                | variance            |
|-------------------|-----------------------------|---------------------|
| lecun_uniform     | U(−√(3/fan_in), +√(3/fan_in)) | 1 / fan_in          |
| lecun_normal      | N(0, 1/fan_in)              | 1 / fan_in          |
| glorot_uniform    | U(−√(6/(fi+fo)), +√(6/(fi+fo))) | 2 / (fan_in+fan_out) |
| glorot_normal     | N(0, 2/(fan_in+fan_out))    | 2 / (fan_in+fan_out) |
| he_uniform        | U(−√(6/fan_in), +√(6/fan_in)) | 2 / fan_in          |
| he_normal         | N(0, 2/fan_in)              | 2 / fan_in          |
| lecun1998_uniform | U(−2.4/fan_in, +2.4/fan_in) | 1.92 / fan_in²      |
| zeros             | 0                           | 0                   |

The normal variants are plain (untruncated) normals. `lecun1998_uniform` is the rule in the
appendix of LeCun et al. 1998 ("Gradient-based learning applied to document recognition").
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["fans", "lecun_uniform", "lecun_normal", "glorot_uniform", "glorot_normal", "he_uniform",
           "he_normal", "lecun1998_uniform", "zeros", "get", "names"]


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of `shape`.

    Dense `(in, out)` → (in, out). Conv HWIO `(kh, kw, in, out)` → (kh·kw·in, kh·kw·out); with
    groups, `in` is already the per-group count, as stored in the weight. A 1-D shape `(n,)` → (n, n).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        rf = shape[0] * shape[1]
        return rf * shape[2], rf * shape[3]
    raise ValueError(f"fans: shape must be (n,), (in, out) or HWIO (kh, kw, in, out); received {shape}")


def _check(shape, fan, rng, op: str, name: str = "fan_in"):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{op}: rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)); "
                        f"received {type(rng).__name__}")
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    if fan is not None:
        f = np.asarray(fan, dtype=np.float64)
        if np.any(~(f > 0)):
            raise ValueError(f"{op}: {name} must be > 0; received {fan!r}")
        try:
            np.broadcast_shapes(f.shape, shape)
        except ValueError:
            raise ValueError(f"{op}: {name} of shape {f.shape} does not broadcast to "
                             f"the weight shape {shape}") from None
        return shape, f
    return shape, None


def _uniform(shape, limit, rng, dtype):
    # U(−limit, +limit) with a per-weight limit: scale unit-interval draws.
    return (rng.uniform(-1.0, 1.0, size=shape) * limit).astype(dtype, copy=False)


def _normal(shape, std, rng, dtype):
    return (rng.standard_normal(size=shape) * std).astype(dtype, copy=False)


def lecun_uniform(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """U(−√(3/fan_in), √(3/fan_in)): variance 1/fan_in (LeCun, "Efficient BackProp", 1998)."""
    shape, fi = _check(shape, fan_in, rng, "lecun_uniform")
    return _uniform(shape, np.sqrt(3.0 / fi), rng, dtype)


def lecun_normal(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """N(0, 1/fan_in)."""
    shape, fi = _check(shape, fan_in, rng, "lecun_normal")
    return _normal(shape, np.sqrt(1.0 / fi), rng, dtype)


def glorot_uniform(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """U(−√(6/(fan_in+fan_out)), +…): variance 2/(fan_in+fan_out) (Glorot & Bengio, 2010)."""
    shape, fi = _check(shape, fan_in, rng, "glorot_uniform")
    _, fo = _check(shape, fan_out, rng, "glorot_uniform", "fan_out")
    return _uniform(shape, np.sqrt(6.0 / (fi + fo)), rng, dtype)


def glorot_normal(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """N(0, 2/(fan_in+fan_out))."""
    shape, fi = _check(shape, fan_in, rng, "glorot_normal")
    _, fo = _check(shape, fan_out, rng, "glorot_normal", "fan_out")
    return _normal(shape, np.sqrt(2.0 / (fi + fo)), rng, dtype)


def he_uniform(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """U(−√(6/fan_in), +√(6/fan_in)): variance 2/fan_in, for ReLU nets (He et al., 2015)."""
    shape, fi = _check(shape, fan_in, rng, "he_uniform")
    return _uniform(shape, np.sqrt(6.0 / fi), rng, dtype)


def he_normal(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """N(0, 2/fan_in)."""
    shape, fi = _check(shape, fan_in, rng, "he_normal")
    return _normal(shape, np.sqrt(2.0 / fi), rng, dtype)


def lecun1998_uniform(shape, fan_in, fan_out, rng, dtype=np.float32) -> np.ndarray:
    """U(−2.4/fan_in, +2.4/fan_in), the rule in LeCun et al. 1998, appendix A."""
    shape, fi = _check(shape, fan_in, rng, "lecun1998_uniform")
    return _uniform(shape, 2.4 / fi, rng, dtype)


def zeros(shape, fan_in=None, fan_out=None, rng=None, dtype=np.float32) -> np.ndarray:
    """All zeros (fans and rng are accepted for a uniform signature and ignored)."""
    return np.zeros(tuple(int(s) for s in np.atleast_1d(shape)), dtype=dtype)


_BY_NAME: dict[str, Callable] = {f.__name__: f for f in (
    lecun_uniform, lecun_normal, glorot_uniform, glorot_normal, he_uniform, he_normal,
    lecun1998_uniform, zeros)}


def names() -> list[str]:
    """The initialiser names accepted by `get` and by layers' `init=` argument."""
    return list(_BY_NAME)


def get(name: str) -> Callable:
    """The initialiser called `name`; ValueError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(f"init: expected one of {names()}; received {name!r}")
    return _BY_NAME[name]
