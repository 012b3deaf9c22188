"""Build time and file size of the HTML report of a ResNet-50-shaped graph at 224 × 224 RGB.

    python bench/report_size.py [--size 224] [--out /tmp/resnet50-report.html]

Prints the forward pass's time alone, the whole build's time (forward pass, weights, the `explain`
references, writing the file) and the file's size, split into exact values, previews, weights and
the rest. The graph is `tests.test_report_graph.resnet50` (random, well-scaled weights).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featuremaps.inspect import activations  # noqa: E402
from featuremaps.report import build_report  # noqa: E402
from tests.test_report_graph import resnet50  # noqa: E402


def _parts(data: dict) -> dict:
    """Bytes of the page's data by kind (base64 text as embedded)."""
    parts = {"exact values": 0, "previews": 0, "weights": 0}
    for e in data["layers"]:
        parts["exact values"] += len(e["values"] or "")
        parts["previews"] += len((e["preview"] or {}).get("data", ""))
        op = e["op"] or {}
        parts["weights"] += len(op.get("kernels") or "") + len(op.get("weight") or "") + len(op.get("bias") or "")
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "resnet50-report.html"))
    args = ap.parse_args()
    g = resnet50(size=args.size)
    x = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)
    t0 = time.perf_counter()
    activations(g, x)
    t_forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = build_report(g, x, args.out)
    t_build = time.perf_counter() - t0
    text = path.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="fm-data">(.*?)</script>', text, re.S).group(1))
    size = path.stat().st_size
    parts = _parts(data)
    exact = sum(e["values"] is not None for e in data["layers"])
    print(f"ResNet-50-shaped graph, {len(g.names())} nodes, input {args.size}×{args.size}×3")
    print(f"forward pass alone: {t_forward:.1f} s; whole report build: {t_build:.1f} s")
    print(f"file: {size / 1e6:.2f} MB ({path}); {exact} of {len(data['layers'])} layers exact, "
          f"{len(data['references'])} explain references")
    for k, v in parts.items():
        print(f"  {k}: {v / 1e6:.2f} MB")
    print(f"  the rest (page, script, structure): {(size - sum(parts.values())) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
