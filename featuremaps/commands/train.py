"""`featuremaps train [MODEL] [--dataset NAME] [--epochs N] ... [--out RUN_DIR] [--resume RUN_DIR] [--json]`.

Trains a model of the zoo (`featuremaps.train.fit`) and writes a run directory; `--resume` continues a
run with the settings stored in its checkpoint (explicit options must agree with them).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np

from ._common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, PROG, CLIError, add_data_args, check_input_shape,
                      check_parent, choice, limit, load, nonneg_float, nonneg_int, note, pct, positive_float,
                      positive_int, print_json)

__all__ = ["add_arguments", "run", "DEFAULT_LR", "TRAIN_DEFAULTS"]

HELP = "train a model and save a run directory"
DESCRIPTION = ("Train a model from the zoo. With no arguments: lenet on the embedded 5,000-image MNIST "
               "sample for 10 epochs (SGD with momentum, cosine learning-rate schedule), then report "
               "validation (and, if the official test set is found, test) accuracy. The run directory gets "
               "checkpoint.npz, metrics.csv, metrics.json, curves.png and config.json. Ctrl-C saves the last "
               "completed step; --resume RUN_DIR continues.")

DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
TRAIN_DEFAULTS = {"model": "lenet", "dataset": "sample", "epochs": 10, "batch_size": 64, "optimizer": "sgd",
                  "momentum": 0.9, "weight_decay": None, "schedule": "cosine", "seed": 0, "augment": False,
                  "val_fraction": 0.1}


def _model_names():
    from .. import models
    return models.names()


def _optimizer_names():
    from .. import optim
    return optim.names()


def _schedule_names():
    from .. import schedules
    return schedules.names()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument("model", metavar="MODEL", nargs="?", type=choice("model", _model_names), default=None,
                   help=f"model name (see 'featuremaps models'); default: {d['model']}")
    add_data_args(p, default_hint=d["dataset"])
    p.add_argument("--epochs", metavar="N", type=positive_int, default=None,
                   help=f"epochs in total (default: {d['epochs']}); with --resume, the total to reach")
    p.add_argument("--batch-size", metavar="N", type=positive_int, default=None, help=f"default: {d['batch_size']}")
    p.add_argument("--optimizer", metavar="NAME", type=choice("optimizer", _optimizer_names), default=None,
                   help=f"sgd, adam or adamw (default: {d['optimizer']})")
    p.add_argument("--lr", metavar="F", type=positive_float, default=None,
                   help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--momentum", metavar="F", type=nonneg_float, default=None,
                   help=f"SGD momentum (default: {d['momentum']})")
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", metavar="F", type=nonneg_float, default=None,
                   help="L2 weight decay (default: 0 for sgd/adam, 0.01 for adamw)")
    p.add_argument("--schedule", metavar="NAME", type=choice("schedule", _schedule_names), default=None,
                   help="learning-rate schedule per epoch: none, step (÷10 every third of the run), cosine "
                        "(annealed towards 0 over the run) or exponential (×0.9 per epoch); default: cosine")
    p.add_argument("--augment", action="store_true", default=None,
                   help="random shifts of up to 2 pixels in training")
    p.add_argument("--val-fraction", metavar="F", type=float, default=None,
                   help="share of the training split held out for validation, for datasets without a "
                        "validation split (default: 0.1; 'sample' has its own 500-image split)")
    p.add_argument("--seed", metavar="N", type=nonneg_int, default=None,
                   help="seed for weights, data order, dropout and augmentation, and the images of a generated "
                        "--dataset (default: 0)")
    p.add_argument("--out", metavar="RUN_DIR", default=None,
                   help="run directory to write (default: runs/<model>-<date>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue a run (after Ctrl-C, or to train more epochs) with its stored settings "
                        "(with --distributed: on any number of ranks)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training on the ranks of 'mpiexec -n K featuremaps train ... --distributed' "
                        "(the mpi extra): each rank trains on batch-size/K images of every batch, rank 0 prints "
                        "and writes the run directory; the weights equal one process's up to float rounding (for a "
                        "model with BatchNorm only with --sync-batchnorm)")
    p.add_argument("--sync-batchnorm", action="store_true", default=None,
                   help="with --distributed: BatchNorm statistics over the whole batch of all ranks (as one "
                        "process), instead of each rank's share of it (PyTorch DDP's default)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)


_RESUMABLE = ("model", "dataset", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
              "schedule", "augment", "val_fraction", "seed", "limit", "data", "sync_batchnorm")


def read_resume(args):
    """The checkpoint `--resume` names, read once (a `featuremaps.checkpoint.Checkpoint`, passed on
    to `fit`), or None without --resume."""
    if args.resume is None:
        return None
    from .. import checkpoint as ckpt
    try:
        return ckpt.read_checkpoint(args.resume)
    except ckpt.CheckpointError as e:
        raise CLIError(f"--resume: {e}") from None


def train_settings(args, resumed=None) -> dict:
    """The run's settings: explicit options over (the settings stored in `resumed`, the checkpoint
    `read_resume` read, else) defaults."""
    given = {k: getattr(args, k) for k in _RESUMABLE + ("epochs",) if getattr(args, k, None) is not None}
    if resumed is None:
        s = dict(TRAIN_DEFAULTS, lr=None, nesterov=False, limit=None, data=None, sync_batchnorm=False)
        s.update(given)
        return s
    meta = resumed.meta
    stored = meta.get("cli")
    if not stored:
        raise CLIError(f"--resume: {meta['path']} was not written by 'featuremaps train' (no stored settings); "
                       "resume it from Python with featuremaps.train.fit(resume=...)")
    from ..train import describe_lr, settings_used
    used = {**settings_used(meta), **{k: v for k, v in stored.items() if v is not None}}  # defaults as values

    def was(k):
        return describe_lr(meta) if k == "lr" else ("all images" if used.get(k) is None else repr(used[k]))
    conflicts = [f"--{k.replace('_', '-')} {given[k]!r} (the run used {was(k)})"
                 for k in given if k in _RESUMABLE and k != "data" and given[k] != used.get(k)]
    if conflicts:
        raise CLIError("--resume continues a run with its stored settings; these options differ: "
                       + ", ".join(conflicts) + ". Start a new run (--out) to change them")
    s = dict(stored)
    s["epochs"] = given.get("epochs", meta.get("epochs", stored.get("epochs")))
    if "data" in given:
        s["data"] = given["data"]
    return s


def default_out(model: str) -> Path:
    """`runs/<model>-<date>-<time>`, with a `-2`, `-3`, ... suffix if taken: never an existing path."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{model}-{stamp}"
    i = 2
    while out.exists():
        out = Path("runs") / f"{model}-{stamp}-{i}"
        i += 1
    return out


def _run_dir(args, name: str) -> Path:
    """Where the run is written: --out, else the resumed run's directory, else a new default one."""
    out = Path(args.out) if args.out else (Path(args.resume) if args.resume else default_out(name))
    if args.resume and Path(args.resume).is_file():
        out = Path(args.out) if args.out else Path(args.resume).parent
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; --out names a run directory (a new or empty folder)")
    check_parent(out, "--out")
    if not args.resume and out.exists() and any(out.iterdir()) and not _never_saved(out):
        raise CLIError(f"--out {out} already exists and is not empty; choose another directory or --resume it")
    return out


def _never_saved(out: Path) -> bool:
    """A run directory a run left before its first checkpoint (killed, or stopped): config.json and
    half-written temporaries only, nothing a new run into it would lose."""
    from .._atomic import stale_temporaries
    from ..train import RUN_FILES
    left = {p.name for p in out.iterdir()} - {p.name for p in stale_temporaries(out, RUN_FILES)}
    return left <= {"config.json"}


def _datasets(s: dict):
    from .. import data
    seed = int(s["seed"])
    if not 0 < s["val_fraction"] < 1:
        raise CLIError(f"--val-fraction must be between 0 and 1; received {s['val_fraction']}")
    full = load(s["dataset"], "train", s["data"], seed=seed)  # the generated datasets are made from it too
    if s["dataset"] == "sample":
        train_ds, val_ds = full, load("sample", "val", s["data"])
    else:
        train_ds, val_ds = data.split_validation(full, s["val_fraction"], np.random.default_rng([seed, 5]))
    train_ds, val_ds = limit(train_ds, s["limit"], seed), limit(val_ds, s["limit"], seed + 1)
    if s["batch_size"] > len(train_ds):
        note(f"warning: --batch-size {s['batch_size']} is larger than the {len(train_ds):,} training images; "
             f"each epoch is one batch of {len(train_ds):,}")
    return full, train_ds, val_ds


def _check_optimizer_options(s: dict) -> None:
    """Refuse option combinations the optimizer would reject or ignore, before anything is loaded."""
    if s["nesterov"] and s["optimizer"] != "sgd":
        raise CLIError(f"--nesterov is an option of --optimizer sgd; received --optimizer {s['optimizer']}")
    if s["nesterov"] and not s["momentum"]:
        raise CLIError(f"--nesterov needs --momentum > 0; received --momentum {s['momentum']:g}")


def _optimizer(s: dict, model):
    from .. import optim, schedules
    opt_name = s["optimizer"]
    lr = s["lr"] if s["lr"] is not None else DEFAULT_LR[opt_name]
    kw = {}
    if opt_name == "sgd":
        kw = {"momentum": s["momentum"], "nesterov": bool(s["nesterov"])}
    if s["weight_decay"] is not None:  # None: the optimiser's default (0, or 0.01 for adamw)
        kw["weight_decay"] = s["weight_decay"]
    opt = optim.get(opt_name, model.parameters(), lr, **kw)
    return opt, schedules.get(s["schedule"], lr, epochs=s["epochs"])


def _numba_enabled() -> bool:
    from ..functional import accel
    return accel.numba_enabled()


def run(args) -> int:
    if getattr(args, "sync_batchnorm", None) and not getattr(args, "distributed", False):
        raise CLIError("--sync-batchnorm is an option of --distributed training (one process already "
                       "normalises over the whole batch)")
    if not getattr(args, "distributed", False):
        return _train(args, None)
    from ..distributed import Communicator, MPIUnavailableError
    try:
        comm = Communicator()
    except MPIUnavailableError as e:
        raise CLIError(f"--distributed: {e}") from None
    return _run_distributed(args, comm)


def _run_distributed(args, comm) -> int:
    """`_train` on every rank. Errors that every rank raises alike (settings that differ between the
    ranks, batches too small to split) are printed by rank 0 only; any other error is this rank's
    alone, so it is printed with the rank and the whole job is ended (the others would wait)."""
    from ..distributed import SettingsMismatch, ShardError
    try:
        return _train(args, comm)
    except (SettingsMismatch, ShardError, _Agreed) as e:
        if comm.rank == 0:
            raise CLIError(str(e)) from None
        return EXIT_USAGE
    except Exception as e:  # noqa: BLE001 - reported with the rank, then every rank ends
        print(f"{PROG}: error: rank {comm.rank} of {comm.size}: {type(e).__name__}: {e}", file=sys.stderr,
              flush=True)
        comm.abort(EXIT_FAILED)
        return EXIT_FAILED  # not reached: abort ends the process


class _Agreed(Exception):
    """An error rank 0 found and broadcast, so every rank raises it."""


def _agreed_run_dir(args, name: str, comm) -> Path:
    """`_run_dir` decided on rank 0 (its clock names a default directory) and told to every rank."""
    if comm is None:
        return _run_dir(args, name)
    doc = None
    if comm.rank == 0:
        try:
            doc = {"out": str(_run_dir(args, name))}
        except CLIError as e:
            doc = {"error": str(e)}
    doc = comm.broadcast_json(doc, what="run directory")
    if "error" in doc:
        raise _Agreed(doc["error"])
    return Path(doc["out"])


def _train(args, comm) -> int:
    from .. import models, train
    from ..progress import ProgressBar, Reporter

    resumed = read_resume(args)
    s = train_settings(args, resumed)
    _check_optimizer_options(s)
    name, ds_name, seed = s["model"], s["dataset"], int(s["seed"])
    full, train_ds, val_ds = _datasets(s)
    model = models.get(name, rng=np.random.default_rng(seed), num_classes=full.num_classes)
    check_input_shape(model, train_ds, name)
    opt, schedule = _optimizer(s, model)
    out = _agreed_run_dir(args, name, comm)
    stored = {k: s.get(k) for k in _RESUMABLE if k != "data"}
    stored["data"] = s["data"]
    meta = {"dataset": ds_name, "model_name": name, "cli": dict(stored, epochs=s["epochs"])}

    lead = comm is None or comm.rank == 0
    reporter = ProgressBar() if lead else Reporter()
    reporter.message(f"training {name} ({model.num_parameters():,} parameters) on {ds_name}: "
                     f"{len(train_ds):,} training / {len(val_ds):,} validation images, {s['epochs']} epochs, "
                     f"batch {s['batch_size']}, {opt!r}"
                     + (f", schedule {s['schedule']}" if s['schedule'] != 'none' else "")
                     + ("; compiled kernels on (numba)" if _numba_enabled() else "")
                     + (f"; data-parallel on {comm.size} ranks, {_shares(s['batch_size'], comm.size)} images "
                        "of each batch per rank" + (", BatchNorm synchronised" if s.get("sync_batchnorm") else "")
                        if comm is not None else ""))
    try:
        result = train.fit(model, train_ds, val_ds, epochs=s["epochs"], batch_size=s["batch_size"], optimizer=opt,
                           schedule=schedule, seed=seed, out_dir=out, resume=resumed,
                           augment=bool(s["augment"]), reporter=reporter, meta=meta, plot=not args.no_plot,
                           comm=comm, sync_batchnorm=bool(s.get("sync_batchnorm")) and comm is not None)
    except train.NonFiniteLossError as e:
        if lead:
            print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except train.TrainingInterrupted:
        return EXIT_INTERRUPTED  # the reporter has said what was saved
    if lead:
        _report(args, s, model, train_ds, val_ds, out, result, reporter)
    return 0


def _shares(batch_size: int, size: int) -> str:
    """The images per rank of a batch: `32`, or `21-22` when `size` does not divide it."""
    lo, extra = divmod(batch_size, size)
    return f"{lo}" if not extra else f"{lo}-{lo + 1}"


def _test_set_name(ds_name: str, seed) -> str:
    from ..data import synthetic
    if ds_name in synthetic.GENERATED:
        return f"the generated {ds_name} test set, seed {seed}"
    return f"the official {ds_name if ds_name != 'sample' else 'MNIST'} test set"


def _report(args, s, model, train_ds, val_ds, out, result, reporter) -> None:
    """Evaluate on validation (and the official test set when found offline) and print the results."""
    from .. import data, train
    ds_name = s["dataset"]
    norm = train.normalization_for(train_ds)
    val = train.evaluate(model, val_ds, normalization=norm)
    test = None
    try:
        test_ds = data.load(ds_name, "test", data_dir=s["data"], download=False, progress=False,
                            seed=int(s["seed"]))
    except data.DataError:
        reporter.message("note: the official test set was not found (give --data DIR); evaluate later with "
                         f"'featuremaps evaluate {out} --data DIR'")
    else:
        if s["limit"] is None:
            test = train.evaluate(model, test_ds, normalization=norm)
            test["split"] = "test"
    doc = {"run_dir": str(out), "checkpoint": str(result.checkpoint) if result.checkpoint else None,
           "model": s["model"], "dataset": ds_name, "epochs": s["epochs"], "history": result.history,
           "validation": {k: val[k] for k in ("accuracy", "loss", "n")},
           "test": {k: test[k] for k in ("accuracy", "loss", "n")} if test else None}
    best = test or val
    doc["accuracy"], doc["accuracy_split"] = best["accuracy"], ("test" if test else "validation")
    if args.json:
        print_json(doc)
        return
    print(f"validation accuracy {pct(val['accuracy'])} (loss {val['loss']:.4f}) on {val['n']:,} images")
    if test:
        print(f"test accuracy       {pct(test['accuracy'])} (loss {test['loss']:.4f}) on {test['n']:,} "
              f"images ({_test_set_name(ds_name, s['seed'])})")
    print(f"run saved to {out}/ (checkpoint.npz, metrics.csv, metrics.json, curves.png, config.json)")
