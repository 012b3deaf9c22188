"""`curves`: loss and accuracy per epoch from a training run's metrics.

Accepted metrics: a list of per-epoch dicts (e.g. `{"epoch": 1, "train_loss": .., "val_acc": ..}`),
a dict of per-epoch lists (Keras-style history), a dict holding such a list under "epochs" or
"history", or the path of a metrics.json / a run directory holding one. Every numeric key whose name
contains "loss" goes on the left panel, every key containing "acc" on the right (as percent when
all accuracies are fractions in [0, 1]).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import _mpl

__all__ = ["curves", "load_metrics"]


def load_metrics(metrics: Any) -> list[dict]:
    """Normalise any accepted metrics form (see the module docstring) to a list of per-epoch dicts."""
    if isinstance(metrics, (str, Path)):
        p = Path(metrics)
        if p.is_dir():
            p = p / "metrics.json"
        if not p.is_file():
            raise ValueError(f"curves: metrics must be a metrics.json file or a run directory holding one; "
                             f"received {str(metrics)!r} (no such file)")
        with open(p, encoding="utf-8") as fh:
            metrics = json.load(fh)
    if isinstance(metrics, dict):
        for key in ("epochs", "history", "metrics"):
            if isinstance(metrics.get(key), (list, dict)):
                return load_metrics(metrics[key])
        lists = {k: v for k, v in metrics.items() if isinstance(v, list)}
        if lists:
            n = max(len(v) for v in lists.values())
            return [{k: v[e] for k, v in lists.items() if e < len(v)} for e in range(n)]
    if isinstance(metrics, list) and all(isinstance(m, dict) for m in metrics):
        return list(metrics)
    raise ValueError("curves: metrics must be a list of per-epoch dicts, a dict of per-epoch lists or a "
                     f"metrics.json path; received {type(metrics).__name__}")


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def curves(metrics: Any, path: str | Path | None = None, *, title: str | None = None):
    """Draw loss (left) and accuracy (right) against epoch. Save a PNG at `path` (returns the Path)
    or return the Figure."""
    _mpl.require("curves")
    epochs = load_metrics(metrics)
    if not epochs:
        raise ValueError("curves: metrics hold no epochs")
    keys: list[str] = []
    for m in epochs:
        keys += [k for k, v in m.items() if _numeric(v) and k not in keys]
    xs = [m.get("epoch", e + 1) for e, m in enumerate(epochs)]
    loss_keys = [k for k in keys if "loss" in k.lower()]
    acc_keys = [k for k in keys if "acc" in k.lower()]
    if not loss_keys and not acc_keys:
        raise ValueError(f"curves: no loss or accuracy keys in the metrics; keys found: {sorted(keys)}")

    accs = [m[k] for m in epochs for k in acc_keys if _numeric(m.get(k)) and math.isfinite(m[k])]
    pct = bool(accs) and min(accs) >= 0 and max(accs) <= 1  # fractions are drawn as percent
    fig = _mpl.figure(8.0, 3.2, dpi=100)
    panels = [(loss_keys, "loss", 1.0), (acc_keys, "accuracy (%)" if pct else "accuracy", 100.0 if pct else 1.0)]
    for j, (ks, label, factor) in enumerate(panels):
        ax = fig.add_axes((0.08 + j * 0.5, 0.16, 0.40, 0.68))
        for k in ks:
            pts = [(x, m[k]) for x, m in zip(xs, epochs) if _numeric(m.get(k)) and math.isfinite(m[k])]
            if pts:
                px, py = zip(*pts)
                ax.plot(px, [factor * v for v in py], marker="o", markersize=3, linewidth=1.2, label=k)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ks:
            ax.legend(fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {label} in the metrics", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, color="0.4")
    fig.suptitle(title or f"training curves ({len(epochs)} epochs)", fontsize=9)
    return _mpl.finish(fig, path)
