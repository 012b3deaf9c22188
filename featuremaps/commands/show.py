"""`featuremaps show WHAT CHECKPOINT_OR_RUN [--layer NAME] [--image FILE | --index N] [--at ROW,COL] -o OUT.png`.

Draws one picture of a trained model with `featuremaps.pictures` (needs the `plot` extra):

- `kernels`: the kernels of a conv layer (default: the first conv layer);
- `maps`: the feature maps of one input at every layer (needs `--image` or `--index`);
- `connections`: the connection matrix and bipartite graph of a conv layer (default: the first conv
  layer that is not fully connected, else the first conv layer);
- `receptive`: the input pixels one unit sees (needs an input; default layer: the last conv layer,
  default position: the centre of its maps);
- `curves`: loss and accuracy per epoch from a run directory's metrics.json (or that file).

Inputs are prepared exactly as `featuremaps explain` and `featuremaps predict` prepare them (same
reader, the checkpoint's normalisation).
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_parser", "add_arguments", "run", "WHATS"]

WHATS = ("kernels", "maps", "connections", "receptive", "curves")
HELP = "draw kernels, feature maps, connections, a receptive field or training curves as a PNG"
DESCRIPTION = ("Draw one picture of a trained model as a PNG (needs matplotlib: pip install 'featuremaps[plot]'). "
               "kernels: a conv layer's kernels w[:, :, i, n]; maps: one input's feature maps at every layer; "
               "connections: which input maps feed each output map; receptive: the input pixels one unit sees; "
               "curves: loss and accuracy per epoch of a run.")


def add_arguments(p) -> None:
    """Declare the options of `show` on an argparse parser."""
    from .explain import _at

    p.add_argument("what", choices=WHATS, metavar="WHAT", help="one of: " + ", ".join(WHATS))
    p.add_argument("source", metavar="CHECKPOINT_OR_RUN",
                   help="a run directory or a checkpoint .npz file (curves: a run directory or its metrics.json)")
    p.add_argument("-o", "--out", required=True, metavar="OUT.png", help="where to write the PNG")
    p.add_argument("--layer", metavar="NAME", default=None, help="the layer's name (see 'featuremaps summary')")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="FILE", help="a PNG/JPEG or IDX image, prepared as 'featuremaps predict' does")
    src.add_argument("--index", metavar="N", type=int,
                     help="the N-th image of the official test set (else the embedded sample's val split)")
    p.add_argument("--invert", action="store_true", help="with --image: invert the pixels first (as in predict)")
    p.add_argument("--data", metavar="DIR", default=None, help="with --index: folder with the dataset's files")
    p.add_argument("--at", type=_at, metavar="ROW,COL", default=None,
                   help="receptive: the unit's position in the layer's maps (default: the centre)")
    p.add_argument("--normalize", choices=("global", "per_filter"), default=None,
                   help="kernels: one colour scale for the layer or one per filter (default: per_filter for "
                        "RGB first layers, global otherwise)")
    p.add_argument("--max-maps", type=int, default=16, metavar="K", help="maps: at most K maps per layer (default 16)")


def add_parser(subparsers):
    """Register the `show` subcommand on an argparse `subparsers` object (`set_defaults(func=run)`)."""
    p = subparsers.add_parser("show", help=HELP, description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def _conv_layers(model) -> list[tuple[str, object]]:
    from ..inspect.connectivity import is_conv
    return [(n, m) for n, m in model.named_children() if is_conv(m)]


def _pick_conv(model, name, what: str, prefer_partial: bool = False):
    from ..cli import CLIError
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
    from ..cli import CLIError
    from . import inputs

    if args.image is not None:
        inp = inputs.image_file(model, meta, args.image, invert=args.invert)
        return inp.x, inp.label, inp.source
    if args.invert:
        raise CLIError("--invert applies to --image only")
    if args.index is None:
        raise CLIError(f"show {what} needs an input: pass --image FILE or --index N")
    inp = inputs.dataset_image(model, meta, args.index, data_dir=args.data)
    return inp.x, inp.label, inp.source


def run(args) -> int:
    """Load the checkpoint (or the run's metrics), draw the picture, write the PNG, print its path."""
    from .. import pictures
    from ..cli import CLIError

    try:
        pictures._mpl.require("featuremaps show")  # fail before loading anything when matplotlib is missing
    except ImportError as e:
        raise CLIError(str(e)) from None
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"-o must name a .png file; received {args.out!r}")
    if args.what == "curves":
        for flag in ("layer", "image", "index", "at"):
            if getattr(args, flag) is not None:
                raise CLIError(f"show curves takes no --{flag}")
        pictures.curves(args.source, out, title=f"training curves: {args.source}")
        print(out)
        return 0

    from ..checkpoint import load_checkpoint
    from ..inspect import activations, resolve_layer

    model, meta, _ = load_checkpoint(args.source)
    model.eval()
    if args.what in ("kernels", "connections") and (args.image is not None or args.index is not None):
        raise CLIError(f"show {args.what} draws the weights only; it takes no --image/--index")
    if args.what != "receptive" and args.at is not None:
        raise CLIError("--at applies to 'show receptive' only")
    if args.what == "kernels":
        name, layer = _pick_conv(model, args.layer, "kernels")
        pictures.kernel_grid(layer, out, normalize=args.normalize, name=name)
    elif args.what == "connections":
        name, layer = _pick_conv(model, args.layer, "connections", prefer_partial=True)
        pictures.connectivity_diagram(layer, out, name=name)
    elif args.what == "maps":
        x, _, source = _input(model, meta, args, "maps")
        if args.layer is not None:
            raise CLIError("show maps draws every layer; it takes no --layer")
        pictures.feature_maps(model, x, out, max_maps=args.max_maps)
        _say_input(source)
    else:  # receptive
        x, _, source = _input(model, meta, args, "receptive")
        if args.layer is None:
            name = _conv_layers(model)[-1][0] if _conv_layers(model) else None
            if name is None:
                raise CLIError("show receptive: the model has no conv layer; pass --layer NAME")
        else:
            name = args.layer
            resolve_layer(model, name, op="show receptive")
        at = args.at
        if at is None:
            shape = next(a.array.shape for a in activations(model, x) if a.name == name)
            if len(shape) != 3:
                raise CLIError(f"show receptive: layer {name!r} outputs a vector; pick a layer with maps")
            at = (shape[0] // 2, shape[1] // 2)
        pictures.receptive_field_overlay(model, x, name, at, out)
        _say_input(source)
    print(out)
    return 0


def _say_input(source: dict) -> None:
    print(f"input: {source['description']}", file=sys.stderr)
    if source.get("note"):
        print(f"note: {source['note']}", file=sys.stderr)


# Registered with the CLI's plugin hook (featuremaps.cli imports every module of this package).
from ..cli import command  # noqa: E402

command("show", help=HELP, arguments=add_arguments, description=DESCRIPTION)(run)
