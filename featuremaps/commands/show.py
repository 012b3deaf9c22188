"""`featuremaps show WHAT CHECKPOINT_OR_RUN [options] -o OUT.png`; `featuremaps show WHAT --help` lists
the options of that picture.

Draws one picture of a trained model with `featuremaps.pictures` (needs the `plot` extra):

- `kernels`: the kernels of a conv layer (default: the first conv layer; `--channels` draws a
  3-channel layer's R, G, B slices as a grid instead of colour tiles);
- `maps`: the feature maps of one input at every layer (needs `--image` or `--index`);
- `connections`: the connection matrix and bipartite graph of a conv layer (default: the first conv
  layer that is not fully connected, else the first conv layer);
- `receptive`: the input pixels one unit sees, over the input (or a blank canvas without `--image`
  or `--index`; default layer: the last conv layer, default position: the centre of its maps);
- `curves`: loss and accuracy per epoch from a run directory's metrics.json (or that file).

Each picture is its own argparse subcommand with its own options. The options of the other
pictures are still accepted by the parser but hidden from the help, so that passing one gets a
one-line reason (`show curves takes no --layer`) instead of argparse's "unrecognized arguments".

Inputs are prepared exactly as `featuremaps explain` and `featuremaps predict` prepare them (same
reader, the checkpoint's normalisation, or `--mean`/`--std`; `--layout` for a .npy array). An ONNX
file (recognised by content) is imported first, with `--input-shape` when its input has free
dimensions; so are Keras `.keras`/`.h5` files and, with `--arch NAME`, `.safetensors` weights.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (MODEL_FILES, CLIError, add_index_arg, add_input_shape_arg, check_parent, check_unit, open_model,
                      output_shape, position, positive_int)
from .inputs import add_preprocess_args

__all__ = ["add_arguments", "run", "WHATS"]

WHATS = ("kernels", "maps", "connections", "receptive", "curves")
HELP = "draw kernels, feature maps, connections, a receptive field or training curves as a PNG"
DESCRIPTION = ("Draw one picture of a trained model as a PNG (needs matplotlib: pip install 'featuremaps[plot]'). "
               "kernels: a conv layer's kernels w[:, :, i, n]; maps: one input's feature maps at every layer; "
               "connections: which input maps feed each output map; receptive: the input pixels one unit sees; "
               "curves: loss and accuracy per epoch of a run. 'featuremaps show WHAT --help' lists the options "
               "of each.")
_WHAT_HELP = {
    "kernels": "a conv layer's kernels w[:, :, i, n] as a grid (default layer: the first conv layer)",
    "maps": "one input's feature maps at every layer (needs --image or --index)",
    "connections": "which input maps feed each output map of a conv layer (default: the first partially "
                   "connected conv layer, else the first conv layer)",
    "receptive": "the input pixels one unit sees, over the input image (a blank canvas without --image/--index; "
                 "default: the last conv layer's centre unit)",
    "curves": "loss and accuracy per epoch of a run (from its metrics.json)",
}
# The option groups each picture takes; the rest are hidden in its help and rejected with a reason.
_TAKES = {"kernels": {"layer", "normalize", "channels", "shape", "arch"},
          "maps": {"input", "max_maps", "shape", "arch"},
          "connections": {"layer", "shape", "arch"}, "receptive": {"layer", "input", "at", "shape", "arch"},
          "curves": set()}
_FLAGS = {"layer": (("layer", "--layer"),), "normalize": (("normalize", "--normalize"),),
          "channels": (("channels", "--channels"),),
          "max_maps": (("max_maps", "--max-maps"),), "at": (("at", "--at"),),
          "shape": (("input_shape", "--input-shape"),), "arch": (("arch", "--arch"),),
          "input": (("image", "--image"), ("index", "--index"), ("invert", "--invert"), ("data", "--data"),
                    ("mean", "--mean"), ("std", "--std"), ("layout", "--layout"))}
DEFAULT_MAX_MAPS = 16


def add_arguments(p) -> None:
    """Declare `show`'s pictures as subcommands, each with its own options and help."""
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what in WHATS:
        text = _WHAT_HELP[what]
        q = sub.add_parser(what, help=text, description=f"featuremaps show {what}: {text}. Needs matplotlib "
                           "(pip install 'featuremaps[plot]').")
        _what_arguments(q, what)


def _what_arguments(q, what: str) -> None:
    takes = _TAKES[what]

    def shown(key: str, text: str) -> str:
        return text if key in takes else argparse.SUPPRESS

    q.add_argument("source", metavar="RUN_DIR" if what == "curves" else "CHECKPOINT_OR_RUN",
                   help="a run directory or its metrics.json" if what == "curves" else
                        MODEL_FILES)
    add_input_shape_arg(q, help=shown("shape", "per-example input shape H,W,C of an ONNX file whose input has "
                                               "free dimensions"))
    q.add_argument("--arch", metavar="NAME", default=None, help=shown("arch", "for a .safetensors file (weights "
                   "only): the zoo model they belong to (see 'featuremaps models')"))
    q.add_argument("-o", "--out", required=True, metavar="OUT.png", help="where to write the PNG")
    q.add_argument("--layer", metavar="NAME", default=None,
                   help=shown("layer", "the layer's name (see 'featuremaps summary')"))
    # hidden members of a mutually exclusive group trip argparse's usage formatter: group only shown ones
    src = q.add_mutually_exclusive_group() if "input" in takes else q
    src.add_argument("--image", metavar="FILE",
                     help=shown("input", "a PNG/JPEG or IDX image, prepared as 'featuremaps predict' does, or a "
                                         ".npy array (see --layout); never resized: a wrong size is an error"))
    add_index_arg(q, shown("input", "the N-th image of the official test set (else the embedded sample's val "
                                    "split)"), group=src)
    q.add_argument("--invert", action="store_true", default=None,
                   help=shown("input", "with --image: invert the pixels first (as in predict)"))
    q.add_argument("--data", metavar="DIR", default=None,
                   help=shown("input", "with --index: folder with the dataset's files"))
    add_preprocess_args(q, shown=lambda text: shown("input", text))
    q.add_argument("--at", type=position, metavar="ROW,COL", default=None,
                   help=shown("at", "the unit's position in the layer's maps (default: the centre)"))
    q.add_argument("--normalize", choices=("global", "per_filter"), default=None,
                   help=shown("normalize", "one colour scale for the layer or one per filter (default: "
                                           "per_filter for RGB first layers, global otherwise)"))
    q.add_argument("--channels", action="store_true", default=None,
                   help=shown("channels", "on a layer with 3 input channels: draw the R, G, B slices of each "
                                          "filter as a grid (the conv sums them) instead of one colour tile "
                                          "per filter"))
    q.add_argument("--max-maps", type=positive_int, default=None, metavar="K",
                   help=shown("max_maps", f"at most K maps per layer (default {DEFAULT_MAX_MAPS})"))


def _check_options(args) -> None:
    """Options that belong to another picture: a one-line reason, not a silent no-op."""
    what = args.what
    for key, flags in _FLAGS.items():
        values = [(flag, getattr(args, dest, None)) for dest, flag in flags]
        given = [flag for flag, v in values if v is not None and v is not False]  # --index 0 is given
        if key in _TAKES[what] or not given:
            continue
        if key == "input" and what in ("kernels", "connections"):
            raise CLIError(f"show {what} draws the weights only; it takes no --image/--index"
                           + ("" if {"--image", "--index"} & set(given) else f" (nor {given[0]})"))
        if key == "layer" and what == "maps":
            raise CLIError("show maps draws every layer; it takes no --layer")
        if key == "at":
            raise CLIError("--at applies to 'show receptive' only")
        raise CLIError(f"show {what} takes no {given[0]}")


def _conv_layers(model) -> list[tuple[str, object]]:
    from ..inspect.connectivity import is_conv
    return [(n, m) for n, m in model.named_children() if is_conv(m)]


def _pick_conv(model, name, what: str, prefer_partial: bool = False):
    from ..inspect import connections, resolve_layer
    from ..inspect.connectivity import is_conv

    if name is not None:
        layer = resolve_layer(model, name, op=f"show {what}")
        if not is_conv(layer):
            convs = [n for n, _ in _conv_layers(model)]
            raise CLIError(f"show {what}: --layer must name a conv layer; {name!r} is a {type(layer).__name__} "
                           f"(conv layers: {', '.join(convs) or 'none'})")
        return name, layer
    convs = _conv_layers(model)
    if not convs:
        raise CLIError(f"show {what}: the model has no conv layer")
    if prefer_partial:
        for n, m in convs:
            if not connections(m).all():
                return n, m
    return convs[0]


def _input(model, meta, args, what: str):
    from . import inputs

    meta = inputs.preprocessing(model, meta, args.mean, args.std)
    if args.image is not None:
        inp = inputs.image_file(model, meta, args.image, invert=args.invert, layout=args.layout)
        return inp.x, inp.label, inp.source
    if args.invert or args.layout:
        raise CLIError(f"{'--invert' if args.invert else '--layout'} applies to --image only")
    if args.index is None:
        raise CLIError(f"show {what} needs an input: pass --image FILE or --index N")
    inp = inputs.dataset_image(model, meta, args.index, data_dir=args.data)
    return inp.x, inp.label, inp.source


def _draw_kernels(pictures, model, meta, args, out: Path) -> None:
    name, layer = _pick_conv(model, args.layer, "kernels")
    if args.channels:
        c_in = _in_channels(layer)
        if c_in != 3:
            raise CLIError(f"show kernels: --channels needs a layer with 3 input channels; layer {name!r} has "
                           f"{c_in}")
    pictures.kernel_grid(layer, out, normalize=args.normalize, name=name, channels=bool(args.channels))


def _in_channels(layer) -> int:
    from ..inspect import connections
    return int(connections(layer).shape[0])


def _draw_connections(pictures, model, meta, args, out: Path) -> None:
    name, layer = _pick_conv(model, args.layer, "connections", prefer_partial=True)
    pictures.connectivity_diagram(name, out, name=name, model=model)


def _draw_maps(pictures, model, meta, args, out: Path) -> None:
    x, _, source = _input(model, meta, args, "maps")
    pictures.feature_maps(model, x, out, max_maps=args.max_maps or DEFAULT_MAX_MAPS, classes=meta.get("classes"))
    _say_input(source)


def _draw_receptive(pictures, model, meta, args, out: Path) -> None:
    from ..inspect import activations, resolve_layer

    x, source = None, None  # without --image/--index: the field on a blank canvas
    if any(v is not None and v is not False for v in (args.image, args.index, args.invert, args.mean, args.std,
                                                        args.layout)):
        x, _, source = _input(model, meta, args, "receptive")
    if args.layer is None:
        convs = _conv_layers(model)
        if not convs:
            raise CLIError("show receptive: the model has no conv layer; pass --layer NAME")
        name = convs[-1][0]
    else:
        name = args.layer
        resolve_layer(model, name, op="show receptive")
    shape = output_shape(model, name) or next(a.array.shape for a in activations(model, x) if a.name == name)
    if len(shape) != 3:
        raise CLIError(f"show receptive: layer {name!r} outputs a vector; pick a layer with maps")
    check_unit(model, name, None, args.at, op="show receptive", at_required=False)
    at = args.at if args.at is not None else (shape[0] // 2, shape[1] // 2)
    pictures.receptive_field_overlay(model, x, name, at, out)
    if source is not None:
        _say_input(source)


_DRAW = {"kernels": _draw_kernels, "connections": _draw_connections, "maps": _draw_maps,
         "receptive": _draw_receptive}


def run(args) -> int:
    """Load the checkpoint (or the run's metrics), draw the picture, write the PNG, print its path."""
    from .. import pictures

    try:
        pictures._mpl.require("featuremaps show")  # fail before loading anything when matplotlib is missing
    except ImportError as e:
        raise CLIError(str(e)) from None
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"-o must name a .png file; received {args.out!r}")
    check_parent(out, "-o")
    _check_options(args)
    if args.what == "curves":
        pictures.curves(args.source, out, title=f"training curves: {args.source}")
    else:
        model, meta = open_model(args.source, input_shape=args.input_shape, arch=args.arch)
        _DRAW[args.what](pictures, model, meta, args, out)
    print(out)
    return 0


def _say_input(source: dict) -> None:
    print(f"input: {source['description']}", file=sys.stderr)
    if source.get("note"):
        print(f"note: {source['note']}", file=sys.stderr)
