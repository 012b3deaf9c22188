#!/usr/bin/env python
"""Rebuild featuremaps/data/mnist_sample.npz (the embedded 'sample' dataset) from ../shared/data/mnist.

Usage (from anywhere):  python tools/make_sample.py [--src DIR] [--out FILE]

Reads train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz (the 5,000-image MNIST training sample),
checks their md5 against ../shared/data/README.md, and writes the npz described in
featuremaps/data/sample.py. The t10k (test) files are never embedded.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from featuremaps.data.download import md5sum  # noqa: E402
from featuremaps.data.idx import read_idx  # noqa: E402
from featuremaps.data.sample import SAMPLE_FILE, SAMPLE_SOURCE_MD5, build_sample_npz, load_sample_arrays  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    ap.add_argument("--out", type=Path, default=SAMPLE_FILE)
    args = ap.parse_args(argv)
    for name, want in SAMPLE_SOURCE_MD5.items():
        got = md5sum(args.src / name)
        if got != want:
            sys.exit(f"make_sample: {args.src / name} has md5 {got}, expected {want}")
    images = read_idx(args.src / "train-images-idx3-ubyte.gz")
    labels = read_idx(args.src / "train-labels-idx1-ubyte.gz")
    if images.shape != (5000, 28, 28) or labels.shape != (5000,):
        sys.exit(f"make_sample: unexpected shapes {images.shape}, {labels.shape}")
    out = build_sample_npz(images, labels, args.out, source_md5=SAMPLE_SOURCE_MD5)
    tr_x, tr_y = load_sample_arrays("train", out)
    va_x, va_y = load_sample_arrays("val", out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes): train {tr_x.shape} {np.bincount(tr_y).tolist()}, "
          f"val {va_x.shape} {np.bincount(va_y).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
