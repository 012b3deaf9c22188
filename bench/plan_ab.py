"""Does the fused inference plan pay on LeNet? An in-process A/B of three ways to run the forward.

    python bench/plan_ab.py [--model lenet] [--weights W.npz] [--passes 3] [--json]
    python bench/plan_ab.py --onnx resnet18 [--batch 8] [--batches 100]

Modes, all in one process on the official 10,000 MNIST test images at batch 64 (no autograd), or
with --onnx on `bench/inference.py`'s model of that name (exported from torch, or one of the ONNX
package's classic graphs) loaded with `featuremaps.onnx.load`, on one seeded random batch run
--batches times per pass:
- plan: the default with numba, `featuremaps.nn.fused`'s conv + bias + activation + max-pool groups;
- layers: numba on, the plan switched off, every layer run as itself;
- numpy: numba off (FEATUREMAPS_NUMBA=0's path), which also has no plan.

Why one process and per-batch interleaving: timing each mode over a whole pass, one mode after
another, measured the plan 7–9% slower than the other two (2026-12-04), yet the same comparison
interleaved batch by batch had it 4% faster. On these VMs a stretch of seconds can run 2–3× slower
than the next (perf-notes), so pass-level blocks compare the machine's moods, not the modes. Here
every batch runs once in each mode, in an order that alternates batch to batch, so a slow stretch
hits the three alike. Per pass, each mode's images/s is the batches it ran over the time they took;
the ratios reported are the medians over passes of plan/layers and plan/numpy (> 1: the plan is faster).
Pass 1 includes numba's first compile (or cache load) and is dropped when there is more than one.
--weights loads a checkpoint's state dict (`bench/train_mnist.py` saves one per speed round), since
speed can depend on the data and on the trained weights; without it the zoo's seeded init is used.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from unittest import mock

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from train_mnist import BATCH, SEED, _blas_info, _load  # noqa: E402  (the same data and seed)

MODES = ("plan", "layers", "numpy")


def _model(name: str, weights: str | None):
    from featuremaps import models
    model = models.get(name, rng=np.random.default_rng(SEED))
    if weights:
        with np.load(weights) as z:
            model.load_state_dict({k: z[k] for k in z.files})
    return model.eval()


def _run(model, batch: np.ndarray, mode: str) -> float:
    """Seconds for one forward of `batch` in `mode`."""
    from featuremaps import Tensor
    from featuremaps.functional import accel
    from featuremaps.nn import fused
    accel.use_numba(mode != "numpy")
    with mock.patch.object(fused, "applies", (lambda: False) if mode == "layers" else fused.applies):
        t0 = time.perf_counter()
        model(Tensor(batch))
        return time.perf_counter() - t0


def _onnx_model(name: str, batch: int):
    """(`bench/inference.py`'s model `name` at `batch`, loaded with featuremaps.onnx.load, its NHWC input)."""
    import tempfile

    from featuremaps.onnx import load
    from inference import _fm_feeds, write_model
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(name, batch, tmp)
        (x,) = _fm_feeds(path).values()
        model = load(path)
    return model.eval(), np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (n, c, h, w) -> (n, h, w, c)


def measure(model, batches: list, passes: int) -> list[dict]:
    """Per pass, each mode's images/s over `batches` (module docstring)."""
    from featuremaps import no_grad
    images = sum(len(b) for b in batches)
    out = []
    with no_grad():
        for _ in range(passes):
            spent = dict.fromkeys(MODES, 0.0)
            for i, b in enumerate(batches):
                for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                    spent[mode] += _run(model, b, mode)
            out.append({mode: images / s for mode, s in spent.items()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet", help="a zoo model for 28×28 grey input (default lenet)")
    ap.add_argument("--weights", help="an .npz state dict to load into the model")
    ap.add_argument("--onnx", metavar="NAME", help="instead: bench/inference.py's model NAME (e.g. resnet18)")
    ap.add_argument("--batch", type=int, default=8, help="with --onnx: the batch size (default 8)")
    ap.add_argument("--batches", type=int, default=100, help="with --onnx: batches per pass (default 100)")
    ap.add_argument("--passes", type=int, default=3, help="passes over the test set (default 3; the first is dropped)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    for flag in ("passes", "batch", "batches"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be at least 1; received {getattr(args, flag)}")
    from featuremaps import train
    from featuremaps.functional import accel
    if not accel.numba_available():
        print(f"plan_ab: needs the fast extra (numba): {accel.numba_unavailable_reason()}", file=sys.stderr)
        return 2
    if args.onnx:
        model, x = _onnx_model(args.onnx, args.batch)
        batches, name = [x] * args.batches, args.onnx
    else:
        train_ds, test_ds = _load(None)
        x = train.normalize_images(test_ds.images, train.normalization_for(train_ds))
        model, name = _model(args.model, args.weights), args.model
        batches = [np.ascontiguousarray(x[lo:lo + BATCH]) for lo in range(0, len(x), BATCH)]
    rounds = measure(model, batches, args.passes)
    kept = rounds[1:] if len(rounds) > 1 else rounds
    result = {"model": name, "blas": _blas_info(), "passes": rounds,
              "plan_over_layers": statistics.median(r["plan"] / r["layers"] for r in kept),
              "plan_over_numpy": statistics.median(r["plan"] / r["numpy"] for r in kept)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"BLAS: {result['blas']}")
    for i, r in enumerate(rounds, 1):
        print(f"pass {i}{' (dropped)' if len(rounds) > 1 and i == 1 else ''}: "
              + "  ".join(f"{m} {r[m]:,.0f} img/s" for m in MODES))
    print(f"plan / layers {result['plan_over_layers']:.3f}   plan / numpy {result['plan_over_numpy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
