"""`featuremaps summary MODEL|FILE [--input-shape H,W,C] [--arch NAME] [--json]`: the per-layer table of
`featuremaps.inspect.summary` (shapes, parameters, costs), computed without running the model.

For a model imported from another framework (an ONNX, Keras or safetensors file itself, or a checkpoint
`featuremaps convert` wrote)
the import log follows the table: one line per transform the import made (`model.import_log`,
which `featuremaps.load_model` restores from a converted checkpoint's meta)."""
from __future__ import annotations

import sys
from pathlib import Path

from ._common import EXIT_USAGE, PROG, CLIError, add_arch_arg, add_input_shape_arg, open_model, print_json

__all__ = ["add_arguments", "run"]

HELP = "per-layer table of shapes, parameters and costs"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL|CHECKPOINT|ONNX", help="a model name (see 'featuremaps models'), "
                   "a checkpoint .npz file, a run directory, an ONNX file, a Keras .keras/.h5 file or a "
                   ".safetensors file with --arch (files are recognised by content)")
    add_input_shape_arg(p)
    add_arch_arg(p)
    p.add_argument("--json", action="store_true", help="print the table as one JSON document")


def run(args) -> int:
    from .. import models
    from ..inspect import summary
    target = args.model
    if target in models.names() and not Path(target).exists():
        if args.arch is not None:
            raise CLIError(f"--arch is for .safetensors files; {target!r} is a zoo model name, so drop --arch")
        model = models.get(target)
    elif Path(target).exists():
        model = open_model(target, input_shape=args.input_shape, reshape_ok=True, arch=args.arch)[0]
    else:
        raise CLIError(f"{target!r} is neither a model name ({', '.join(models.names())}) nor an existing "
                       "checkpoint, run directory, ONNX, Keras or safetensors file")
    s = summary(model, args.input_shape)  # an imported model's import_log is part of it
    if args.json:
        print_json(s.to_dict())
    else:
        print(s)
    if getattr(s, "error", None):
        if not args.json:
            print(f"{PROG}: error: {s.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0
