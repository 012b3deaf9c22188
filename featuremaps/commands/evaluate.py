"""`featuremaps evaluate RUN_DIR|CHECKPOINT [--dataset NAME] [--split test] [--json]`.

Accuracy, loss and the confusion matrix of a trained model (`featuremaps.train.evaluate`) on a split
of its dataset, normalised with the checkpoint's stored normalisation.
"""
from __future__ import annotations

from ._common import (CLIError, add_arch_arg, add_data_args, check_input_shape, data_seed, limit, load, open_model, pct,
                      positive_int, print_json, source_name)

__all__ = ["add_arguments", "run"]

HELP = "accuracy, loss and confusion matrix of a trained model"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT", help="a run directory or a checkpoint .npz file (or "
                   "any model file featuremaps reads: ONNX, Keras, safetensors with --arch)")
    add_arch_arg(p)
    add_data_args(p, default_hint="the dataset the model was trained on")
    p.add_argument("--split", metavar="NAME", default="test",
                   help="which split to evaluate: test (default; for MNIST the official 10,000 t10k images), "
                        "train, or val (sample only)")
    p.add_argument("--batch-size", metavar="N", type=positive_int, default=256, help="default: 256")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document")


def run(args) -> int:
    from .. import train
    model, meta = open_model(args.checkpoint, shape_flag=False, arch=args.arch)
    ds_name = args.dataset or meta.get("dataset")
    if ds_name is None:
        raise CLIError("the checkpoint does not say which dataset it was trained on; give --dataset")
    ds = limit(load(ds_name, args.split, args.data, seed=data_seed(meta, ds_name)), args.limit, 0)
    check_input_shape(model, ds, meta.get("model_name", meta.get("model", {}).get("class", "model")))
    norm = meta.get("normalization") or train.normalization_for(ds)
    res = train.evaluate(model, ds, batch_size=args.batch_size, normalization=norm)
    doc = {"accuracy": res["accuracy"], "loss": res["loss"], "n": res["n"],
           "dataset": source_name(ds_name, args.split), "split": args.split, "trained_on": meta.get("dataset"),
           "checkpoint": meta["path"], "epoch": meta.get("epoch"), "classes": list(ds.classes),
           "confusion": res["confusion"], "per_class_accuracy": res["per_class_accuracy"]}
    if args.json:
        print_json(doc)
        return 0
    what = "MNIST official test set" if (ds_name, args.split) == ("sample", "test") else f"{ds_name} {args.split}"
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    print(f"{what}: accuracy {pct(res['accuracy'])}  loss {res['loss']:.4f}  ({res['n']:,} images; "
          f"{meta['path']}{epoch})")
    print(confusion_text(res["confusion"], ds.classes))
    return 0


def confusion_text(conf, classes) -> str:
    labels = [str(c)[:7] for c in classes]
    w = max(max(len(str(v)) for row in conf for v in row), max(len(lab) for lab in labels), 3)
    lw = max(len(lab) for lab in labels)
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (lw + 2) + " ".join(f"{lab:>{w}}" for lab in labels) + "   recall"]
    for lab, row in zip(labels, conf):
        total = sum(row)
        rec = row[labels.index(lab)] / total if total else float("nan")
        lines.append(f"{lab:>{lw}}  " + " ".join(f"{v:>{w}}" for v in row) + f"   {100 * rec:5.1f}%")
    return "\n".join(lines)
