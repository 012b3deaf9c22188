"""The `featuremaps` command line: a thin argparse front end over the library.

    featuremaps train [MODEL] [--dataset NAME] [--epochs N] ... [--out RUN_DIR] [--resume RUN_DIR] [--json]
    featuremaps evaluate RUN_DIR|CHECKPOINT [--dataset NAME] [--split test] [--json]
    featuremaps predict CHECKPOINT IMAGE... [--top K] [--json]
    featuremaps summary MODEL|CHECKPOINT [--input-shape H,W,C] [--json]
    featuremaps models [--json]

Conventions shared by every subcommand: figures go to stdout (with `--json`: exactly one JSON
document), progress and notes to stderr. A user error (bad argument, missing file, unknown name)
prints one line `featuremaps: error: ...` to stderr and exits with code 2, without a traceback
(`--traceback` before the subcommand shows it). Ctrl-C exits with 130 (training saves first);
a training run whose loss turns non-finite exits with 1.

Adding a subcommand: decorate a function `run(args) -> int` with
`@command(name, help=..., arguments=add_arguments)`, where `add_arguments(parser)` declares its
options; modules in the `featuremaps.commands` package are imported when the parser is built, so
a subcommand can live in its own file there.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import math
import os
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["main", "command", "build_parser", "CLIError"]

PROG = "featuremaps"
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


@dataclass
class _Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] | None
    description: str | None


_COMMANDS: dict[str, _Command] = {}


def command(name: str, *, help: str, arguments: Callable | None = None, description: str | None = None):
    """Register `run(args) -> int` as subcommand `name` (see the module docstring)."""
    def deco(run):
        _COMMANDS[name] = _Command(name, help, run, arguments, description)
        return run
    return deco


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `featuremaps: error: ... (see 'featuremaps train --help')`."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _finite(o):
    """Non-finite floats → None (JSON has no NaN/inf), recursively."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _out(doc) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(_finite(doc), indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _numba_enabled() -> bool:
    from .functional import accel
    return accel.numba_enabled()


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# --- shared argument helpers -----------------------------------------------------------------------

def _int_at_least(lo: int, expected: str):
    """An argparse type: an int ≥ `lo`, else an error saying `expected`."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lo - 1
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {expected}; received {text!r}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    v = _nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; received {text!r}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; received {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; received {text!r}")
    return v


def _choice(kind: str, valid: Callable[[], Sequence[str]]):
    """An argparse type checking a name against `valid()`, listing the valid names on error."""
    def check(text: str) -> str:
        names = list(valid())
        key = text.lower()
        if key not in names:
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}; valid names: {', '.join(names)}")
        return key
    check.__name__ = kind
    return check


def _model_names():
    from . import models
    return models.names()


def _dataset_names():
    from .data import DATASETS
    return list(DATASETS)


def _optimizer_names():
    from . import optim
    return optim.names()


def _schedule_names():
    from . import schedules
    return schedules.names()


def _add_data_args(p: argparse.ArgumentParser, *, default_hint: str) -> None:
    p.add_argument("--dataset", metavar="NAME", type=_choice("dataset", _dataset_names), default=None,
                   help=f"mnist, fashion-mnist, cifar10 or sample (the embedded 5,000-image MNIST sample); "
                        f"default: {default_hint}")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder with the dataset's files (looked at before the cache "
                        "$FEATUREMAPS_DATA or ~/.cache/featuremaps; missing files are downloaded)")
    p.add_argument("--limit", type=_positive_int, default=None, help=argparse.SUPPRESS)  # debug: cap examples


def _load(name: str, split: str, data_dir, *, download: bool = True):
    from . import data
    try:
        return data.load(name, split, data_dir=data_dir, download=download, progress=True)
    except data.DataError as e:
        raise CLIError(str(e)) from None


def _limit(ds, n: int | None, seed: int):
    """A random subset of `n` items (debug option --limit); the dataset itself when n is None."""
    if n is None or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(ds))[:n])
    return ds.subset(idx)


def _check_input_shape(model, ds, model_name: str) -> None:
    want = tuple(getattr(model, "input_shape", None) or ())
    if want and tuple(ds.image_shape) != want:
        raise CLIError(f"model {model_name} expects {_shape(want)} images but {ds.name} has {_shape(ds.image_shape)} "
                       f"images; pick a model made for this dataset (featuremaps models)")


def _shape(s) -> str:
    return "×".join(str(int(v)) for v in s)


# --- train -----------------------------------------------------------------------------------------

DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
TRAIN_DEFAULTS = {"model": "lenet", "dataset": "sample", "epochs": 10, "batch_size": 64, "optimizer": "sgd",
                  "momentum": 0.9, "weight_decay": None, "schedule": "cosine", "seed": 0, "augment": False,
                  "val_fraction": 0.1}


def _train_arguments(p: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument("model", metavar="MODEL", nargs="?", type=_choice("model", _model_names), default=None,
                   help=f"model name (see 'featuremaps models'); default: {d['model']}")
    _add_data_args(p, default_hint=d["dataset"])
    p.add_argument("--epochs", metavar="N", type=_positive_int, default=None, help=f"epochs in total (default: {d['epochs']}); "
                   "with --resume, the total to reach")
    p.add_argument("--batch-size", metavar="N", type=_positive_int, default=None, help=f"default: {d['batch_size']}")
    p.add_argument("--optimizer", metavar="NAME", type=_choice("optimizer", _optimizer_names), default=None,
                   help=f"sgd, adam or adamw (default: {d['optimizer']})")
    p.add_argument("--lr", metavar="F", type=_positive_float, default=None,
                   help="learning rate (default: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--momentum", metavar="F", type=_nonneg_float, default=None, help=f"SGD momentum (default: {d['momentum']})")
    p.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", metavar="F", type=_nonneg_float, default=None,
                   help="L2 weight decay (default: 0 for sgd/adam, 0.01 for adamw)")
    p.add_argument("--schedule", metavar="NAME", type=_choice("schedule", _schedule_names), default=None,
                   help="learning-rate schedule per epoch: none, step (÷10 every third of the run), cosine "
                        "(annealed towards 0 over the run) or exponential (×0.9 per epoch); default: cosine")
    p.add_argument("--augment", action="store_true", default=None,
                   help="random shifts of up to 2 pixels in training")
    p.add_argument("--val-fraction", metavar="F", type=float, default=None,
                   help="share of the training split held out for validation, for datasets without a "
                        "validation split (default: 0.1; 'sample' has its own 500-image split)")
    p.add_argument("--seed", metavar="N", type=_nonneg_int, default=None,
                   help="seed for weights, data order, dropout and augmentation (default: 0)")
    p.add_argument("--out", metavar="RUN_DIR", default=None,
                   help="run directory to write (default: runs/<model>-<date>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue a run (after Ctrl-C, or to train more epochs) with its stored settings")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")
    p.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)


_RESUMABLE = ("model", "dataset", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
              "schedule", "augment", "val_fraction", "seed", "limit", "data")


def _train_settings(args) -> dict:
    """The run's settings: explicit options over (stored settings when resuming, else) defaults."""
    given = {k: getattr(args, k) for k in _RESUMABLE + ("epochs",) if getattr(args, k, None) is not None}
    if args.resume is None:
        s = dict(TRAIN_DEFAULTS, lr=None, nesterov=False, limit=None, data=None)
        s.update(given)
        return s
    from . import checkpoint as ckpt
    try:
        meta = ckpt.read_checkpoint(args.resume)[0]
    except ckpt.CheckpointError as e:
        raise CLIError(f"--resume: {e}") from None
    stored = meta.get("cli")
    if not stored:
        raise CLIError(f"--resume: {meta['path']} was not written by 'featuremaps train' (no stored settings); "
                       "resume it from Python with featuremaps.train.fit(resume=...)")
    conflicts = [f"--{k.replace('_', '-')} {given[k]!r} (the run has {stored.get(k)!r})"
                 for k in given if k in _RESUMABLE and k != "data" and given[k] != stored.get(k)]
    if conflicts:
        raise CLIError("--resume continues a run with its stored settings; these options differ: "
                       + ", ".join(conflicts) + ". Start a new run (--out) to change them")
    s = dict(stored)
    s["epochs"] = given.get("epochs", meta.get("epochs", stored.get("epochs")))
    if "data" in given:
        s["data"] = given["data"]
    return s


def _default_out(model: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{model}-{stamp}"
    i = 2
    while out.exists():
        out = Path("runs") / f"{model}-{stamp}-{i}"
        i += 1
    return out


@command("train", help="train a model and save a run directory", arguments=_train_arguments,
         description="Train a model from the zoo. With no arguments: lenet on the embedded 5,000-image MNIST "
                     "sample for 10 epochs (SGD with momentum, cosine learning-rate schedule), then report "
                     "validation (and, if the official test set is found, test) accuracy. The run directory gets checkpoint.npz, metrics.csv, metrics.json, "
                     "curves.png and config.json. Ctrl-C saves the last completed step; --resume RUN_DIR continues.")
def cmd_train(args) -> int:
    from . import data, models, optim, schedules, train
    from .progress import ProgressBar

    s = _train_settings(args)
    name, ds_name, seed = s["model"], s["dataset"], int(s["seed"])
    if not 0 < s["val_fraction"] < 1:
        raise CLIError(f"--val-fraction must be between 0 and 1; received {s['val_fraction']}")
    full = _load(ds_name, "train", s["data"])
    if ds_name == "sample":
        train_ds, val_ds = full, _load("sample", "val", s["data"])
    else:
        train_ds, val_ds = data.split_validation(full, s["val_fraction"], np.random.default_rng([seed, 5]))
    train_ds, val_ds = _limit(train_ds, s["limit"], seed), _limit(val_ds, s["limit"], seed + 1)

    model = models.get(name, rng=np.random.default_rng(seed), num_classes=full.num_classes)
    _check_input_shape(model, train_ds, name)
    opt_name = s["optimizer"]
    lr = s["lr"] if s["lr"] is not None else DEFAULT_LR[opt_name]
    kw = {}
    if opt_name == "sgd":
        kw = {"momentum": s["momentum"], "nesterov": bool(s["nesterov"])}
    if s["weight_decay"] is not None:  # None: the optimiser's default (0, or 0.01 for adamw)
        kw["weight_decay"] = s["weight_decay"]
    opt = optim.get(opt_name, model.parameters(), lr, **kw)
    schedule = schedules.get(s["schedule"], lr, epochs=s["epochs"])

    out = Path(args.out) if args.out else (Path(args.resume) if args.resume else _default_out(name))
    if args.resume and Path(args.resume).is_file():
        out = Path(args.out) if args.out else Path(args.resume).parent
    if not args.resume and out.exists() and any(out.iterdir()):
        raise CLIError(f"--out {out} already exists and is not empty; choose another directory or --resume it")
    stored = {k: s[k] for k in _RESUMABLE if k != "data"}
    stored["data"] = s["data"]
    meta = {"dataset": ds_name, "model_name": name, "cli": dict(stored, epochs=s["epochs"])}

    reporter = ProgressBar()
    reporter.message(f"training {name} ({model.num_parameters():,} parameters) on {ds_name}: "
                     f"{len(train_ds):,} training / {len(val_ds):,} validation images, {s['epochs']} epochs, "
                     f"batch {s['batch_size']}, {opt!r}" + (f", schedule {s['schedule']}" if s['schedule'] != 'none' else "")
                     + ("; compiled kernels on (numba)" if _numba_enabled() else ""))
    try:
        result = train.fit(model, train_ds, val_ds, epochs=s["epochs"], batch_size=s["batch_size"], optimizer=opt,
                           schedule=schedule, seed=seed, out_dir=out, resume=args.resume,
                           augment=bool(s["augment"]), reporter=reporter, meta=meta, plot=not args.no_plot)
    except train.NonFiniteLossError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except train.TrainingInterrupted:
        return EXIT_INTERRUPTED  # the reporter has said what was saved

    norm = train.normalization_for(train_ds)
    val = train.evaluate(model, val_ds, normalization=norm)
    test = None
    try:
        test_ds = data.load(ds_name, "test", data_dir=s["data"], download=False, progress=False)
    except data.DataError:
        reporter.message("note: the official test set was not found (give --data DIR); evaluate later with "
                         f"'featuremaps evaluate {out} --data DIR'")
    else:
        if s["limit"] is None:
            test = train.evaluate(model, test_ds, normalization=norm)
            test["split"] = "test"
    doc = {"run_dir": str(out), "checkpoint": str(result.checkpoint) if result.checkpoint else None,
           "model": name, "dataset": ds_name, "epochs": s["epochs"], "history": result.history,
           "validation": {k: val[k] for k in ("accuracy", "loss", "n")},
           "test": {k: test[k] for k in ("accuracy", "loss", "n")} if test else None}
    best = test or val
    doc["accuracy"], doc["accuracy_split"] = best["accuracy"], ("test" if test else "validation")
    if args.json:
        _out(doc)
    else:
        print(f"validation accuracy {_pct(val['accuracy'])} (loss {val['loss']:.4f}) on {val['n']:,} images")
        if test:
            print(f"test accuracy       {_pct(test['accuracy'])} (loss {test['loss']:.4f}) on {test['n']:,} "
                  f"images (the official {ds_name if ds_name != 'sample' else 'MNIST'} test set)")
        print(f"run saved to {out}/ (checkpoint.npz, metrics.csv, metrics.json, curves.png, config.json)")
    return 0


# --- evaluate --------------------------------------------------------------------------------------

def _evaluate_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT", help="a run directory or a checkpoint .npz file")
    _add_data_args(p, default_hint="the dataset the model was trained on")
    p.add_argument("--split", metavar="NAME", default="test", help="which split to evaluate: test (default; for MNIST the "
                   "official 10,000 t10k images), train, or val (sample only)")
    p.add_argument("--batch-size", metavar="N", type=_positive_int, default=256, help="default: 256")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")


def _open_checkpoint(path):
    from . import checkpoint as ckpt
    try:
        return ckpt.load_checkpoint(path)
    except ckpt.CheckpointError as e:
        raise CLIError(str(e)) from None


@command("evaluate", help="accuracy, loss and confusion matrix of a trained model", arguments=_evaluate_arguments)
def cmd_evaluate(args) -> int:
    from . import train
    model, meta, _ = _open_checkpoint(args.checkpoint)
    ds_name = args.dataset or meta.get("dataset")
    if ds_name is None:
        raise CLIError("the checkpoint does not say which dataset it was trained on; give --dataset")
    ds = _limit(_load(ds_name, args.split, args.data), args.limit, 0)
    _check_input_shape(model, ds, meta.get("model_name", meta["model"].get("class", "model")))
    norm = meta.get("normalization") or train.normalization_for(ds)
    res = train.evaluate(model, ds, batch_size=args.batch_size, normalization=norm)
    doc = {"accuracy": res["accuracy"], "loss": res["loss"], "n": res["n"], "dataset": ds_name, "split": args.split,
           "checkpoint": meta["path"], "epoch": meta.get("epoch"), "classes": list(ds.classes),
           "confusion": res["confusion"], "per_class_accuracy": res["per_class_accuracy"]}
    if args.json:
        _out(doc)
        return 0
    what = "MNIST official test set" if (ds_name, args.split) == ("sample", "test") else f"{ds_name} {args.split}"
    print(f"{what}: accuracy {_pct(res['accuracy'])}  loss {res['loss']:.4f}  ({res['n']:,} images; "
          f"{meta['path']}, epoch {meta.get('epoch')})")
    print(_confusion_text(res["confusion"], ds.classes))
    return 0


def _confusion_text(conf, classes) -> str:
    labels = [str(c)[:7] for c in classes]
    w = max(max(len(str(v)) for row in conf for v in row), max(len(lab) for lab in labels), 3)
    lw = max(len(lab) for lab in labels)
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (lw + 2) + " ".join(f"{lab:>{w}}" for lab in labels) + "   recall"]
    for lab, row in zip(labels, conf):
        total = sum(row)
        rec = row[labels.index(lab)] / total if total else float("nan")
        lines.append(f"{lab:>{lw}}  " + " ".join(f"{v:>{w}}" for v in row) + f"   {100 * rec:5.1f}%")
    return "\n".join(lines)


# --- predict ---------------------------------------------------------------------------------------

def _predict_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint .npz file or a run directory")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG/JPEG files (needs Pillow; colour is converted to the model's channels) or IDX "
                        "files (e.g. t10k-images-idx3-ubyte[.gz]); each image must already have the model's "
                        "height and width (28×28 for the MNIST models): nothing is resized")
    p.add_argument("--top", metavar="K", type=_positive_int, default=3, help="how many classes to list per image (default: 3)")
    p.add_argument("--invert", action="store_true",
                   help="invert the pixels first (MNIST digits are light on dark; use for dark-on-light drawings)")
    p.add_argument("--json", action="store_true", help="print the predictions as one JSON document")


def _is_idx(path: Path) -> bool:
    """IDX by name (`*-ubyte`, `*.idx*`, optionally `.gz`) or by its first bytes (0x0000, dtype, ndim)."""
    n = path.name.lower().removesuffix(".gz")
    if n.endswith("ubyte") or "idx" in n.rsplit(".", 1)[-1]:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E) and 1 <= head[3] <= 4


def _read_image(path: Path, expect: tuple) -> tuple[np.ndarray, list[str]]:
    """Images in `path` as uint8 (N, H, W, C) checked against the model's (H, W, C); and a label each."""
    h, w, c = expect
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    if _is_idx(path):
        from .data import read_idx
        arr = read_idx(path)
        if arr.dtype != np.uint8:
            raise CLIError(f"{path}: IDX images must be uint8 (0..255); this file holds {arr.dtype}")
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4:
            raise CLIError(f"{path}: expected IDX images (N, H, W) or (N, H, W, C); the file has shape {arr.shape}")
        names = [f"{path}[{i}]" for i in range(len(arr))] if len(arr) > 1 else [str(path)]
    else:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            raise CLIError("reading PNG/JPEG images needs Pillow: pip install 'featuremaps[plot]' "
                           "(or pass IDX files)") from None
        try:
            with Image.open(path) as im:
                im.load()
                if c == 1:
                    im = im.convert("L")
                elif c == 3:
                    im = im.convert("RGB")
                else:
                    raise CLIError(f"the model expects {c}-channel input; only IDX files can provide that")
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise CLIError(f"{path}: not a readable image ({e})") from None
        arr = arr.reshape(1, arr.shape[0], arr.shape[1], -1)
        names = [str(path)]
    if arr.shape[1:3] != (h, w):
        raise CLIError(f"{path}: the image is {arr.shape[2]}×{arr.shape[1]} pixels (width×height) but the model "
                       f"expects {w}×{h}; resize it first (it is not resized silently)")
    if arr.shape[3] != c:
        raise CLIError(f"{path}: the image has {arr.shape[3]} channels but the model expects {c}")
    return arr, names


@command("predict", help="classify images with a trained model", arguments=_predict_arguments)
def cmd_predict(args) -> int:
    from . import functional as F, train
    model, meta, _ = _open_checkpoint(args.checkpoint)
    expect = tuple(getattr(model, "input_shape", None) or ())
    if len(expect) != 3:
        raise CLIError("the checkpoint's model has no (H, W, C) input_shape; cannot prepare images for it")
    batches, names = [], []
    for p in args.images:
        arr, n = _read_image(Path(p), expect)
        batches.append(arr)
        names += n
    images = np.concatenate(batches)
    if args.invert:
        images = 255 - images
    norm = meta.get("normalization")
    logits = train.predict_logits(model, images, normalization=norm)
    probs = np.asarray(F.softmax(logits.astype(np.float64), axis=-1))
    classes = meta.get("classes") or [str(i) for i in range(probs.shape[1])]
    k = min(args.top, probs.shape[1])
    preds = []
    for name, pr in zip(names, probs):
        order = np.argsort(-pr, kind="stable")[:k]
        top = [{"label": int(j), "class": classes[j], "probability": float(pr[j])} for j in order]
        preds.append({"input": name, "label": top[0]["label"], "class": top[0]["class"],
                      "probability": top[0]["probability"], "top": top})
    if args.json:
        _out({"checkpoint": meta["path"], "predictions": preds})
        return 0
    for p in preds:
        alts = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in p["top"][1:])
        print(f"{p['input']}: {p['class']} ({100 * p['probability']:.1f}%)" + (f"  then {alts}" if alts else ""))
    return 0


# --- summary, models -------------------------------------------------------------------------------

def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").replace("×", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 28,28,1); received {text!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes H,W,C (e.g. 28,28,1); received {text!r}")
    return shape


def _summary_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL|CHECKPOINT", help="a model name (see 'featuremaps models'), "
                   "a checkpoint .npz file or a run directory")
    p.add_argument("--input-shape", type=_parse_shape, default=None, metavar="H,W,C",
                   help="per-example input shape (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON document")


@command("summary", help="per-layer table of shapes, parameters and costs", arguments=_summary_arguments)
def cmd_summary(args) -> int:
    from . import models
    from .inspect import summary
    target = args.model
    if target in models.names():
        model = models.get(target)
    elif Path(target).exists():
        model = _open_checkpoint(target)[0]
    else:
        raise CLIError(f"{target!r} is neither a model name ({', '.join(models.names())}) nor an existing "
                       "checkpoint or run directory")
    s = summary(model, args.input_shape)
    if args.json:
        _out(s.to_dict())
    else:
        print(s)
    if getattr(s, "error", None):
        if not args.json:
            print(f"{PROG}: error: {s.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _models_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the list as one JSON document")


@command("models", help="list the model names with one-line descriptions", arguments=_models_arguments)
def cmd_models(args) -> int:
    from . import models
    rows = [{"name": n, "description": models.describe(n)} for n in models.names()]
    if args.json:
        _out({"models": rows})
    else:
        w = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{w}}  {r['description']}")
    return 0


# --- parser and entry point ------------------------------------------------------------------------

def _import_plugins() -> None:
    try:
        pkg = importlib.import_module("featuremaps.commands")
    except ImportError:
        return
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        try:
            importlib.import_module(f"featuremaps.commands.{info.name}")
        except Exception as e:  # a broken extra subcommand must not take the others down
            _note(f"{PROG}: warning: subcommand module featuremaps.commands.{info.name} failed to load: {e}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    _import_plugins()
    parser = _Parser(prog=PROG, description="Convolutional networks from first principles in NumPy: train, "
                     "evaluate and look inside them.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for c in _COMMANDS.values():
        p = sub.add_parser(c.name, help=c.help, description=c.description or c.help[:1].upper() + c.help[1:] + ".")
        if c.arguments is not None:
            c.arguments(p)
        p.set_defaults(_run=c.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed run, 2 usage error, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from .checkpoint import CheckpointError
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        _note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except (CLIError, CheckpointError, ValueError, TypeError, FileNotFoundError, PermissionError,
            IsADirectoryError, NotADirectoryError) as e:
        if args.traceback:
            raise
        msg = " ".join(line.strip() for line in (str(e) or type(e).__name__).splitlines() if line.strip())
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
