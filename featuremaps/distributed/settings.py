"""Refuse ranks that were launched with different settings, before the first step.

Each setting (a name and a JSON-able value, e.g. `model`, `seed`, `cli.batch_size`, `train data`) is
hashed (SHA-256 of its canonical JSON). Rank 0 broadcasts its hashes; every rank compares them with
its own and marks the names that differ in a (ranks × settings) table summed over the ranks, so
every rank raises the same `SettingsMismatch`, naming each differing setting and the ranks it
differs on.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["SettingsMismatch", "check_same_settings", "fingerprint", "flatten"]


class SettingsMismatch(ValueError):
    """Ranks were started with different settings; `.differing` maps each setting to its ranks."""

    def __init__(self, differing: dict[str, list[int]]):
        self.differing = differing
        parts = [f"{name} (rank 0's differs from rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))})"
                 for name, r in differing.items()]
        super().__init__("distributed: the ranks were launched with different settings: " + "; ".join(parts)
                         + ". Start every rank with the same command, data and files")


def fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 (hex) of the arrays' shapes, dtypes and bytes: equal data, equal fingerprint."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested dicts to one level: `{"cli": {"seed": 0}}` -> `{"cli.seed": 0}`."""
    flat = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def check_same_settings(comm, settings: dict) -> None:
    """Raise `SettingsMismatch` on every rank unless all ranks passed equal `settings` (module docstring)."""
    mine = {k: _digest(v) for k, v in flatten(settings).items()}
    theirs = comm.broadcast_json(mine if comm.rank == 0 else None, what="settings check")
    names = sorted(set(theirs) | set(mine)) if comm.rank == 0 else sorted(theirs)
    names.append("(other settings)")  # a setting this rank has and rank 0 lacks
    table = np.zeros((comm.size, len(names)))  # (ranks, settings): 1 where this rank differs from rank 0
    for j, name in enumerate(names[:-1]):
        table[comm.rank, j] = mine.get(name) != theirs.get(name)
    table[comm.rank, -1] = bool(set(mine) - set(theirs))
    table = comm.allreduce_sum(table.reshape(-1), what="settings check").reshape(table.shape)  # (ranks, settings)
    differing = {name: [int(r) for r in np.flatnonzero(table[:, j])] for j, name in enumerate(names)
                 if table[:, j].any()}
    if differing:
        raise SettingsMismatch(differing)
