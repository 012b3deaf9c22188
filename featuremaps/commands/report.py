"""`featuremaps report CHECKPOINT|ONNX [--index N | --image FILE] [-o report.html | --force]`.

Writes one self-contained HTML page (`featuremaps.report.build_report`) of the model's feature maps
for one input: the N-th image of the evaluation split (`--index`, default 0; the test split of the
checkpoint's dataset unless `--dataset/--split` say otherwise) or an image file (`--image`, read and
normalised exactly as `featuremaps predict` does; with an IDX file of many images `--index` picks one).
Without `-o` the page goes to ./report.html, which is never replaced unless `--force` is given.
An ONNX or Keras file (recognised by content) is imported first (a `.safetensors` file with
`--arch NAME`); `--input-shape`, `--mean`/`--std` and
`--layout` are as in `featuremaps explain`.

`add_parser` also registers it on any argparse `subparsers` object (the CLI itself lists it in its registry).
"""
from __future__ import annotations

import time
from pathlib import Path

from ._common import (MODEL_FILES, CLIError, add_arch_arg, add_data_args, add_index_arg, add_input_shape_arg,
                      check_default_output, check_parent, check_unit, nonneg_int, open_model, position)
from .inputs import add_preprocess_args

__all__ = ["add_parser", "add_arguments", "run"]

HELP = "write a self-contained HTML page of every layer's feature maps for one input"
DEFAULT_OUTPUT = "report.html"
DESCRIPTION = ("Write ONE self-contained HTML file (works offline, nothing external) that shows every layer's "
               "feature maps for one input. Click a map to see which input maps feed it and its kernels; click a "
               "pixel to see the sum that produced it, checked against featuremaps.inspect.explain.")


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT|ONNX",
                   help=MODEL_FILES)
    add_input_shape_arg(p)
    add_arch_arg(p)
    add_index_arg(p, "the N-th image of the evaluation split (default: 0), or of the --image IDX file")
    p.add_argument("--image", metavar="FILE", default=None,
                   help="a PNG/JPEG (needs Pillow) or IDX image file, or a .npy array (see --layout), instead of "
                        "the dataset; never resized: a wrong size is an error")
    p.add_argument("--invert", action="store_true", help="with --image: invert the pixels first (as predict)")
    add_preprocess_args(p)
    add_data_args(p, default_hint="the dataset the model was trained on")
    p.add_argument("--split", metavar="NAME", default=None,
                   help="the split --index reads: test, train, or val (the embedded sample's, offline); default: "
                        "the official test set if found offline, else the embedded sample's val split")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help=f"where to write the page (default: {DEFAULT_OUTPUT}, never overwritten without --force)")
    p.add_argument("--force", action="store_true", help=f"without -o: overwrite an existing {DEFAULT_OUTPUT}")
    p.add_argument("--title", default=None, help="the page's title (default: model and input)")
    p.add_argument("--layer", default=None, help="the layer the page opens on (default: the last conv layer)")
    p.add_argument("--map", metavar="M", type=nonneg_int, default=None,
                   help="with --layer: the map (or unit) to open on")
    p.add_argument("--position", metavar="ROW,COL", type=position, default=None,
                   help="with --layer and --map: the pixel to open on")


def add_parser(subparsers):
    """Register `report` on an argparse `subparsers` object (the CLI itself lists it in its registry)."""
    p = subparsers.add_parser("report", help=HELP, description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run, _run=run)
    return p


def _select(args):
    if args.layer is None:
        if args.map is not None or args.position is not None:
            raise CLIError("--map and --position need --layer")
        return None
    if args.map is None:
        if args.position is not None:
            raise CLIError("--position needs --map")
        return args.layer
    return (args.layer, args.map, args.position)


def _input(args, model, meta):
    """The page's input, read and normalised as `featuremaps predict` does (see commands.inputs)."""
    from . import inputs
    if args.image is not None:
        return inputs.image_file(model, meta, args.image, invert=args.invert, index=args.index, layout=args.layout)
    if args.invert or args.layout:
        raise CLIError(f"{'--invert' if args.invert else '--layout'} applies to --image only")
    return inputs.dataset_image(model, meta, args.index or 0, data_dir=args.data, dataset=args.dataset,
                                split=args.split)


def run(args) -> int:
    from ..report import build_report
    from . import inputs
    t0 = time.perf_counter()
    select = _select(args)
    out = Path(args.output or DEFAULT_OUTPUT)
    if out.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"-o must name an .html file; received {args.output!r}")
    check_parent(out, "-o")
    if args.output is None:
        check_default_output(out, "-o", args.force)
    model, meta = open_model(args.checkpoint, input_shape=args.input_shape, arch=args.arch)
    if args.layer is not None:
        check_unit(model, args.layer, args.map, args.position, op="report", at_flag="--position", at_required=False)
    meta = inputs.preprocessing(model, meta, args.mean, args.std)
    inp = _input(args, model, meta)
    if inp.classes is not None and not meta.get("classes"):
        meta = dict(meta, classes=inp.classes)
    name = meta.get("model_name") or meta.get("model", {}).get("class", "model")
    title = args.title or f"{name}: feature maps of {inp.source['description']}"
    path = build_report(model, inp.x, out, title=title, label=inp.label, meta=meta, select=select)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s); "
          f"open it in a browser, it needs no network")
    return 0

