"""`featuremaps convert IN.onnx OUT.npz [--input-shape H,W,C] [--mean ... --std ...] [--json]`.

Imports an ONNX file (`featuremaps.onnx.load`; the file is recognised by content, whatever its
name) and writes the model as a featuremaps checkpoint (`featuremaps.checkpoint.save_checkpoint`:
the model's config and weights, epoch 0, no optimiser state). The checkpoint's meta keeps the
import log, the ONNX tensor each node equals (`model.onnx_tensors`), the ONNX file's path and,
with `--mean`/`--std`, the input normalisation, so that `summary OUT.npz` still shows the log and
`explain`/`show`/`report` on OUT.npz prepare images without the flags. The import log is printed,
then what was written.
"""
from __future__ import annotations

from pathlib import Path

from ._common import CLIError, add_input_shape_arg, check_parent, open_model, print_json
from .inputs import numbers_or_preset, preprocessing

__all__ = ["add_arguments", "run"]

HELP = "import an ONNX file and write it as a featuremaps checkpoint (.npz)"
DESCRIPTION = ("Import an ONNX model (recognised by its content) as a featuremaps model and write it as a checkpoint "
               ".npz: the model config and weights, with the import log (every transform the import made, one line "
               "each) kept in the checkpoint's meta so that 'featuremaps summary OUT.npz' shows it again. Prints "
               "the import log and what it wrote. An existing OUT.npz is replaced.")


def add_arguments(p) -> None:
    p.add_argument("source", metavar="IN.onnx", help="the ONNX file (recognised by content, whatever its name)")
    p.add_argument("out", metavar="OUT.npz", help="the checkpoint file to write (must end in .npz)")
    add_input_shape_arg(p, help="per-example input shape, channels last; needed when the ONNX graph's input has "
                                "free dimensions (the checkpoint keeps the shape)")
    p.add_argument("--mean", type=numbers_or_preset("--mean"), default=None, metavar="M,M,M|imagenet",
                   help="store this input normalisation in the checkpoint (as in 'featuremaps explain --mean'), so "
                        "later commands apply it without the flag")
    p.add_argument("--std", type=numbers_or_preset("--std"), default=None, metavar="S,S,S|imagenet",
                   help="the stored std (as in 'featuremaps explain --std')")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON document")


def import_log_text(log: list, source) -> str:
    """The import log as `convert` prints it: a heading, then one line per step."""
    head = f"import log ({len(log)} step{'s' if len(log) != 1 else ''}, from {source}):"
    lines = [f"  {line}" for line in log] or ["  (empty: the import made no transforms)"]
    return "\n".join([head] + lines)


def run(args) -> int:
    from ..checkpoint import save_checkpoint
    from .._load import sniff
    src, out = Path(args.source), Path(args.out)
    if out.suffix.lower() != ".npz":
        raise CLIError(f"OUT must name a .npz file; received {args.out!r}")
    check_parent(out, "OUT")
    if src.exists() and sniff(src) != "onnx":
        raise CLIError(f"{src} is a featuremaps checkpoint or run directory already; convert reads ONNX files "
                       "(to write ONNX, use 'featuremaps export')")
    model, meta = open_model(src, input_shape=args.input_shape)
    log = meta.get("import_log") or []
    extra = {"onnx_path": str(src), "import_log": log, "model_name": meta.get("model_name", src.stem)}
    if "onnx_tensors" in meta:
        extra["onnx_tensors"] = meta["onnx_tensors"]
    norm = preprocessing(model, {}, args.mean, args.std).get("normalization")
    if norm is not None:
        extra["normalization"] = norm
    path = save_checkpoint(out, model, epoch=0, meta=extra, keep_previous=False)
    n_params = sum(int(p.size) for p in model.parameters())
    doc = {"source": str(src), "checkpoint": str(path), "model": type(model).__name__, "layers": len(model),
           "parameters": n_params, "input_shape": list(model.input_shape), "import_log": log,
           "bytes": path.stat().st_size, **({"normalization": norm} if norm else {})}
    if args.json:
        print_json(doc)
        return 0
    print(import_log_text(log, src))
    print(f"wrote {path}: a {doc['model']} of {doc['layers']} layers, {n_params:,} parameters, input "
          f"{'×'.join(map(str, doc['input_shape']))} (H×W×C), {doc['bytes'] / 1e6:.2f} MB")
    return 0
