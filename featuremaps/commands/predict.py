"""`featuremaps predict CHECKPOINT IMAGE... [--top K] [--invert] [--index N | --limit N] [--json]`.

Classifies PNG/JPEG or IDX images with a trained model, each prepared with the checkpoint's stored
normalisation and checked against the model's input shape (never resized). A file that cannot be
read gets one error line and does not stop the others; the exit code is 2 if any file failed. An
image whose border is mostly bright, shown to a model trained on light-on-dark digits, gets a note
pointing to `--invert`.
"""
from __future__ import annotations

import numpy as np

from ._common import (EXIT_USAGE, CLIError, add_arch_arg, dark_on_light_note, error_line, model_input_shape, nonneg_int,
                      note, open_model, positive_int, print_json, read_images)

__all__ = ["add_arguments", "run"]

HELP = "classify images with a trained model"
DESCRIPTION = None
_MANY = 100  # an IDX file with more images than this gets a note about --limit/--index


def add_arguments(p) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint .npz file or a run directory (or any model "
                   "file featuremaps reads: ONNX, Keras, safetensors with --arch)")
    add_arch_arg(p)
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG/JPEG files (needs Pillow; colour is converted to the model's channels) or IDX "
                        "files (e.g. t10k-images-idx3-ubyte[.gz]); each image must already have the model's "
                        "height and width (28×28 for the MNIST models): nothing is resized")
    p.add_argument("--top", metavar="K", type=positive_int, default=3,
                   help="how many classes to list per image (default: 3)")
    p.add_argument("--invert", action="store_true",
                   help="invert the pixels first (MNIST digits are light on dark; use for dark-on-light drawings)")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--index", metavar="N", type=nonneg_int, default=None,
                      help="only image N of each file (IDX files hold many; a PNG/JPEG is image 0)")
    pick.add_argument("--limit", metavar="N", type=positive_int, default=None,
                      help="only the first N images of each file")
    p.add_argument("--json", action="store_true", help="print the predictions as one JSON document")


def _pick(images: np.ndarray, names: list[str], path: str, args):
    """The images of one file that --index/--limit select."""
    n = len(images)
    if args.index is not None:
        if args.index >= n:
            held = "1 image (index 0)" if n == 1 else f"{n:,} images (indices 0 to {n - 1})"
            raise CLIError(f"--index {args.index} is outside {path}, which holds {held}")
        return images[args.index:args.index + 1], [names[args.index] if n > 1 else names[0]]
    if args.limit is not None:
        return images[:args.limit], names[:args.limit]
    if n > _MANY and not args.json:
        note(f"note: {path} holds {n:,} images; --limit N or --index N predicts fewer")
    return images, names


def _read_all(args, expect, meta) -> tuple[list, list, list]:
    """Every file's selected images, names and the per-file errors (each already printed)."""
    batches, names, errors = [], [], []
    for path in args.images:
        try:
            images, n = _pick(*read_images(path, expect), path, args)
        except CLIError as e:
            error_line(str(e))
            errors.append({"input": str(path), "error": str(e)})
            continue
        if args.invert:
            images = 255 - images
        hint = dark_on_light_note(images, str(path), meta, args.invert)
        if hint:
            note(f"note: {hint}")
        batches.append(images)
        names += n
    return batches, names, errors


def _predictions(model, meta, images, names, top: int) -> list[dict]:
    from .. import functional as F, train
    logits = train.predict_logits(model, images, normalization=meta.get("normalization"))
    probs = np.asarray(F.softmax(logits.astype(np.float64), axis=-1))
    classes = meta.get("classes") or [str(i) for i in range(probs.shape[1])]
    k = min(top, probs.shape[1])
    preds = []
    for name, pr in zip(names, probs):
        order = np.argsort(-pr, kind="stable")[:k]
        best = [{"label": int(j), "class": classes[j], "probability": float(pr[j])} for j in order]
        preds.append({"input": name, "label": best[0]["label"], "class": best[0]["class"],
                      "probability": best[0]["probability"], "top": best})
    return preds


def run(args) -> int:
    model, meta = open_model(args.checkpoint, shape_flag=False, arch=args.arch)
    batches, names, errors = _read_all(args, model_input_shape(model), meta)
    preds = _predictions(model, meta, np.concatenate(batches), names, args.top) if batches else []
    if args.json:
        print_json({"checkpoint": meta["path"], "predictions": preds, "errors": errors})
    else:
        for p in preds:
            alts = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in p["top"][1:])
            print(f"{p['input']}: {p['class']} ({100 * p['probability']:.1f}%)" + (f"  then {alts}" if alts else ""))
    return EXIT_USAGE if errors else 0
