"""`featuremaps convert IN OUT [--arch NAME] [--input-shape H,W,C] [--mean ... --std ...] [--seed N] [--json]`.

Moves a model between the file kinds featuremaps reads and writes, each recognised by content on
the way in (`featuremaps.load_model`) and chosen by OUT's suffix on the way out:

| OUT suffix     | written by                                  | read back by                          |
| `.npz`         | `featuremaps.checkpoint.save_checkpoint`    | `featuremaps.load_model`              |
| `.onnx`        | `featuremaps.onnx.export` (NCHW input)      | `featuremaps.onnx.load`               |
| `.keras`       | `featuremaps.keras.export` (Keras 3 file)   | `featuremaps.keras.load`              |
| `.safetensors` | `featuremaps.torch.export_state_dict`       | `load_state_dict` into the same layers |

A legacy Keras `.h5` is read but never written (Keras itself turns a `.keras` file into one). IN is
any model file: a checkpoint or run directory, an ONNX file, a Keras `.keras`/`.h5` file, or a
`.safetensors` file with `--arch NAME` (the zoo model its weights belong to).

It prints the import log of IN (every transform the import made, one line each), what it wrote
(and the export log, when the writer keeps one), the import log of OUT read back, and then checks
the conversion: `featuremaps.layouts.verify_conversion` runs IN's model (the reference) and OUT's
model read back on one seeded random probe and reports the maximum difference and, if they diverge,
the first layer where they do. A checkpoint keeps the import log, the ONNX tensor names, the source
path and, with `--mean`/`--std`, the input normalisation in its meta, so that `summary OUT.npz`
shows the log again and `explain`/`show`/`report` prepare images without the flags. An existing
OUT is replaced. Exit code 1 when the read-back model does not agree with the source.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import (EXIT_FAILED, CLIError, add_arch_arg, add_input_shape_arg, check_parent, error_line,
                      nonneg_int, open_model, print_json)
from .inputs import numbers_or_preset, preprocessing

__all__ = ["add_arguments", "run", "TARGETS", "import_log_text"]

HELP = "convert a model between ONNX, Keras (.keras; .h5 read only), safetensors and featuremaps checkpoints"
DESCRIPTION = ("Convert a model file IN into OUT (e.g. IN.onnx OUT.npz, or IN.h5 OUT.keras). IN is recognised by "
               "content: a checkpoint .npz or run directory, ONNX, Keras .keras or legacy .h5, or .safetensors with "
               "--arch. OUT's suffix picks the format: .npz (a featuremaps checkpoint that keeps the import log), "
               ".onnx, .keras or .safetensors (.h5 is read only). Prints the import log, what it wrote, and the "
               "maximum difference between the source and OUT read back on a seeded random probe "
               "(verify_conversion), with the first diverging layer if they disagree. An existing OUT is replaced.")
TARGETS = {".npz": "checkpoint", ".onnx": "onnx", ".keras": "keras", ".safetensors": "safetensors"}
_READ_ONLY = (".h5", ".hdf5")
_EXTRAS = {"onnx": "onnx", "keras": "keras", "safetensors": "torch", "checkpoint": None}
DEFAULT_SEED = 0


def add_arguments(p) -> None:
    p.add_argument("source", metavar="IN",
                   help="the model file to convert: ONNX, Keras .keras/.h5, .safetensors (with --arch), a checkpoint "
                        ".npz or a run directory (recognised by content, whatever its name)")
    p.add_argument("out", metavar="OUT",
                   help="the file to write: .npz (featuremaps checkpoint), .onnx, .keras or .safetensors")
    add_input_shape_arg(p, help="per-example input shape, channels last; needed when the ONNX graph's input has "
                                "free dimensions (the checkpoint keeps the shape)")
    add_arch_arg(p)
    p.add_argument("--mean", type=numbers_or_preset("--mean"), default=None, metavar="M,M,M|imagenet",
                   help="store this input normalisation in the checkpoint (as in 'featuremaps explain --mean'), so "
                        "later commands apply it without the flag (OUT.npz only)")
    p.add_argument("--std", type=numbers_or_preset("--std"), default=None, metavar="S,S,S|imagenet",
                   help="the stored std (as in 'featuremaps explain --std')")
    p.add_argument("--seed", type=nonneg_int, default=DEFAULT_SEED, metavar="N",
                   help=f"seed of the random probe the conversion is verified on (default: {DEFAULT_SEED})")
    p.add_argument("--json", action="store_true", help="print what was written and verified as one JSON document")


def import_log_text(log: list, source) -> str:
    """The import log as `convert` prints it: a heading, then one line per step."""
    head = f"import log ({len(log)} step{'s' if len(log) != 1 else ''}, from {source}):"
    lines = [f"  {line}" for line in log] or ["  (empty: the import made no transforms)"]
    return "\n".join([head] + lines)


def _target_kind(out: Path, src: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in _READ_ONLY:
        raise CLIError(f"featuremaps reads legacy Keras {suffix} files but does not write them; received OUT "
                       f"{str(out)!r}: write OUT.keras instead (Keras 3 loads it, and its model.save('m.h5') makes "
                       f"an .h5)")
    if suffix not in TARGETS:
        raise CLIError(f"OUT must name a .npz, .onnx, .keras or .safetensors file; received {str(out)!r}")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise CLIError(f"IN and OUT are the same file ({src}); write the conversion to another path")
    return TARGETS[suffix]


# --- writing and reading back ------------------------------------------------------------------------
def _write(kind: str, model, out: Path, meta: dict, extra: dict) -> list[str]:
    """Write `model` as `kind` to `out`; the writer's log lines (export log), if it keeps one."""
    if kind == "checkpoint":
        from ..checkpoint import save_checkpoint
        save_checkpoint(out, model, epoch=0, meta=extra, keep_previous=False)
        return []
    try:
        if kind == "onnx":
            from .. import onnx as fm_onnx
            fm_onnx.export(model, out, overwrite=True)
        elif kind == "keras":
            from .. import keras as fm_keras
            fm_keras.export(model, out, overwrite=True)
        else:
            from .. import torch as fm_torch
            fm_torch.export_state_dict(model, out)
    except ImportError as e:
        raise CLIError(f"writing {out} needs the {_EXTRAS[kind]} extra: pip install "
                       f"'featuremaps[{_EXTRAS[kind]}]' ({e})") from None
    return [str(line) for line in getattr(model, "export_log", None) or []]


def _read_back(kind: str, out: Path, source_model):
    """The model in the file just written, read as any user would read it. A safetensors file has
    weights only: they are loaded into a fresh copy of the source's layers (its config)."""
    from .._load import load_model
    if kind != "safetensors":
        return load_model(out)
    from ..nn import from_config
    from ..torch import load_state_dict
    fresh = from_config(source_model.get_config())
    fresh.import_log = []
    load_state_dict(fresh, str(out))
    return fresh.eval()


# --- verifying -----------------------------------------------------------------------------------------
def probe_for(model, seed: int):
    """A seeded standard-normal batch of one in `model`'s input shape (a dict for several inputs)."""
    rng = np.random.default_rng([seed, 11])
    shapes = getattr(model, "input_shapes", None)
    names = list(getattr(model, "input_names", None) or [])
    if isinstance(shapes, dict) and len(shapes) > 1:
        return {n: rng.standard_normal((1, *shapes[n])).astype(np.float32) for n in names or shapes}
    shape = tuple(getattr(model, "input_shape", None) or ())
    if not shape or any(d is None for d in shape):
        raise CLIError("the model has no fixed input shape, so no probe can be made; pass --input-shape H,W,C")
    return rng.standard_normal((1, *shape)).astype(np.float32)


def _reference(source_model, target_model):
    """The source as `verify_conversion`'s reference: its final output, and its activations under the
    names the target also has (with the same shape), so that a divergence is traced to its layer."""
    from ..inspect.activations import _run
    from ..nn.graph import model_nodes
    wanted = {n.name for n in model_nodes(target_model)}

    def fn(x):
        acts = _run(source_model, x)
        ref = {a.name: a.array for a in acts[:-1] if a.name in wanted}
        ref["output"] = acts[-1].array
        return ref
    return fn


def verify(source_model, target_model, probe) -> dict:
    """`featuremaps.layouts.verify_conversion` with the source as the reference: a JSON-able summary."""
    from ..layouts import verify_conversion
    res = verify_conversion(_reference(source_model, target_model), target_model, probe)
    return {"max_difference": float(res.max_diff), "agrees": bool(res.ok),
            "first_diverging_layer": res.first_divergent, "rtol": float(res.rtol),
            "checked": [c.line() for c in res.checked]}


# --- the command ---------------------------------------------------------------------------------------
def _checkpoint_meta(model, meta: dict, src: Path, args) -> dict:
    """What a checkpoint written by convert keeps: the import's log and tensor names, the source, and
    with --mean/--std the normalisation."""
    extra = {"source_path": str(src), "source_format": meta.get("source", "checkpoint"),
             "import_log": list(meta.get("import_log") or []),
             "model_name": meta.get("model_name", src.stem)}
    if meta.get("source") == "onnx":
        extra["onnx_path"] = str(src)
    for key in ("onnx_tensors", "normalization", "dataset", "classes", "arch"):
        if key in meta:
            extra[key] = meta[key]
    norm = preprocessing(model, {}, args.mean, args.std).get("normalization")
    if norm is not None:
        extra["normalization"] = norm
    return extra


def run(args) -> int:
    src, out = Path(args.source), Path(args.out)
    kind = _target_kind(out, src)
    check_parent(out, "OUT")
    if kind != "checkpoint" and (args.mean is not None or args.std is not None):
        raise CLIError(f"--mean/--std are stored in a featuremaps checkpoint only; OUT {str(out)!r} is "
                       f"{'an' if kind == 'onnx' else 'a'} {kind} file: drop them, or write OUT.npz")
    model, meta = open_model(src, input_shape=args.input_shape, arch=args.arch)
    log = [str(line) for line in meta.get("import_log") or getattr(model, "import_log", None) or []]
    probe = probe_for(model, args.seed)  # before writing: a model without a shape fails with nothing written
    written_log = _write(kind, model, out, meta, _checkpoint_meta(model, meta, src, args))
    back = _read_back(kind, out, model)
    back_log = [str(line) for line in getattr(back, "import_log", None) or []]
    check = verify(model, back, probe)
    n_params = sum(int(p.size) for p in model.parameters())
    shape = list(getattr(model, "input_shape", None) or [])
    doc = {"source": str(src), "source_kind": meta.get("source", "checkpoint"), "out": str(out), "format": kind,
           "model": type(model).__name__, "layers": len(model), "parameters": n_params, "input_shape": shape,
           "import_log": log, "export_log": written_log, "read_back_log": back_log, "bytes": out.stat().st_size,
           "verify": {"seed": args.seed, "probe": "standard normal, batch of one", **check}}
    if kind == "checkpoint":
        doc["checkpoint"] = str(out)
    if args.json:
        print_json(doc)
    else:
        _print(doc, src, out)
    if not check["agrees"]:
        where = check["first_diverging_layer"]
        error_line(f"convert: {out} read back does not agree with {src}: max |difference| "
                   f"{check['max_difference']:.3g}" + (f", first at layer {where!r}" if where else ""))
        return EXIT_FAILED
    return 0


def _print(doc: dict, src: Path, out: Path) -> None:
    print(import_log_text(doc["import_log"], src))
    what = {"checkpoint": "a featuremaps checkpoint", "onnx": "an ONNX model (NCHW input)",
            "keras": "a Keras 3 .keras file", "safetensors": "a safetensors state dict (torch layouts)"}[doc["format"]]
    print(f"wrote {out}: {what}; a {doc['model']} of {doc['layers']} layers, {doc['parameters']:,} parameters, "
          f"input {'×'.join(map(str, doc['input_shape']))} (H×W×C), {doc['bytes'] / 1e6:.2f} MB")
    if doc["export_log"]:
        print(f"export log ({len(doc['export_log'])} step{'s' if len(doc['export_log']) != 1 else ''}):")
        print("\n".join(f"  {line}" for line in doc["export_log"]))
    if doc["format"] != "checkpoint":
        print(import_log_text(doc["read_back_log"], f"{out}, read back"))
    v = doc["verify"]
    verdict = "agrees" if v["agrees"] else "DIVERGES"
    where = f", first diverging layer {v['first_diverging_layer']!r}" if v["first_diverging_layer"] else ""
    print(f"verified on a random probe (seed {v['seed']}): {out.name} read back {verdict} with {src.name}, "
          f"max |difference| = {v['max_difference']:.3g}{where}")
