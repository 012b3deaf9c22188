"""Training and evaluation: `fit` and `evaluate`, with exact resume and run directories.

Reproducibility. Everything random in a run derives from its `seed`:

- the order of epoch `e` is `featuremaps.data.epoch_order(n, seed, e)`;
- the augmentation of batch `b` of epoch `e` uses `np.random.default_rng([seed, e, b, 1])`
  (`featuremaps.data.Loader`);
- Dropout in batch `b` of epoch `e` uses `model.set_rng(np.random.default_rng([seed, e, b, 2]))`;
- the learning rate of epoch `e` is `schedule.lr_at(e)`.

None of these depends on what ran before, so a run resumed from a checkpoint taken after step `s`
of epoch `e` continues exactly as the uninterrupted run would have (same weights, bit for bit, on
the same machine and NumPy).

Checkpoints (see `featuremaps.checkpoint` for the file format). With an `out_dir`, `fit` writes
`checkpoint.npz` after every epoch (the one before is kept as `checkpoint.prev.npz`, unless it
is unreadable: then it is set aside and `.prev` is kept; see `featuremaps.checkpoint`), plus
`metrics.csv`, `metrics.json`, `curves.png` and `config.json`. The checkpoint's meta records
`epoch` (completed epochs) and `step` (completed steps of the next epoch):

- after epoch k: `epoch=k, step=0`;
- on Ctrl-C (KeyboardInterrupt): the first Ctrl-C lets the current step finish, then the state
  after the last completed step is saved (`epoch=k, step=s`, together with that epoch's running
  loss/accuracy sums) and `TrainingInterrupted` is raised (the CLI exits with code 130). A second
  Ctrl-C stops at once; the state is then saved only if no update was half-applied, otherwise the
  last checkpoint on disk is left as it is. `resume=` continues at step `s + 1` of epoch `k + 1`.
- when the loss turns NaN/inf, `NonFiniteLossError` names the epoch and step; nothing is saved, so
  the last good checkpoint (the previous epoch's) stays in place.

`fit` never prints: it reports through a `featuremaps.progress.Reporter` and optional callbacks
(objects with any of `on_batch_end(epoch, step, logs)` and `on_epoch_end(epoch, logs)`, epoch and
step 1-based).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import checkpoint as ckpt
from . import functional as F
from . import optim as optim_mod
from . import schedules as sched_mod
from ._atomic import atomic_write, remove_stale
from .progress import Reporter
from .tensor import Tensor, no_grad

__all__ = ["fit", "evaluate", "predict_logits", "FitResult", "NonFiniteLossError", "TrainingInterrupted",
           "normalization_for", "normalize_images", "write_metrics", "settings_used", "describe_lr"]

DEFAULT_SHIFT = 2  # pixels, for augment=True


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; `.epoch` and `.step` are 1-based."""

    def __init__(self, epoch: int, step: int, steps: int, value: float, checkpoint: Path | None, saved_epoch: int):
        self.epoch, self.step, self.value, self.checkpoint = epoch, step, value, checkpoint
        where = (f"the last good checkpoint (after epoch {saved_epoch}) is kept at {checkpoint}"
                 if checkpoint is not None else "no checkpoint had been saved yet")
        super().__init__(f"the training loss became {value} at epoch {epoch}, step {step} of {steps}; "
                         f"training stopped and {where}. A smaller learning rate usually helps.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`; `.checkpoint` is the file saved (or None), `.epoch`/`.step` the state in it."""

    def __init__(self, message: str, checkpoint: Path | None, epoch: int, step: int):
        super().__init__(message)
        self.message, self.checkpoint, self.epoch, self.step = message, checkpoint, epoch, step


@dataclass
class FitResult:
    """What `fit` returns: the per-epoch records, the checkpoint written last, the final record."""
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    out_dir: Path | None = None

    @property
    def final(self) -> dict | None:
        return self.history[-1] if self.history else None


# --- data helpers ----------------------------------------------------------------------------------

def _arrays(data, what: str):
    if data is None:
        return None
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(f"{what} must be a featuremaps.data.Dataset or an (images, labels) pair; "
                        f"received {type(data).__name__}")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{what}: expected images (N, H, W, C) and labels (N,); received shapes "
                         f"{images.shape} and {labels.shape}")
    if len(images) == 0:
        raise ValueError(f"{what} is empty")
    return images, labels.astype(np.int64, copy=False)


def normalization_for(data) -> dict:
    """The normalisation used for `data`: `{"mean": [...], "std": [...]}` on the [0, 1] pixel scale,
    the canonical constants of its dataset when known, else mean 0 / std 1 (just /255)."""
    from .data import NORMALIZATION
    name = getattr(data, "name", None)
    if name in NORMALIZATION:
        mean, std = NORMALIZATION[name]
        return {"mean": list(mean), "std": list(std)}
    return {"mean": [0.0], "std": [1.0]}


def normalize_images(images: np.ndarray, normalization: dict | None, dtype=np.float32) -> np.ndarray:
    """Images to the model's input: uint8 → `(x/255 − mean)/std` in `dtype`; float input is
    assumed to be prepared already and only cast."""
    if images.dtype == np.uint8:
        from .data import normalize
        norm = normalization or {"mean": [0.0], "std": [1.0]}
        return normalize(images, norm["mean"], norm["std"], dtype=dtype)
    return images.astype(dtype, copy=False)


def _param_dtype(model) -> np.dtype:
    ps = model.parameters()
    return ps[0].dtype if ps else np.dtype(np.float32)


# --- evaluation ------------------------------------------------------------------------------------

def predict_logits(model, images: np.ndarray, *, batch_size: int = 256,
                   normalization: dict | None = None) -> np.ndarray:
    """Logits (N, classes) of `model` in eval mode on `images` (uint8 or prepared float), batched."""
    was_training = getattr(model, "training", False)
    model.eval()
    dtype = _param_dtype(model)
    outs = []
    try:
        with no_grad():
            for lo in range(0, len(images), batch_size):
                x = normalize_images(images[lo:lo + batch_size], normalization, dtype)
                out = model(Tensor(x))
                outs.append(np.asarray(out.data if isinstance(out, Tensor) else out))
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype)


def evaluate(model, data, *, batch_size: int = 256, normalization: dict | None = None,
             num_classes: int | None = None) -> dict:
    """Accuracy and loss of `model` on `data` (a Dataset or (images, labels)), in eval mode.

    Returns `{"accuracy": fraction in [0, 1], "loss": mean cross-entropy, "n": images,
    "confusion": K×K list (rows: true class, columns: predicted), "per_class_accuracy": [K]}`.
    `normalization` defaults to the dataset's canonical constants (`normalization_for`).
    """
    images, labels = _arrays(data, "evaluate: data")
    if normalization is None:
        normalization = normalization_for(data)
    logits = predict_logits(model, images, batch_size=batch_size, normalization=normalization)
    k = num_classes or logits.shape[1]
    if labels.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"evaluate: the data has labels up to {labels.max()} but the model outputs "
                         f"{logits.shape[1]} classes")
    logp = F.log_softmax(logits.astype(np.float64), axis=1)  # the mean loss is taken in float64
    loss = float(-logp[np.arange(len(labels)), labels].mean())
    pred = logits.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {"accuracy": float((pred == labels).mean()), "loss": loss, "n": int(len(labels)),
            "confusion": confusion.tolist(), "per_class_accuracy": [float(a) for a in per_class]}


# --- run-directory files ---------------------------------------------------------------------------

#: The files of a run directory this module writes (each through `atomic_write`).
RUN_FILES = ("config.json", "checkpoint.npz", "checkpoint.prev.npz", "metrics.csv", "metrics.json", "curves.png")
_CSV_FIELDS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "time_s", "images_per_s"]


def write_metrics(out_dir: Path, history: list[dict], reporter: Reporter | None = None, *, plot: bool = True) -> None:
    """Write `metrics.csv`, `metrics.json` and (if matplotlib is importable) `curves.png`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in _CSV_FIELDS})
    with atomic_write(out_dir / "metrics.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    best = max((r for r in history if r.get("val_accuracy") is not None), key=lambda r: r["val_accuracy"], default=None)
    ckpt.write_json_atomic(out_dir / "metrics.json", {"history": history, "final": history[-1] if history else None,
                                                      "best_val": best})
    if plot:
        _plot_curves(out_dir / "curves.png", history, reporter)


_plot_note_shown = False


def _plot_curves(path: Path, history: list[dict], reporter: Reporter | None) -> None:
    """Write curves.png with `featuremaps.pictures.curves` (atomically); without matplotlib, say once
    how to get it and go on."""
    global _plot_note_shown
    from .pictures import curves
    try:
        with atomic_write(path, suffix=".tmp.png") as tmp:  # matplotlib picks the format by extension
            curves(history, tmp)
    except ImportError:
        if reporter is not None and not _plot_note_shown:
            reporter.message("note: matplotlib is not installed, so curves.png was not written "
                             "(pip install 'featuremaps[plot]')")
        _plot_note_shown = True


# --- Ctrl-C handling -------------------------------------------------------------------------------

class _SigintGuard:
    """Within the block, the first SIGINT only sets `.requested` (the loop stops at the next step
    boundary); a second one raises KeyboardInterrupt at once. Inactive outside the main thread or
    when someone else has replaced Python's default handler."""

    def __init__(self, reporter: Reporter):
        self.reporter, self.requested, self._old = reporter, False, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.reporter.message("stopping after the current step (press Ctrl-C again to stop at once)")

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# --- fit -------------------------------------------------------------------------------------------
# `fit` checks its arguments and fixes a `_Setup`; `_resume` (or a fresh `_Loop`) says where training
# stands; `_run` is the epoch loop under the Ctrl-C guard: `_steps` runs an epoch's `_step`s, then
# `_end_epoch` records (`_epoch_record`, `write_metrics`) and `_save`s; `_interrupted` handles Ctrl-C.

def _callback(callbacks, name, *args):
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


def _forward_untouched(model, x: np.ndarray, seed: int):
    """One training-mode forward pass (so BatchNorm normalises with batch statistics, as in the
    first step) that leaves the model exactly as it was: buffers such as running statistics are
    restored afterwards, and Dropout draws from a throw-away generator (each step re-seeds it)."""
    saved = [(b, b.copy()) for _, b in model.named_buffers()]
    was = model.training
    try:
        model.train()
        if any(getattr(m, "uses_rng", False) for m in model.modules()):
            model.set_rng(np.random.default_rng([seed, 0, 0, 3]))
        with no_grad():
            return model(Tensor(x))
    finally:
        model.train(was)
        for b, copy in saved:
            np.copyto(b, copy)


def _check_resume(meta: dict, current: dict) -> None:
    stored = meta.get("run") or {}
    diffs = [f"{k}: checkpoint {stored.get(k)!r}, now {v!r}" for k, v in current.items()
             if k in stored and stored[k] != v]
    if diffs:
        raise ValueError("resume: the run settings differ from the checkpoint's, so the resumed run would not "
                         "continue the same training (" + "; ".join(diffs) + ")")


def settings_used(meta: dict) -> dict:
    """The settings a checkpoint's run actually trained with, read from what `fit` stores (the
    optimizer's and the schedule's configs, the run settings), so a default shows as its value:
    `optimizer`, its hyper-parameters (`momentum`, `nesterov`, `weight_decay`, ...), `lr` (the
    schedule's base rate), `lr_last` (the rate of the last epoch trained), `schedule`, `seed`,
    `batch_size`, `augment` (the shift in pixels, 0 for none). Facts the checkpoint lacks are absent."""
    opt, sched, run = meta.get("optimizer") or {}, meta.get("schedule") or {}, meta.get("run") or {}
    used = {k: v for k, v in opt.items() if k not in ("name", "lr")}
    if "name" in opt:
        used["optimizer"] = opt["name"]
    if "lr" in opt:
        used["lr_last"] = opt["lr"]
    if "base_lr" in sched:
        used["lr"] = sched["base_lr"]
    if "name" in sched:
        used["schedule"] = sched["name"]
    used.update((k, run[k]) for k in ("seed", "batch_size", "augment") if k in run)
    return used


def describe_lr(meta: dict) -> str:
    """The learning rate a checkpoint's run used, in words: `0.05` for a constant rate, else e.g.
    `0.05 on the cosine schedule, 0.025 in epoch 2` (the last epoch trained)."""
    used = settings_used(meta)
    base, last = used.get("lr", used.get("lr_last")), used.get("lr_last")
    if base is None:
        return "an unrecorded rate"
    if used.get("schedule", "none") == "none" or last is None:
        return f"{base:g}"
    epoch = int(meta.get("epoch", 0)) + (1 if meta.get("step") else 0)  # the epoch `last` was used in
    return f"{base:g} on the {used['schedule']} schedule, {last:.3g} in epoch {max(epoch, 1)}"


def fit(model, train_data, val_data=None, *, epochs: int, batch_size: int = 64, optimizer,
        schedule=None, seed: int = 0, out_dir: str | os.PathLike | None = None,
        resume: str | os.PathLike | ckpt.Checkpoint | None = None, augment: bool | int = False,
        reporter: Reporter | None = None, callbacks: Sequence[Any] = (), normalization: dict | None = None,
        meta: dict | None = None, eval_batch_size: int = 256, plot: bool = True, comm=None,
        sync_batchnorm: bool = False) -> FitResult:
    """Train `model` for `epochs` epochs (in total, counting those a resumed run already did).

    train_data / val_data: Datasets (or (images, labels) pairs) with uint8 NHWC images.
    optimizer: an `featuremaps.optim.Optimizer` over `model.parameters()` (or a name: built with
      its default hyper-parameters). schedule: a `featuremaps.schedules.Schedule`, or None for a
      constant `optimizer.lr`.
    augment: False, True (random shifts of up to 2 px) or the maximum shift in pixels.
    normalization: `{"mean": [...], "std": [...]}`; default `normalization_for(train_data)`. It is
      stored in the checkpoint, so `evaluate`/`predict` prepare images the same way.
    out_dir: the run directory (see the module docstring); None keeps everything in memory, unless
      resuming: then the directory of the checkpoint resumed from.
    resume: a run directory or checkpoint file to continue from (model and optimizer must match
      it), or a `featuremaps.checkpoint.Checkpoint` already read (`read_checkpoint`), which is
      then used as it is: the file is read once either way.
    meta: extra JSON-able facts stored in each checkpoint's meta (e.g. the dataset name).
    comm: a `featuremaps.distributed.Communicator` (or pass a `DataParallel` optimizer) for
      data-parallel training under mpiexec: see "Data parallelism" in the module docstring.
    sync_batchnorm: with `comm`, BatchNorm normalises over the global batch instead of each rank's
      shard (`featuremaps.distributed.sync_bn`).

    Each epoch record has `epoch` (1-based), `lr`, `train_loss`, `train_accuracy` (running mean
    over the epoch's batches, in training mode), `val_loss`, `val_accuracy` (None without
    val_data), `time_s`, `images_per_s` (training steps only).
    """
    from .data import Loader, random_shift

    optimizer, comm = _unwrap(optimizer, comm, sync_batchnorm)
    reporter = reporter if reporter is not None and (comm is None or comm.rank == 0) else Reporter()
    callbacks = list(callbacks)
    _check_int("epochs", epochs, 1)
    _check_int("seed", seed, 0)
    images, labels = _arrays(train_data, "fit: train_data")
    val = _arrays(val_data, "fit: val_data")
    optimizer = _optimizer_for(model, optimizer)
    if schedule is None:
        schedule = sched_mod.ConstantSchedule(optimizer.lr)
    shift = DEFAULT_SHIFT if augment is True else int(augment or 0)
    if shift < 0:
        raise ValueError(f"fit: augment must be a bool or a shift >= 0 in pixels; received {augment!r}")
    if normalization is None:
        normalization = normalization_for(train_data)
    transform = (lambda x, rng: random_shift(x, shift, rng)) if shift else None
    loader = Loader(images, labels, batch_size, seed=seed, shuffle=True, transform=transform)
    num_classes = int(getattr(train_data, "num_classes", 0) or labels.max() + 1)
    run = json.loads(json.dumps({"seed": seed, "batch_size": int(batch_size), "augment": shift,
                                 "train_size": int(len(labels)), "normalization": normalization}))
    base_meta = dict(meta or {})
    base_meta.update({"schedule": schedule.get_config(), "run": run, "normalization": normalization,
                      "epochs": epochs, "num_classes": num_classes})
    if hasattr(train_data, "classes"):
        base_meta.setdefault("classes", list(train_data.classes))
    state = ckpt.as_checkpoint(resume) if resume is not None else None  # the one read of the file
    out = Path(out_dir) if out_dir is not None else (state.path.parent if state is not None else None)
    dp = None
    if comm is not None:
        dp = _data_parallel(comm, model, optimizer, (images, labels), batch_size, val, base_meta,
                            {"sync_batchnorm": bool(sync_batchnorm), "resume": _position(state)})
        out, val = (out, val) if comm.rank == 0 else (None, None)  # only rank 0 validates and writes
    s = _Setup(model, optimizer, schedule, loader, val, normalization, _param_dtype(model), seed, epochs,
               num_classes, eval_batch_size, out, base_meta, reporter, callbacks, plot,
               uses_rng=any(getattr(m, "uses_rng", False) for m in model.modules()), dp=dp,
               sync_batchnorm=bool(sync_batchnorm))
    loop = _Loop() if state is None else _resume(s, state, run)
    if not _prepare_run_dir(s, loop, {"model": model.get_config(), "optimizer": optimizer.get_config(), **base_meta}):
        return FitResult(loop.history, loop.checkpoint, out)
    if loop.epoch == 0 and loop.step == 0 and (comm is None or comm.rank == 0):
        _initial_loss(s)
    _run(s, loop)
    return FitResult(loop.history, loop.checkpoint, out)


def _prepare_run_dir(s: _Setup, loop: _Loop, config: dict) -> bool:
    """Before training: remove the temporaries a killed run left in the run directory, and write its
    config.json. False when the checkpoint already has every epoch: then only the metrics files are
    rewritten from its history (a run killed after its last checkpoint, before its metrics)."""
    out = s.out
    if out is not None and out.is_dir():
        stale = remove_stale(out, RUN_FILES)  # a killed run's half-written temporaries
        if stale:
            s.reporter.message(f"removed {len(stale)} temporary file(s) an interrupted run left in {out}")
    if loop.epoch >= s.epochs:
        s.reporter.message(f"the checkpoint already has {loop.epoch} epochs (asked for {s.epochs}); nothing to do")
        if out is not None and out.is_dir() and loop.history:
            write_metrics(out, loop.history, s.reporter, plot=s.plot)
        return False
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(out / "config.json", config)
    return True


def _unwrap(optimizer, comm, sync_batchnorm):
    """A DataParallel optimizer gives its optimiser and communicator; sync_batchnorm needs one."""
    from_dp = getattr(optimizer, "comm", None) if type(optimizer).__name__ == "DataParallel" else None
    if from_dp is not None:
        if comm is not None and comm is not from_dp:
            raise ValueError("fit: give comm= or a DataParallel optimizer, not both with different communicators")
        optimizer, comm = optimizer.optimizer, from_dp
    if sync_batchnorm and comm is None:
        raise ValueError("fit: sync_batchnorm=True needs comm= (a featuremaps.distributed.Communicator)")
    return optimizer, comm


def _position(state) -> list[int] | None:
    return None if state is None else [state.epoch, state.step]


def _data_parallel(comm, model, optimizer, train: tuple, batch_size: int, val, meta: dict, extra: dict):
    """The DataParallel of a run on `comm`'s ranks, after refusing empty shards and ranks whose
    settings (model, optimiser, data, meta such as the CLI's options) differ from rank 0's."""
    from .distributed import DataParallel, check_batches, check_same_settings, fingerprint
    check_same_settings(comm, {"model": model.get_config(), "optimizer": optimizer.get_config(),
                               "numpy": np.__version__, "training data": fingerprint(*train),
                               "validation data": fingerprint(*val) if val else None,
                               **meta, **extra})  # first: what follows raises on every rank or on none
    check_batches(len(train[1]), batch_size, comm.size)
    return DataParallel(optimizer, comm, model)


class _distributed:
    """Within the block: rank 0's state on every rank, and BatchNorm synchronised if asked."""

    def __init__(self, s: _Setup):
        self.s = s

    def __enter__(self):
        if self.s.dp is not None:
            from .distributed import set_sync_batchnorm
            self.s.dp.broadcast_state()
            if self.s.sync_batchnorm:
                set_sync_batchnorm(self.s.model, self.s.dp.comm)
        return self

    def __exit__(self, *exc):
        if self.s.dp is not None and self.s.sync_batchnorm:
            from .distributed import set_sync_batchnorm
            set_sync_batchnorm(self.s.model, None)
        return False


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"fit: {name} must be an int >= {low}; received {value!r}")


def _optimizer_for(model, optimizer):
    """`optimizer` (a name: built with its defaults), checked to hold exactly `model`'s parameters."""
    if isinstance(optimizer, str):
        optimizer = optim_mod.get(optimizer, model.parameters())
    if not isinstance(optimizer, optim_mod.Optimizer):
        raise TypeError("fit: optimizer must be a featuremaps.optim.Optimizer or a name; "
                        f"received {type(optimizer).__name__}")
    if {id(p) for p in optimizer.params} != {id(p) for p in model.parameters()}:
        raise ValueError("fit: the optimizer must hold exactly this model's parameters "
                         "(build it with optim.SGD(model.parameters(), ...))")
    return optimizer


def _fresh_sums() -> dict:
    """An epoch's running sums: loss × images, correct predictions, images, step time in seconds."""
    return {"loss": 0.0, "correct": 0, "seen": 0, "time": 0.0}


@dataclass(frozen=True)
class _Setup:
    """What `fit` fixes before the first step; every piece of the loop reads it."""
    model: Any
    optimizer: optim_mod.Optimizer
    schedule: Any
    loader: Any  # a featuremaps.data.Loader over the training images
    val: tuple | None  # (images, labels) validated on after each epoch
    normalization: dict
    dtype: np.dtype  # the parameters', so the input's
    seed: int
    epochs: int  # the total to reach
    num_classes: int
    eval_batch_size: int
    out: Path | None  # the run directory; None: nothing is written
    meta: dict  # stored in every checkpoint, with the history
    reporter: Reporter
    callbacks: list
    plot: bool
    uses_rng: bool  # some layer draws random numbers (Dropout), so each step seeds it
    dp: Any = None  # a featuremaps.distributed.DataParallel when training on several ranks
    sync_batchnorm: bool = False  # with dp: BatchNorm over the global batch

    @property
    def steps(self) -> int:
        return len(self.loader)


@dataclass
class _Loop:
    """Where training stands: `epoch` completed epochs and `step` completed steps of the next one,
    whose running `sums` these are; the epoch records so far; the checkpoint that this call wrote
    or resumed from, and the (epoch, step) in it; whether an update is half-applied."""
    epoch: int = 0
    step: int = 0
    sums: dict = field(default_factory=_fresh_sums)
    history: list = field(default_factory=list)
    checkpoint: Path | None = None
    saved: tuple[int, int] | None = None
    in_update: bool = False


def _resume(s: _Setup, state: ckpt.Checkpoint, run: dict) -> _Loop:
    """Check that `state` continues this run, load it into the model and optimiser (nothing at all
    if anything differs), say so, and return where the loop stands."""
    _check_resume(state.meta, run)  # before anything is loaded
    ckpt.restore(state, s.model, s.optimizer)
    meta = state.meta
    loop = _Loop(state.epoch, state.step, history=list(meta.get("history", [])), checkpoint=state.path,
                 saved=(state.epoch, state.step))
    if loop.step:
        loop.sums.update(meta.get("partial_epoch") or {})
    stored_sched = meta.get("schedule")
    if stored_sched and stored_sched != s.schedule.get_config():
        s.reporter.message(f"note: the schedule differs from the checkpoint's ({stored_sched}); "
                           "the learning rates from now on follow the new one")
    s.reporter.message(f"resuming from {meta['path']} after epoch {loop.epoch}"
                       + (f", step {loop.step}" if loop.step else ""))
    return loop


def _initial_loss(s: _Setup) -> None:
    """Report the untrained model's loss on the first batch beside ln(classes), where it should be."""
    first = s.loader.order(0)[:s.loader.batch_size]
    x = normalize_images(s.loader.images[first], s.normalization, s.dtype)
    z = np.asarray(_forward_untouched(s.model, x, s.seed).data).astype(np.float64)
    init_loss = float(-F.log_softmax(z, axis=1)[np.arange(len(first)), s.loader.labels[first]].mean())
    expected = math.log(s.num_classes)
    far = abs(init_loss - expected) >= 1.0
    warn = "  <- far off: check the weight initialisation and input normalisation" if far else ""
    s.reporter.message(f"initial loss {init_loss:.4f} (an untrained net should give about "
                       f"ln({s.num_classes}) = {expected:.4f}){warn}")


def _run(s: _Setup, loop: _Loop) -> None:
    """The epoch loop, from where `loop` stands, under the Ctrl-C guard (see `_interrupted`)."""
    guard = _SigintGuard(s.reporter)
    try:
        with guard, _distributed(s):
            for epoch in range(loop.epoch, s.epochs):
                lr = s.schedule.lr_at(epoch)
                s.optimizer.lr = lr
                _steps(s, loop, epoch, guard)
                _end_epoch(s, loop, epoch, lr)
                if s.dp is not None:  # every rank stops after the same epoch
                    guard.requested = bool(s.dp.comm.allreduce_sum(np.array([guard.requested]), what="stop check")[0])
                if guard.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise _interrupted(s, loop) from None
    finally:
        s.reporter.close()


def _steps(s: _Setup, loop: _Loop, epoch: int, guard: _SigintGuard) -> None:
    """The steps of epoch `epoch` (0-based) from `loop.step` on, with the progress line and the
    batch callbacks; after the first Ctrl-C it stops at the end of the step."""
    first = loop.step
    s.reporter.start_epoch(epoch + 1, s.epochs, s.steps, first)
    s.model.train()
    t_epoch = time.perf_counter()
    seen_now, step_time = 0, 0.0  # this call's steps of the epoch, for the progress line
    t0 = time.perf_counter()  # a step's time runs from the end of the last one: fetching
    # and augmenting its batch, forward, backward, update and the progress line all count
    for b, (xb, yb) in enumerate(s.loader.epoch(epoch, start=first), first):
        value = _step(s, loop, epoch, b, xb, yb) if s.dp is None else _step_dp(s, loop, epoch, b, xb, yb, guard)
        t1 = time.perf_counter()
        dt, t0 = t1 - t0, t1
        sums = loop.sums
        sums["time"] += dt
        seen_now, step_time = seen_now + len(yb), step_time + dt
        s.reporter.update(loop.step, loss=sums["loss"] / sums["seen"], accuracy=sums["correct"] / sums["seen"],
                          images_per_s=seen_now / max(time.perf_counter() - t_epoch, 1e-9),
                          ms_per_step=1000 * step_time / (loop.step - first))
        _callback(s.callbacks, "on_batch_end", epoch + 1, loop.step, {"loss": value})
        if guard.requested:
            raise KeyboardInterrupt


def _step(s: _Setup, loop: _Loop, epoch: int, b: int, xb: np.ndarray, yb: np.ndarray) -> float:
    """Step `b` of epoch `epoch` (both 0-based): forward, loss, backward, update, then count it in
    `loop`. Returns the loss. A NaN/inf loss raises NonFiniteLossError before the update."""
    if s.uses_rng:
        s.model.set_rng(np.random.default_rng([s.seed, epoch, b, 2]))
    logits = s.model(Tensor(normalize_images(xb, s.normalization, s.dtype)))
    loss = F.cross_entropy(logits, yb)
    value = float(loss.data)
    if not math.isfinite(value):
        raise NonFiniteLossError(epoch + 1, b + 1, s.steps, value, loop.checkpoint,
                                 loop.saved[0] if loop.saved else 0)
    s.optimizer.zero_grad()
    loss.backward()
    loop.in_update = True
    s.optimizer.step()
    loop.in_update = False
    loop.step = b + 1
    n = len(yb)
    loop.sums["loss"] += value * n
    loop.sums["correct"] += int((logits.data.argmax(axis=1) == yb).sum())
    loop.sums["seen"] += n
    return value


def _step_dp(s: _Setup, loop: _Loop, epoch: int, b: int, xb: np.ndarray, yb: np.ndarray, guard) -> float:
    """`_step` on this rank's rows of the global batch `xb`/`yb` (see "Data parallelism" in the module
    docstring); the loss, the correct count and a Ctrl-C request of every rank ride in the gradient
    allreduce, so every rank sees the global batch's figures and stops at the same step."""
    from .distributed import shard_bounds, window_rngs
    comm, n = s.dp.comm, len(yb)
    lo, hi = shard_bounds(n, comm.rank, comm.size)
    if s.uses_rng:
        s.model.set_rng(np.random.default_rng([s.seed, epoch, b, 2]))
        window_rngs(s.model, lo)  # Dropout draws the global batch's numbers for rows lo..hi
    logits = s.model(Tensor(normalize_images(xb[lo:hi], s.normalization, s.dtype)))
    loss = F.cross_entropy(logits, yb[lo:hi], reduction="sum")
    s.optimizer.zero_grad()
    loss.backward(np.array(comm.size / n))  # the mean over ranks of these gradients is the global mean's
    correct = int((logits.data.argmax(axis=1) == yb[lo:hi]).sum())
    total = s.dp.average(np.array([float(loss.data), correct, guard.requested]))  # summed over ranks
    value = float(total[0]) / n
    if not math.isfinite(value):
        raise NonFiniteLossError(epoch + 1, b + 1, s.steps, value, loop.checkpoint,
                                 loop.saved[0] if loop.saved else 0)
    guard.requested = guard.requested or bool(total[2])
    loop.in_update = True
    s.optimizer.step()
    loop.in_update = False
    loop.step = b + 1
    loop.sums["loss"] += float(total[0])
    loop.sums["correct"] += int(round(total[1]))
    loop.sums["seen"] += n
    return value


def _epoch_record(s: _Setup, sums: dict, epoch: int, lr: float) -> dict:
    """The record of epoch `epoch` (0-based; see `fit`) from its running sums, validated on `s.val`."""
    record = {"epoch": epoch + 1, "lr": lr,
              "train_loss": sums["loss"] / max(sums["seen"], 1),
              "train_accuracy": sums["correct"] / max(sums["seen"], 1),
              "val_loss": None, "val_accuracy": None,
              "time_s": sums["time"], "images_per_s": sums["seen"] / max(sums["time"], 1e-9)}
    if s.val is not None:
        v = evaluate(s.model, s.val, batch_size=s.eval_batch_size, normalization=s.normalization,
                     num_classes=s.num_classes)
        record["val_loss"], record["val_accuracy"] = v["loss"], v["accuracy"]
    return record


def _end_epoch(s: _Setup, loop: _Loop, epoch: int, lr: float) -> None:
    """After the last step of epoch `epoch` (0-based): its record, then the checkpoint, the
    run directory's metrics, the reporter and the callbacks. `loop` moves on once it is saved."""
    record = _epoch_record(s, loop.sums, epoch, lr)
    history = loop.history + [record]
    _save(s, loop, epoch + 1, 0, None, history)
    loop.history, loop.epoch, loop.step, loop.sums = history, epoch + 1, 0, _fresh_sums()
    if s.out is not None:
        write_metrics(s.out, history, s.reporter, plot=s.plot)
    s.reporter.end_epoch(record)
    _callback(s.callbacks, "on_epoch_end", epoch + 1, dict(record))


def _save(s: _Setup, loop: _Loop, epoch: int, step: int, partial: dict | None, history: list[dict]) -> None:
    """Write the checkpoint of the state after `epoch` epochs and `step` more steps, whose running
    sums are `partial`, and note it in `loop`; without an out_dir, nothing."""
    if s.out is None:
        return
    meta = dict(s.meta, history=history, partial_epoch=partial)
    loop.checkpoint = ckpt.save_checkpoint(s.out, s.model, s.optimizer, epoch=epoch, step=step, meta=meta,
                                           report=s.reporter.message)
    loop.saved = (epoch, step)


def _interrupted(s: _Setup, loop: _Loop) -> TrainingInterrupted:
    """After Ctrl-C: save the state after the last completed step, unless an update was
    half-applied (then the checkpoint on disk stays), there is no out_dir, or it is saved already;
    say what happened and return the exception to raise."""
    s.reporter.close()
    epoch, step, path = loop.epoch, loop.step, None
    if loop.in_update:
        msg = ("interrupted during a weight update; nothing new was saved"
               + (f" (the last checkpoint, {loop.checkpoint}, is kept)" if loop.checkpoint else ""))
    elif s.out is None:
        msg = f"interrupted after epoch {epoch}, step {step}; no out_dir, so nothing was saved"
    else:
        if loop.saved != (epoch, step):
            _save(s, loop, epoch, step, dict(loop.sums) if step else None, list(loop.history))
        path = loop.checkpoint
        msg = (f"interrupted: saved the state after epoch {epoch}" + (f", step {step}" if step else "")
               + f" to {path}; continue with: featuremaps train --resume {s.out} "
               f"(Python: fit(resume={str(s.out)!r}))")
    s.reporter.message(msg)
    return TrainingInterrupted(msg, path, epoch, step)
