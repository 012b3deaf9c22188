"""What every subcommand shares: the user-error type, argparse types, JSON output, and the readers
(datasets, checkpoints, images) that turn library errors into one-line CLI errors.

Nothing here imports `featuremaps.cli`: the commands sit under the front end, never beside it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .._json import jsonable

PROG = "featuremaps"
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# --- output ----------------------------------------------------------------------------------------

def json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-able: {type(o).__name__}")


def print_json(doc) -> None:
    """Print one JSON document to stdout."""
    doc = jsonable(doc, nonfinite="null")  # JSON has no NaN or infinity
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False, default=json_default) + "\n")


def note(text: str) -> None:
    """A note or warning for the user: stderr, so stdout stays the figures (or the one JSON document)."""
    print(text, file=sys.stderr, flush=True)


def error_line(text: str) -> None:
    """The one-line `featuremaps: error: ...` form of a user error, for errors that do not stop the command."""
    msg = " ".join(line.strip() for line in text.splitlines() if line.strip())
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def shape_text(s) -> str:
    return "×".join(str(int(v)) for v in s)


# --- argparse types --------------------------------------------------------------------------------

def int_at_least(lo: int, expected: str):
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


positive_int = int_at_least(1, "a positive integer")
nonneg_int = int_at_least(0, "an integer >= 0")


def _float_above(lo: float, strict: bool):
    """An argparse type: a finite float > lo (strict) or >= lo. Every number out of range gets the same
    message (`--lr 0` and `--lr -1` alike); only inf/nan add the word "finite"."""
    bound = f"{'>' if strict else '>='} {lo:g}"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = lo - 1
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}; received {text!r}")
        if v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"expected a number {bound}; received {text!r}")
        return v
    return parse


positive_float = _float_above(0.0, strict=True)
nonneg_float = _float_above(0.0, strict=False)


def choice(kind: str, valid: Callable[[], Sequence[str]]):
    """An argparse type checking a name against `valid()`, listing the valid names on error."""
    def check(text: str) -> str:
        names = list(valid())
        key = text.lower()
        if key not in names:
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}; valid names: {', '.join(names)}")
        return key
    check.__name__ = kind
    return check


def position(text: str) -> tuple[int, int]:
    """An argparse type: ROW,COL (negative values parse, so the range check can name them)."""
    try:
        r, c = (int(v) for v in text.replace(" ", "").strip("()").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL (two integers, e.g. 4,5); received {text!r}") from None
    return r, c


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").replace("×", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 28,28,1); received {text!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes H,W,C (e.g. 28,28,1); received {text!r}")
    return shape


def add_input_shape_arg(p, help=None) -> None:
    """`--input-shape H,W,C`, the same in every command that takes a model."""
    p.add_argument("--input-shape", type=parse_shape, default=None, metavar="H,W,C", help=help or (
        "per-example input shape, channels last (default: the model's own); needed for an ONNX file whose "
        "input has free dimensions"))


def dataset_names():
    from ..data import DATASETS
    return list(DATASETS)


def add_data_args(p: argparse.ArgumentParser, *, default_hint: str) -> None:
    p.add_argument("--dataset", metavar="NAME", type=choice("dataset", dataset_names), default=None,
                   help=f"mnist, fashion-mnist, cifar10, sample (the embedded 5,000-image MNIST sample), or "
                        f"the generated colour-conjunctions and corners (made from the training --seed); "
                        f"default: {default_hint}")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder with the dataset's files (looked at before the cache "
                        "$FEATUREMAPS_DATA or ~/.cache/featuremaps; missing files are downloaded)")
    p.add_argument("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)  # debug: cap examples


def add_index_arg(p, help: str, group=None) -> None:
    """`--index N`: the same type (an integer >= 0) in every command that takes it."""
    (group or p).add_argument("--index", metavar="N", type=nonneg_int, default=None, help=help)


# --- readers: library errors → one-line CLI errors --------------------------------------------------

def load(name: str, split: str, data_dir, *, download: bool = True, seed: int = 0):
    """`featuremaps.data.load` with its errors as one-line CLI errors; `seed` makes the generated datasets."""
    from .. import data
    try:
        return data.load(name, split, data_dir=data_dir, download=download, progress=True, seed=seed)
    except data.DataError as e:
        raise CLIError(str(e)) from None


def data_seed(meta: dict, dataset: str | None) -> int:
    """The seed a generated dataset was made with in training: the run's --seed when `dataset` is the one
    the checkpoint was trained on (so evaluate and --index read the same images), else 0."""
    cli = meta.get("cli") or {}
    same = dataset is not None and dataset == meta.get("dataset")
    return int(cli.get("seed") or 0) if same else 0


def limit(ds, n: int | None, seed: int):
    """A random subset of `n` items (debug option --limit); the dataset itself when n is None."""
    if n is None or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(ds))[:n])
    return ds.subset(idx)


def source_name(dataset: str, split: str) -> str:
    """The dataset the images of `dataset`/`split` come from: the embedded sample's test split is the
    official MNIST test set, so it is named `mnist` (as `explain`, `show` and `report` name it)."""
    return "mnist" if (dataset, split) == ("sample", "test") else dataset


def check_input_shape(model, ds, model_name: str) -> None:
    want = tuple(getattr(model, "input_shape", None) or ())
    if want and tuple(ds.image_shape) != want:
        raise CLIError(f"model {model_name} expects {shape_text(want)} images but {ds.name} has "
                       f"{shape_text(ds.image_shape)} images; pick a model made for this dataset (featuremaps models)")


MODEL_FILES = ("a run directory, a checkpoint .npz file, an ONNX file, a Keras .keras/.h5 file or a .safetensors "
               "file (with --arch); recognised by content")


def add_arch_arg(p) -> None:
    """`--arch NAME`, the zoo model whose layers a safetensors file's weights belong to."""
    p.add_argument("--arch", metavar="NAME", default=None, help=(
        "for a .safetensors file (weights only): the zoo model they belong to (see 'featuremaps models')"))


def open_model(path, *, input_shape=None, shape_flag: bool = True, reshape_ok: bool = False, arch=None) -> tuple:
    """`(model, meta)` of a checkpoint file, run directory, ONNX file, Keras file (.keras, .h5) or,
    with `arch` (--arch, a zoo model name), safetensors file, chosen by content
    (`featuremaps._load.open_model`), the model in eval mode. `meta` is the checkpoint's meta
    document, or for an imported file `{"path", "source", "model_name", "import_log", ...}`.

    `input_shape` (H, W, C, from --input-shape) goes to the ONNX import; an ONNX graph whose input
    has free dimensions without it gets an error asking for `--input-shape` (or, for a command
    without that flag (`shape_flag` False), for a checkpoint made by `featuremaps convert`). Any
    other kind has its own input shape: another one is refused unless the command uses it itself
    (`reshape_ok`, as `summary` does)."""
    from .. import checkpoint as ckpt
    from .._load import open_model as open_any, sniff
    if not Path(path).exists():
        raise CLIError(f"model file {path} does not exist")
    kind = sniff(path)
    _check_arch(path, kind, arch)
    try:
        model, meta, kind = open_any(path, input_shape=input_shape, arch=arch)
    except ckpt.CheckpointError as e:
        raise CLIError(str(e)) from None
    except ValueError:
        if kind == "onnx" and input_shape is None:
            _ask_for_shape(path, shape_flag)  # a free dimension is the likely cause: say what to pass
        raise
    shape = getattr(model, "input_shape", None)
    if kind == "onnx" and (not shape or any(d is None for d in shape)):
        _ask_for_shape(path, shape_flag, always=True)
    if kind != "onnx" and input_shape is not None and not reshape_ok and tuple(input_shape) != tuple(shape or ()):
        raise CLIError(f"--input-shape is for ONNX files whose input has free dimensions; {path} holds a model "
                       f"with input {shape_text(shape) if shape else 'of no fixed shape'}, so drop --input-shape")
    return model, meta


def _check_arch(path, kind: str, arch) -> None:
    """--arch is needed for a safetensors file and refused for every other kind, in the CLI's words."""
    from .. import models
    if kind == "safetensors" and arch is None:
        raise CLIError(f"{path} is a safetensors file: weights only, without the layers they belong to; pass "
                       f"--arch NAME with the zoo model they are for ({', '.join(models.names())})")
    if kind == "safetensors" and str(arch).lower() not in models.names():
        raise CLIError(f"--arch must name a zoo model ({', '.join(models.names())}); received {arch!r}")
    if kind != "safetensors" and arch is not None:
        what = {"run": "a run directory", "checkpoint": "a featuremaps checkpoint"}.get(kind, f"a {kind} model file")
        raise CLIError(f"--arch is for .safetensors files (weights without their layers); {path} is {what}, which "
                       f"holds its own layers, so drop --arch")


def _onnx_input_dims(path) -> list[tuple[str, list]]:
    """(name, dims) of the ONNX graph's inputs that are not initializers; a free dim is its name or '?'."""
    from ..onnx._loader import parse
    g = parse(str(path))[0].graph
    inits = {t.name for t in g.initializer}
    out = []
    for i in g.input:
        if i.name in inits or not i.type.tensor_type.HasField("shape"):
            continue
        out.append((i.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                             for d in i.type.tensor_type.shape.dim]))
    return out


def _ask_for_shape(path, shape_flag: bool, always: bool = False) -> None:
    """Raise the CLI's request for --input-shape when an input of `path` has free non-batch dims."""
    for name, dims in _onnx_input_dims(path):
        free = [d for d in dims[1:] if not isinstance(d, int) or d < 1]
        if not free and not always:
            continue
        shown = "(" + ", ".join(str(d) for d in dims) + ")"
        c = dims[1] if len(dims) == 4 and isinstance(dims[1], int) and dims[1] > 0 else 3
        how = (f"pass --input-shape H,W,C (e.g. 224,224,{c})" if shape_flag else
               f"this command takes no --input-shape: make a checkpoint with 'featuremaps convert {path} OUT.npz "
               f"--input-shape H,W,C' and give OUT.npz")
        raise CLIError(f"{path}: the ONNX graph's input {name!r} has free dimensions {shown} (NCHW), so featuremaps "
                       f"needs the per-example input shape; {how}")


def model_input_shape(model) -> tuple:
    expect = tuple(getattr(model, "input_shape", None) or ())
    if len(expect) != 3:
        raise CLIError("the checkpoint's model has no (H, W, C) input_shape; cannot prepare an input for it")
    return expect


def read_images(path, expect: tuple) -> tuple[np.ndarray, list[str]]:
    """`featuremaps.data.images.read_images`, its errors as CLIError."""
    from ..data import DataError
    from ..data.images import read_images as read
    try:
        return read(Path(path), expect)
    except DataError as e:
        raise CLIError(str(e)) from None


def dark_on_light_note(images: np.ndarray, name: str, meta: dict, inverted: bool) -> str | None:
    """A hint when images (as the model will see them) have a bright border but the model was trained
    on light-on-dark digits: the usual sign of a drawing that needs (or does not need) --invert."""
    from ..data.images import DARK_BACKGROUND, bright_border
    if meta.get("dataset") not in DARK_BACKGROUND:
        return None
    bright = int(bright_border(images).sum())
    if not bright:
        return None
    border = "the border is mostly bright" if len(images) == 1 else \
        f"{bright} of {len(images)} images have a mostly bright border"
    trained = f"the model was trained on light digits on a dark background ({meta['dataset']})"
    if inverted:
        return f"{name}: after --invert {border}, but {trained}; if the image is already light on dark, drop --invert"
    return f"{name}: {border}, but {trained}; if this is a dark drawing on a light background, pass --invert"


# --- layers and units ------------------------------------------------------------------------------

def output_shape(model, layer: str) -> tuple | None:
    """`layer`'s per-example output shape from `summary` (nothing is run); None when unknown."""
    from ..inspect import summary
    try:
        return tuple(summary(model)[layer]["output_shape"] or ()) or None
    except (KeyError, ValueError, TypeError):
        return None


def check_unit(model, layer: str, out_map: int | None, at, *, op: str, at_flag: str = "--at",
               at_required: bool = True) -> None:
    """Check --layer, --map and the position flag against the layer's output in the CLI's words: a
    map layer needs ROW,COL in range (unless `at_required` is False), a vector layer takes none."""
    from ..inspect import resolve_layer
    resolve_layer(model, layer, op=op)
    shape = output_shape(model, layer)
    if shape is None or len(shape) not in (1, 3):
        return  # the library checks what the summary cannot say
    n = shape[-1]
    if out_map is not None and not 0 <= out_map < n:
        what = "output maps" if len(shape) == 3 else "outputs"
        raise CLIError(f"{op}: --map must be in [0, {n - 1}] (layer {layer!r} has {n} {what}); received {out_map}")
    if len(shape) == 1:
        if at is not None:
            hint = " (--map picks the output)" if out_map is not None else ""
            raise CLIError(f"{op}: layer {layer!r} outputs a vector of {n} values, so it takes no {at_flag}; "
                           f"omit {at_flag} {at[0]},{at[1]}{hint}")
        return
    h, w = shape[:2]
    ranges = f"row in [0, {h - 1}] and col in [0, {w - 1}]"
    if at is None:
        if at_required:
            raise CLIError(f"{op}: layer {layer!r} outputs {h}×{w} maps, so it needs a position: "
                           f"pass {at_flag} ROW,COL with {ranges}")
        return
    if not (0 <= at[0] < h and 0 <= at[1] < w):
        raise CLIError(f"{op}: {at_flag} {at[0]},{at[1]} is outside the {h}×{w} maps of layer {layer!r}: "
                       f"row must be in [0, {h - 1}] and col must be in [0, {w - 1}]")


# --- output paths ----------------------------------------------------------------------------------

def check_parent(path: Path, flag: str) -> None:
    """An error naming `flag` when a parent of `path` exists as a file (not a raw `[Errno 20]`)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"{flag} {path}: {parent} is a file, not a directory; choose a path in a folder")
            return


def check_default_output(path: Path, flag: str, force: bool) -> None:
    """A command writing to its default path refuses to replace an existing file unless --force."""
    if path.exists() and not force:
        raise CLIError(f"{path} already exists; pass {flag} FILE to write elsewhere, or --force to overwrite it")
