"""`featuremaps summary MODEL|CHECKPOINT [--input-shape H,W,C] [--json]`: the per-layer table of
`featuremaps.inspect.summary` (shapes, parameters, costs), computed without running the model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import EXIT_USAGE, PROG, CLIError, open_checkpoint, print_json

__all__ = ["add_arguments", "run"]

HELP = "per-layer table of shapes, parameters and costs"
DESCRIPTION = None


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").replace("×", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 28,28,1); received {text!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes H,W,C (e.g. 28,28,1); received {text!r}")
    return shape


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL|CHECKPOINT", help="a model name (see 'featuremaps models'), "
                   "a checkpoint .npz file or a run directory")
    p.add_argument("--input-shape", type=parse_shape, default=None, metavar="H,W,C",
                   help="per-example input shape (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON document")


def run(args) -> int:
    from .. import models
    from ..inspect import summary
    target = args.model
    if target in models.names():
        model = models.get(target)
    elif Path(target).exists():
        model = open_checkpoint(target)[0]
    else:
        raise CLIError(f"{target!r} is neither a model name ({', '.join(models.names())}) nor an existing "
                       "checkpoint or run directory")
    s = summary(model, args.input_shape)
    if args.json:
        print_json(s.to_dict())
    else:
        print(s)
    if getattr(s, "error", None):
        if not args.json:
            print(f"{PROG}: error: {s.error}", file=sys.stderr)
        return EXIT_USAGE
    return 0
