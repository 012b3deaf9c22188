"""The `featuremaps` command line: a thin argparse front end over the library.

    featuremaps train [MODEL] [--dataset NAME] [--epochs N] ... [--out RUN_DIR] [--resume RUN_DIR] [--json]
    featuremaps evaluate RUN_DIR|CHECKPOINT [--dataset NAME] [--split test] [--json]
    featuremaps predict CHECKPOINT IMAGE... [--top K] [--index N | --limit N] [--json]
    featuremaps summary MODEL|FILE [--input-shape H,W,C] [--arch NAME] [--json]
    featuremaps models [--json]
    featuremaps explain FILE --layer NAME --map O [--at ROW,COL] (--image FILE | --index N)
    featuremaps report FILE [--index N | --image FILE] [-o report.html]
    featuremaps show {kernels,maps,connections,receptive,curves} FILE -o OUT.png
    featuremaps convert IN OUT [--arch NAME] [--input-shape H,W,C] [--seed N]   # .npz .onnx .keras .safetensors
    featuremaps export RUN_OR_CHECKPOINT OUT.onnx [--opset 17]

Model files (FILE) are recognised by content (`featuremaps.load_model`): a checkpoint .npz, a run
directory, an ONNX file, a Keras .keras or legacy .h5 file, or a .safetensors file with `--arch NAME`
(the zoo model its weights belong to); explain, show and report take `--input-shape`, `--mean`/`--std`
and `--layout` for imported models (see `featuremaps.commands.inputs`).

Conventions shared by every subcommand: figures go to stdout (with `--json`: exactly one JSON
document), progress and notes to stderr. A user error (bad argument, missing file, unknown name)
prints one line `featuremaps: error: ...` to stderr and exits with code 2, without a traceback
(`--traceback` before the subcommand shows it). Ctrl-C exits with 130 (training saves first);
a training run whose loss turns non-finite exits with 1.

This module holds only the entry point, the parser and the registry. Each subcommand lives in its
own module of `featuremaps.commands` with `HELP`, `DESCRIPTION`, `add_arguments(parser)` and
`run(args) -> int`; what they share (CLIError, argparse types, JSON output, readers) is in
`featuremaps.commands._common`, and no command imports this module. Adding a subcommand: write its
module and add its name to `BUILTIN`; code outside the package can also register one with
`@command(name, help=..., arguments=add_arguments)`.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from .commands._common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, CLIError

__all__ = ["main", "command", "build_parser", "CLIError", "BUILTIN"]

# The subcommands, in the order `featuremaps --help` lists them: modules of featuremaps.commands.
BUILTIN = ("train", "evaluate", "predict", "summary", "models", "explain", "report", "show", "convert", "export")


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


def _builtin_commands() -> list[_Command]:
    """The subcommands of BUILTIN, imported explicitly (a fixed list, no package scan)."""
    found = []
    for name in BUILTIN:
        mod = importlib.import_module(f"featuremaps.commands.{name}")
        found.append(_Command(name, mod.HELP, mod.run, mod.add_arguments, mod.DESCRIPTION))
    return found


# An argument such as `--at -1,0` is a value, not an option: argparse only takes plain negative
# numbers (`-1`, `-0.5`) for values, so its matcher is widened to comma-separated ones.
_NEGATIVE_VALUE = re.compile(r"^-\d+(\.\d*)?(,\s*-?\d+(\.\d*)?)*$|^-\.\d+$")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `featuremaps: error: ... (see 'featuremaps train --help')`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_VALUE

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = _Parser(prog=PROG, description="Convolutional networks from first principles in NumPy: train, "
                     "evaluate and look inside them.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    extra = [c for name, c in _COMMANDS.items() if name not in BUILTIN]
    for c in [_COMMANDS.get(c.name, c) for c in _builtin_commands()] + extra:
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
        print("interrupted", file=sys.stderr, flush=True)
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
