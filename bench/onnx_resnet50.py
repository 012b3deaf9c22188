"""`featuremaps.onnx.run` against onnxruntime on the ONNX package's light_resnet50 graph, batch 1.

    python bench/onnx_resnet50.py [--rounds 5] [--repeat 5] [--ort-opt all|none] [--profile]
                                  [--threads 1 --cpu-time]   # a diagnostic on a busy machine

The graph's constant fills are replaced by seeded random weights (as in tests/test_onnx_zoo.py)
and written to a temporary directory. Correctness is checked first, in this process (max |fm − ort|
/ max |ort| over the softmax and its logits). Each timing then runs in a fresh process of its own
(the two libraries' thread pools fight when they share one), alternating featuremaps and
onnxruntime for --rounds rounds: 2 threads each, 64 MiB allocated and freed first, two warm-up
runs, then the median of --repeat runs. Printed: each round's times and ratio, and the median of the
per-round ratios (featuremaps / onnxruntime). --profile prints featuremaps' time per op type.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

THREADS = int(os.environ.get("FM_BENCH_THREADS", "2"))
CLOCK = time.process_time if os.environ.get("FM_BENCH_CPU_TIME") == "1" else time.perf_counter


def _settle_memory() -> None:
    a = np.ones(64 << 18, np.float32)  # 64 MiB touched and freed: memory in a steady state
    del a


def _feeds(path: str) -> dict:
    import onnx
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    x = next(i for i in model.graph.input if i.name not in inits)
    shape = tuple(d.dim_value or 1 for d in x.type.tensor_type.shape.dim)
    return {x.name: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}


def _ort_session(path: str, opt: str):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if opt == "all"
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def worker(lib: str, path: str, repeat: int, opt: str) -> dict:
    """Time one library in this (fresh) process; returns its median and all times in ms."""
    feeds = _feeds(path)
    _settle_memory()
    if lib == "fm":
        from featuremaps.onnx import prepare
        prog = prepare(path)
        step = lambda: prog.run(feeds)  # noqa: E731
    else:
        sess = _ort_session(path, opt)
        step = lambda: sess.run(None, feeds)  # noqa: E731
    for _ in range(2):
        step()
    times = []
    for _ in range(repeat):
        t = CLOCK()
        step()
        times.append((CLOCK() - t) * 1e3)
    return {"median_ms": float(np.median(times)), "times_ms": times}


def _spawn(lib: str, path: str, repeat: int, opt: str, cpu_time: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), OPENBLAS_NUM_THREADS=str(THREADS),
               FM_BENCH_THREADS=str(THREADS), FM_BENCH_CPU_TIME="1" if cpu_time else "0")
    out = subprocess.run([sys.executable, __file__, "--worker", lib, "--model", path, "--repeat", str(repeat),
                          "--ort-opt", opt], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_model(tmp: str) -> str:
    import onnx
    from tests.test_onnx_zoo import randomized, zoo_path
    path = os.path.join(tmp, "resnet50_random.onnx")
    onnx.save(randomized(onnx.load(zoo_path("resnet50")), seed=0), path)
    return path


def check(path: str) -> float:
    """max |featuremaps − onnxruntime| / max |onnxruntime| over every output (untimed)."""
    from featuremaps.onnx import run
    feeds = _feeds(path)
    got, ref = run(path, feeds), _ort_session(path, "none").run(None, feeds)
    return max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(got, ref))


def profile(path: str, repeat: int) -> None:
    """featuremaps' time per op type (one process; wraps each converter with a timer)."""
    from featuremaps.onnx import prepare
    prog, feeds, spent = prepare(path), _feeds(path), {}

    def timed(fn, op):
        def run(*a):
            t = time.perf_counter()
            out = fn(*a)
            spent[op] = spent.get(op, 0.0) + time.perf_counter() - t
            return out
        return run
    prog.plan = [(n, timed(fn, n.op_type), v) for n, fn, v in prog.plan]
    prog.run(feeds)
    spent.clear()
    t = time.perf_counter()
    for _ in range(repeat):
        prog.run(feeds)
    total = (time.perf_counter() - t) * 1e3 / repeat
    print(f"featuremaps per op type (ms per run, {repeat} runs; total {total:.1f} ms):")
    for op, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {op:>20} {s * 1e3 / repeat:8.2f}")


def _kernel() -> str:
    try:
        from threadpoolctl import threadpool_info
        return ", ".join(f"{i.get('internal_api')} {i.get('architecture')} ×{i.get('num_threads')}"
                         for i in threadpool_info() if i.get("user_api") == "blas")
    except ImportError:
        return "threadpoolctl not installed"


def main(argv=None) -> None:
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ort-opt", choices=["all", "none"], default="all",
                    help="onnxruntime's graph optimisations (all: its default, e.g. BatchNorm folded into convs)")
    ap.add_argument("--profile", action="store_true", help="print featuremaps' time per op type first")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads for each library (default 2)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process CPU time (with --threads 1: what load disturbs least)")
    ap.add_argument("--worker", choices=["fm", "ort"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    THREADS = args.threads
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.repeat, args.ort_opt)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_model(tmp)
        clock = "process CPU time" if args.cpu_time else "wall time"
        print(f"{args.threads} thread(s) per library, {clock}; BLAS (this process): {_kernel()}; "
              f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
              f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}; load {os.getloadavg()[0]:.2f}")
        print(f"light_resnet50, random weights, batch 1: max |fm − ort| / max |ort| = {check(path):.2g}")
        if args.profile:
            profile(path, args.repeat)
        ratios = []
        for r in range(args.rounds):
            fm, rt = (_spawn(lib, path, args.repeat, args.ort_opt, args.cpu_time) for lib in ("fm", "ort"))
            ratios.append(fm["median_ms"] / rt["median_ms"])
            print(f"round {r + 1}: featuremaps {fm['median_ms']:7.1f} ms   onnxruntime ({args.ort_opt}) "
                  f"{rt['median_ms']:7.1f} ms   ratio {ratios[-1]:.2f}")
        print(f"median ratio featuremaps / onnxruntime over {args.rounds} rounds: {np.median(ratios):.2f}")


if __name__ == "__main__":
    main()
