"""Learning-rate schedules: the rate for each epoch as a pure function of the epoch index.

A schedule is a small immutable object with `lr_at(epoch)` (epoch counted from 0; the rate used
for every step of that epoch) and `get_config()`. It has no state beyond its configuration, so a
resumed run only needs the config (stored in the checkpoint) to continue with the same rates.
The values equal PyTorch's epoch-stepped schedulers:

- `constant`:    `lr = base`
- `step`:        `lr = base · gamma^⌊epoch / step_size⌋`                      (StepLR)
- `cosine`:      `lr = eta_min + (base − eta_min) · (1 + cos(π·epoch / t_max)) / 2` (CosineAnnealingLR)
- `exponential`: `lr = base · gamma^epoch`                                     (ExponentialLR)
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["Schedule", "ConstantSchedule", "StepSchedule", "CosineSchedule", "ExponentialSchedule",
           "get", "from_config", "names"]


def _positive(name: str, value, owner: str, *, integer: bool = False, allow_zero: bool = False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "an integer" if integer else "a number"
        sign = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner}: {name} must be {kind} {sign}; received {value!r}")
    return int(value) if integer else float(value)


class Schedule:
    name = "schedule"

    def __init__(self, base_lr: float):
        self.base_lr = _positive("base_lr", base_lr, type(self).__name__)

    def lr_at(self, epoch: int) -> float:
        """The learning rate for epoch `epoch` (0-based)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"{self.name} schedule: epoch must be an integer >= 0; received {epoch!r}")
        return self._lr(epoch)

    def _lr(self, epoch: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {}

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "base_lr": self.base_lr, **self._params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ConstantSchedule(Schedule):
    """The same rate every epoch."""
    name = "none"

    def _lr(self, epoch):
        return self.base_lr


class StepSchedule(Schedule):
    """Multiply the rate by `gamma` every `step_size` epochs."""
    name = "step"

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        super().__init__(base_lr)
        self.step_size = _positive("step_size", step_size, "StepSchedule", integer=True)
        self.gamma = _positive("gamma", gamma, "StepSchedule")

    def _params(self):
        return {"step_size": self.step_size, "gamma": self.gamma}

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineSchedule(Schedule):
    """Cosine annealing from `base_lr` at epoch 0 to `eta_min` at epoch `t_max`."""
    name = "cosine"

    def __init__(self, base_lr: float, t_max: int, eta_min: float = 0.0):
        super().__init__(base_lr)
        self.t_max = _positive("t_max", t_max, "CosineSchedule", integer=True)
        self.eta_min = _positive("eta_min", eta_min, "CosineSchedule", allow_zero=True)

    def _params(self):
        return {"t_max": self.t_max, "eta_min": self.eta_min}

    def _lr(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.t_max)) / 2


class ExponentialSchedule(Schedule):
    """Multiply the rate by `gamma` every epoch."""
    name = "exponential"

    def __init__(self, base_lr: float, gamma: float = 0.9):
        super().__init__(base_lr)
        self.gamma = _positive("gamma", gamma, "ExponentialSchedule")

    def _params(self):
        return {"gamma": self.gamma}

    def _lr(self, epoch):
        return self.base_lr * self.gamma ** epoch


_REGISTRY = {"none": ConstantSchedule, "step": StepSchedule, "cosine": CosineSchedule,
             "exponential": ExponentialSchedule}


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str, base_lr: float, *, epochs: int, **kwargs) -> Schedule:
    """A schedule by name with defaults sized to a run of `epochs` epochs: `step` divides the rate
    by 10 every ⌈epochs/3⌉ epochs, `cosine` anneals to 0 over `epochs`, `exponential` uses 0.9.
    Keyword arguments override these defaults."""
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(_REGISTRY)}")
    epochs = max(int(epochs), 1)
    if key == "step":
        kwargs.setdefault("step_size", max(1, math.ceil(epochs / 3)))
    elif key == "cosine":
        kwargs.setdefault("t_max", epochs)
    return _REGISTRY[key](base_lr, **kwargs)


def from_config(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from `get_config()` output."""
    cfg = dict(config)
    key = cfg.pop("name", None)
    if key not in _REGISTRY:
        raise ValueError(f"schedule config: unknown name {key!r}; valid names: {', '.join(_REGISTRY)}")
    return _REGISTRY[key](**cfg)
