"""`featuremaps export RUN_OR_CHECKPOINT OUT.onnx [--opset 17] [--json]`.

Writes the model of a run directory or checkpoint (any featuremaps `Sequential` or `Graph`) as an
ONNX file with `featuremaps.onnx.export` (needs the `onnx` extra). The file's input is NCHW, as
ONNX models are; a batch dimension is left free. Says what it wrote: the file, its size, the opset,
and the graph's inputs and outputs with their shapes, read back from the written file, then the
export log (one line per layer whose ONNX form needed more than one node or a layout change).
"""
from __future__ import annotations

from pathlib import Path

from ._common import CLIError, add_input_shape_arg, check_parent, open_model, positive_int, print_json

__all__ = ["add_arguments", "run"]

HELP = "write the model of a run or checkpoint as an ONNX file"
DESCRIPTION = ("Write the model of a run directory or checkpoint as an ONNX file (needs the onnx package: pip install "
               "'featuremaps[onnx]'), with NCHW inputs as ONNX models have. onnxruntime and other ONNX tools run "
               "it; 'featuremaps summary OUT.onnx' reads it back. An existing OUT.onnx is replaced.")
DEFAULT_OPSET = 17


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="a run directory or a checkpoint .npz file (recognised by content)")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write (must end in .onnx)")
    p.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, metavar="N",
                   help=f"the ONNX opset to write: 13 up to the installed onnx package's newest (default: "
                        f"{DEFAULT_OPSET})")
    add_input_shape_arg(p, help="per-example input shape H,W,C, for a model saved without one (default: the "
                                "model's own)")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON document")


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _written(path: Path) -> dict:
    """What the ONNX file at `path` holds: opset, node count, inputs and outputs with their dims."""
    from ..onnx._loader import parse
    m = parse(str(path))[0]
    g = m.graph
    inits = {t.name for t in g.initializer}
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "nodes": len(g.node),
            "inputs": [{"name": i.name, "shape": _dims(i)} for i in g.input if i.name not in inits],
            "outputs": [{"name": o.name, "shape": _dims(o)} for o in g.output]}


def _shape(dims) -> str:
    return "×".join(str(d) for d in dims)


def run(args) -> int:
    from .. import onnx as fm_onnx
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise CLIError(f"OUT must name an .onnx file; received {args.out!r}")
    check_parent(out, "OUT")
    model, meta = open_model(args.checkpoint, shape_flag=False)
    try:
        fm_onnx.export(model, out, opset=args.opset, input_shape=args.input_shape, overwrite=True)
    except ImportError as e:
        raise CLIError(f"export needs the onnx package: pip install 'featuremaps[onnx]' ({e})") from None
    log = [str(line) for line in getattr(model, "export_log", None) or []]
    doc = {"checkpoint": str(meta.get("path", args.checkpoint)), "onnx": str(out), "bytes": out.stat().st_size,
           **_written(out), "export_log": log}
    if args.json:
        print_json(doc)
        return 0
    ins = ", ".join(f"{i['name']!r} {_shape(i['shape'])}" for i in doc["inputs"])
    outs = ", ".join(f"{o['name']!r} {_shape(o['shape'])}" for o in doc["outputs"])
    print(f"wrote {out} ({doc['bytes'] / 1e6:.2f} MB, opset {doc['opset']}, {doc['nodes']} nodes): "
          f"input {ins} (NCHW), output {outs}")
    if log:
        print(f"export log ({len(log)} step{'s' if len(log) != 1 else ''}):")
        print("\n".join(f"  {line}" for line in log))
    return 0
