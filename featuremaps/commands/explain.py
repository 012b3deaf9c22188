"""`featuremaps explain CHECKPOINT|ONNX --layer NAME --map O [--at ROW,COL] (--image FILE | --index N) [--json]`.

Prints how one value of a trained model is computed (`featuremaps.inspect.explain`): for a conv
layer, one row per input map that feeds output map O — the window of that map the kernel sees at
(ROW, COL), its dot product with the kernel — then the bias, the total, the engine's own value and
the activation/pooling that follow. Dense layers take no `--at`.

The input is an image file (`--image`: PNG/JPEG or IDX, prepared exactly as `featuremaps predict`
prepares it, with the checkpoint's normalisation) or the N-th image of the evaluation set
(`--index N`): the official test set of the checkpoint's dataset when it can be found without
downloading, else (MNIST models) the embedded sample's validation split; the output says which.
An ONNX file (recognised by content) is imported first (`featuremaps.onnx.load`; `--input-shape`
when its input has free dimensions), and so are Keras `.keras`/`.h5` files and, with `--arch NAME`,
`.safetensors` weights; `--mean`/`--std` and `--layout` prepare its input (see
`featuremaps.commands.inputs`).
"""
from __future__ import annotations

import sys

from ._common import (MODEL_FILES, CLIError, add_arch_arg, add_index_arg, add_input_shape_arg, check_unit,
                      nonneg_int, open_model, position, print_json)
from .inputs import add_preprocess_args

__all__ = ["add_arguments", "run"]

HELP = "show how one output value of a layer is computed from the maps before it"
DESCRIPTION = ("Decompose one value of a trained model: for output map O of a conv layer at (ROW, COL), one row per "
               "connected input map with the window the kernel sees and its dot product with the kernel, then the "
               "bias, the total, the engine's own value (they must agree) and the activation and pooling after it. "
               "Dense layers: the largest contributions x_i·w_i. Pooling layers: the window and its winner.")


def add_arguments(p) -> None:
    """Declare the options of `explain` on an argparse parser."""
    p.add_argument("checkpoint", metavar="CHECKPOINT|ONNX",
                   help=MODEL_FILES)
    add_input_shape_arg(p)
    add_arch_arg(p)
    p.add_argument("--layer", required=True, metavar="NAME", help="the layer's name (see 'featuremaps summary')")
    p.add_argument("--map", required=True, type=nonneg_int, metavar="O", dest="out_map",
                   help="the output map (conv/pool layers) or output unit (dense layers)")
    p.add_argument("--at", type=position, metavar="ROW,COL", default=None,
                   help="the position in the map (conv/pool layers; omit for dense layers)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", metavar="FILE", help="a PNG/JPEG or IDX image, prepared as 'featuremaps predict' "
                     "does, or a .npy array (see --layout); never resized: a wrong size is an error")
    add_index_arg(p, "the N-th image of the official test set (else the embedded sample's val split)", group=src)
    p.add_argument("--invert", action="store_true", help="with --image: invert the pixels first (as in predict)")
    add_preprocess_args(p)
    p.add_argument("--data", metavar="DIR", default=None, help="with --index: folder with the dataset's files")
    p.add_argument("--windows", action="store_true", help="also print every window and kernel as numbers")
    p.add_argument("--top", type=int, metavar="K", default=None,
                   help="rows to show before summing the rest (default: all conv maps up to 32; 10 for dense)")
    p.add_argument("--format", choices=("text", "markdown", "latex"), default="text",
                   help="text (default), markdown or latex")
    p.add_argument("--json", action="store_true", help="print the explanation as one JSON document")


def run(args) -> int:
    """Load the model, prepare the input, explain the value and print it."""
    from ..inspect import explain
    from . import inputs

    model, meta = open_model(args.checkpoint, input_shape=args.input_shape, arch=args.arch)
    check_unit(model, args.layer, args.out_map, args.at, op="explain")  # fails before any data is read
    meta = inputs.preprocessing(model, meta, args.mean, args.std)
    if args.image is not None:
        x, source = inputs.image_file(model, meta, args.image, invert=args.invert, layout=args.layout)[::3]
    else:
        if args.invert or args.layout:
            raise CLIError(f"{'--invert' if args.invert else '--layout'} applies to --image only")
        x, source = inputs.dataset_image(model, meta, args.index, data_dir=args.data)[::3]
    e = explain(model, x, args.layer, args.out_map, args.at)
    if args.json:
        print_json({"checkpoint": str(meta.get("path", args.checkpoint)), "input": source, "explanation": e.to_dict()})
    else:
        top = -1 if args.top is None else args.top
        print(f"input: {source['description']}")
        if source.get("note"):
            print(f"note: {source['note']}", file=sys.stderr)
        if args.format == "markdown":
            print(e.to_markdown(top=top), end="")
        elif args.format == "latex":
            print(e.to_latex(top=top), end="")
        else:
            print(e.to_text(top=top, windows=args.windows))
    if not e.agrees:
        print(f"featuremaps: the recomputed value differs from the engine's by {e.difference:.3g} "
              f"(tolerance {e.tolerance:.0e})", file=sys.stderr)
        return 1
    return 0
