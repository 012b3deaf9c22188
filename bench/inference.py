"""Inference speed and memory of featuremaps against onnxruntime on the same ONNX files (CPU, float32).

    python bench/inference.py [--rounds 5] [--models lenet,resnet18,...] [--batches 1,8] [--quick]
                              [--repeat 10] [--budget 3] [--no-numba] [--json]

Models (MODELS below): three torch modules defined here and exported with the TorchScript exporter
(`torch.onnx.export(..., dynamo=False)`, through `tests/torch_nets.export`; eval mode, so BatchNorm
is folded into the convs), with torch's seeded default init and the test nets' random BatchNorm
statistics:
- `lenet`: the Theano-tutorial LeNet of `bench/train_mnist.py` (conv 20@5×5, pool, tanh, conv 50@5×5,
  pool, tanh, dense 500, tanh, dense 10), 1×28×28;
- `mobilenetv2`: MobileNetV2's layout (inverted residuals, ReLU6, depthwise 3×3; width 1.0,
  17 blocks, 1280-map head), 3×112×112;
- `resnet18`: ResNet-18's layout (7×7/2 stem, max-pool, 4 stages × 2 BasicBlocks of 64–512 maps),
  3×112×112;
and the ONNX package's classic graphs (`onnx/backend/test/data/light`, 3×224×224) with their
constant fills replaced by seeded random weights by `tests/test_onnx_zoo.randomized`, the input's
batch and the batch of every Reshape target set to the batch timed (`with_batch`). One file is
written per model and batch into a temporary directory.

Each timing runs in a fresh process of its own (`--worker`), 2 threads each, with OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE removed from its environment (perf-notes: they can slow OpenBLAS by 30% or
more). Three workers per model and batch, in an order that alternates round by round:
- `fm-load`: `featuremaps.onnx.load(path)` (a featuremaps Graph/Sequential, NHWC input), its forward
  under `featuremaps.no_grad()`; the input is given channels-last, as the model takes it;
- `fm-run`: `featuremaps.onnx.prepare(path).run(feeds)`, the graph interpreter behind
  `featuremaps.onnx.run` (prepared once, so weights are converted to HWIO once), NCHW in and out;
- `ort`: one onnxruntime `InferenceSession` (`GraphOptimizationLevel.ORT_ENABLE_ALL`,
  intra_op_num_threads=2, inter_op_num_threads=1).
A worker allocates and frees 64 MiB, builds the model, runs it untimed (at least twice, and for
up to 0.25 s), then times up to
`--repeat` calls (at least 3, stopping once `--budget` seconds are spent) and reports batch / the
median time as images/s. Peak RSS is the process's high-water mark from the model's construction
on (VmHWM after `/proc/self/clear_refs` is reset past the 64 MiB settle; `ru_maxrss` where that is
unavailable): imports, weights, buffers. Ratios are featuremaps / onnxruntime of images/s
(throughput: > 1 means featuremaps is faster) and of peak RSS, one per round, and the median over
the rounds is printed. Round 1's outputs of each worker are compared (max |fm − ort| / max |ort|
over every output), so a fast wrong answer shows. Inputs are seeded standard-normal arrays.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

THREADS = 2
WARMUP_S = 0.25  # untimed calls per worker: at least 2, and up to 50 until this many seconds have passed
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE", "GOTO_NUM_THREADS")
TORCH_NETS = {"lenet": (1, 28, 28), "mobilenetv2": (3, 112, 112), "resnet18": (3, 112, 112)}
CLASSIC = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
           "vgg19", "zfnet512"]  # tests/test_onnx_zoo.ZOO
MODELS = [*TORCH_NETS, *CLASSIC]
QUICK = ["lenet", "resnet18", "squeezenet"]
LIBS = ("fm-load", "fm-run", "ort")


# --- the models (built in the driver, never in a timing worker) -----------------------------------

def _torch_module(name: str):
    import torch
    from tests.torch_nets import BasicBlock, _bn
    nn = torch.nn
    torch.manual_seed(0)
    if name == "lenet":
        net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Tanh(), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
                            nn.Tanh(), nn.Flatten(), nn.Linear(800, 500), nn.Tanh(), nn.Linear(500, 10))
    elif name == "resnet18":
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), _bn(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000))
    elif name == "mobilenetv2":
        class Inverted(nn.Module):
            def __init__(self, cin, cout, stride, t):
                super().__init__()
                mid = cin * t
                body = [] if t == 1 else [nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.ReLU6()]
                body += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), _bn(mid), nn.ReLU6(),
                         nn.Conv2d(mid, cout, 1, bias=False), _bn(cout)]
                self.body, self.residual = nn.Sequential(*body), stride == 1 and cin == cout

            def forward(self, x):
                return x + self.body(x) if self.residual else self.body(x)
        layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), _bn(32), nn.ReLU6()], 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)):  # MobileNetV2's Table 2
            for i in range(n):
                layers.append(Inverted(cin, c, s if i == 0 else 1, t))
                cin = c
        net = nn.Sequential(*layers, nn.Conv2d(cin, 1280, 1, bias=False), _bn(1280), nn.ReLU6(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))
    else:
        raise ValueError(f"no torch module {name!r}; torch-defined models: {', '.join(TORCH_NETS)}")
    return net.eval()


def with_batch(model, batch: int):
    """`model` (a ModelProto, changed in place) with its input's batch and the leading 1 of every constant
    Reshape target set to `batch` (the classic graphs are written for batch 1), and stale shapes dropped."""
    import onnx
    from onnx import numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    for i in model.graph.input:
        if i.name not in inits:
            i.type.tensor_type.shape.dim[0].dim_value = batch
    for n in model.graph.node:
        if n.op_type == "Reshape" and n.input[1] in inits:
            t = inits[n.input[1]]
            shape = numpy_helper.to_array(t).copy()
            if shape.size and shape[0] == 1:
                shape[0] = batch
                t.CopyFrom(numpy_helper.from_array(shape, t.name))
    for o in model.graph.output:
        o.type.tensor_type.ClearField("shape")
        if not o.type.tensor_type.elem_type:  # with_logits' extra output: onnxruntime wants a type
            o.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    del model.graph.value_info[:]
    return model


def write_model(name: str, batch: int, tmp: str) -> str:
    """The ONNX file of model `name` at `batch`, written into `tmp`; returns its path."""
    path = os.path.join(tmp, f"{name}_b{batch}.onnx")
    if name in TORCH_NETS:
        from tests.torch_nets import export
        x = np.random.default_rng(0).standard_normal((batch, *TORCH_NETS[name])).astype(np.float32)
        export(_torch_module(name), path, x, dynamo=False)
    else:
        import onnx
        from tests.test_onnx_zoo import randomized, zoo_path
        onnx.save(with_batch(randomized(onnx.load(zoo_path(name)), seed=CLASSIC.index(name)), batch), path)
    return path


# --- workers (each in its own process) -------------------------------------------------------------

def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} x{i.get('num_threads')}"
                     for i in threadpool_info() if i.get("user_api") == "blas")


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib(reset: bool) -> float:
    if reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _random_feed(name: str, shape) -> dict:
    """The seeded input both libraries get: standard normal, free dimensions taken as 1."""
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)
    return {name: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}


def _fm_feeds(path: str) -> dict:
    import onnx
    model = onnx.load(path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    x = next(i for i in model.graph.input if i.name not in inits)
    return _random_feed(x.name, [d.dim_value for d in x.type.tensor_type.shape.dim])


def _step(lib: str, path: str):
    """(a callable running the model once in library `lib`, the function that puts its outputs in ONNX's
    layout, the batch). Only what `lib` needs is imported, so the peak RSS is that library's."""
    if lib == "fm-load":
        from featuremaps import Tensor, no_grad
        from featuremaps.onnx import load
        from featuremaps.tensor import as_array
        (x,) = _fm_feeds(path).values()
        model = load(path)
        model.eval()
        xt = Tensor(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # (n, c, h, w) -> (n, h, w, c): its input

        def step():
            with no_grad():
                out = model(xt)
            return [as_array(o) for o in (out if isinstance(out, tuple) else (out,))]
        return step, lambda outs: [o.transpose(0, 3, 1, 2) if o.ndim == 4 else o for o in outs], len(x)
    if lib == "fm-run":
        from featuremaps.onnx import prepare
        feeds = _fm_feeds(path)
        prog = prepare(path)
        return (lambda: prog.run(feeds)), list, len(next(iter(feeds.values())))
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    (x,) = sess.get_inputs()
    feeds = _random_feed(x.name, x.shape)
    return (lambda: sess.run(None, feeds)), list, len(feeds[x.name])


def worker(lib: str, path: str, repeat: int, budget: float, save: str | None) -> dict:
    """Time one library on one file in this (fresh) process."""
    a = np.ones(64 << 18, np.float32)  # 64 MiB touched and freed: memory in a steady state
    del a
    reset = _reset_peak()
    step, to_onnx_layout, batch = _step(lib, path)
    outs, t_end, warm = step(), time.perf_counter() + WARMUP_S, 1
    while warm < 2 or (time.perf_counter() < t_end and warm < 50):  # compiled kernels, buffers, caches
        step()
        warm += 1
    if save:
        np.savez(save, *[np.asarray(o) for o in to_onnx_layout(outs)])
    times, spent = [], 0.0
    while len(times) < max(repeat, 1) and (len(times) < 3 or spent < budget):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    doc = {"lib": lib, "images_per_s": batch / statistics.median(times), "median_ms": 1e3 * statistics.median(times),
           "runs": len(times), "peak_rss_mib": _peak_rss_mib(reset), "peak_rss_from": "VmHWM" if reset else "ru_maxrss",
           "blas": _blas_info()}
    if lib.startswith("fm"):
        from featuremaps.functional import accel
        doc["numba"] = accel.numba_enabled()
    return doc


# --- driver ----------------------------------------------------------------------------------------

def worker_env(numba: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS=str(THREADS),
               OPENBLAS_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS), FEATUREMAPS_NUM_THREADS=str(THREADS))
    if not numba:
        env["FEATUREMAPS_NUMBA"] = "0"
    return env


def spawn(lib: str, path: str, args, save: str | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--path", path, "--repeat", str(args.repeat),
           "--budget", str(args.budget)] + (["--save", save] if save else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(not args.no_numba))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return {"lib": lib, "error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_rel_error(got: str, ref: str) -> float:
    with np.load(got) as g, np.load(ref) as r:
        if len(g.files) != len(r.files):
            return float("inf")
        errs = []
        for k in r.files:
            a, b = g[k], r[k]
            if a.shape != b.shape:
                return float("inf")
            errs.append(float(np.max(np.abs(a.astype(np.float64) - b)) / max(float(np.max(np.abs(b))), 1e-30)))
    return max(errs)


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, spec: str, width: int) -> str:
    return f"{'–':>{width}}" if x is None else f"{x:{width}{spec}}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(MODELS)} (default: all; "
                   f"--quick: {','.join(QUICK)})")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default: 5; --quick: 2)")
    p.add_argument("--repeat", type=int, default=10, help="timed calls per worker at most (default: 10)")
    p.add_argument("--budget", type=float, default=3.0,
                   help="seconds of timed calls per worker after the first 3 (default: 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {', '.join(QUICK)}, 2 rounds, at most 5 timed calls or 1 s per worker")
    p.add_argument("--no-numba", action="store_true",
                   help="featuremaps without its numba kernels (FEATUREMAPS_NUMBA=0)")
    p.add_argument("--json", action="store_true", help="also print every worker's result as one JSON document")
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.repeat, args.budget, args.save)))
        return 0
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.quick:
        args.repeat, args.budget = min(args.repeat, 5), min(args.budget, 1.0)
    names = [m.strip() for m in (args.models or ",".join(QUICK if args.quick else MODELS)).split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; valid: {', '.join(MODELS)}")
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        raise SystemExit(f"--batches must be comma-separated integers; received {args.batches!r}") from None
    if any(b < 1 for b in batches) or args.rounds < 1:
        raise SystemExit("--batches must be ≥ 1 and --rounds ≥ 1")

    removed = {v: os.environ[v] for v in UNSET if v in os.environ}
    print(f"{THREADS} threads per library, wall time; load {os.getloadavg()[0]:.2f}; "
          f"removed from the workers' environment: {removed or 'nothing (none set)'}", flush=True)
    results, first = {}, None
    with tempfile.TemporaryDirectory(prefix="fm-infer-") as tmp:
        for name in names:
            for batch in batches:
                path = write_model(name, batch, tmp)
                rounds = []
                for r in range(args.rounds):
                    order = LIBS if r % 2 == 0 else LIBS[::-1]
                    got = {}
                    for lib in order:
                        save = os.path.join(tmp, f"{name}_b{batch}_{lib}.npz") if r == 0 else None
                        got[lib] = spawn(lib, path, args, save)
                    if first is None and all("blas" in g for g in got.values()):
                        first = got
                        print("BLAS in the workers (threadpoolctl): "
                              + "; ".join(f"{lib}: {got[lib]['blas']}" for lib in LIBS[:2])
                              + " (onnxruntime runs its own MLAS kernels); featuremaps numba kernels: "
                              + ("on" if got["fm-load"]["numba"] else "off"), flush=True)
                    rounds.append(got)
                errs = {}
                ref = os.path.join(tmp, f"{name}_b{batch}_ort.npz")
                for lib in LIBS[:2]:
                    mine = os.path.join(tmp, f"{name}_b{batch}_{lib}.npz")
                    errs[lib] = max_rel_error(mine, ref) if os.path.exists(mine) and os.path.exists(ref) else None
                results[(name, batch)] = {"rounds": rounds, "errors": errs}
                report_one(name, batch, rounds, errs)
                os.remove(path)
    summary(results)
    if args.json:
        print(json.dumps([{"model": n, "batch": b, **v} for (n, b), v in results.items()], indent=2))
    return 0


def _ratio(rounds, lib, key):
    vals = []
    for g in rounds:
        if key in g[lib] and key in g["ort"]:
            vals.append(g[lib][key] / g["ort"][key])
    return _median(vals)


def report_one(name, batch, rounds, errs) -> None:
    ips = {lib: [g[lib].get("images_per_s") for g in rounds] for lib in LIBS}
    per = "  ".join(f"{lib} " + "/".join("err" if v is None else f"{v:,.0f}" for v in ips[lib]) for lib in LIBS)
    print(f"{name} b{batch}: images/s per round  {per}", flush=True)
    for lib in LIBS:
        bad = next((g[lib]["error"] for g in rounds if "error" in g[lib]), None)
        if bad:
            print(f"  {lib} failed: {bad}", flush=True)
    warn = [f"{lib} max |fm − ort| / max |ort| = {e:.2g}" for lib, e in errs.items() if e is not None and e > 1e-4]
    if warn:
        print("  WRONG OUTPUT? " + "; ".join(warn), flush=True)


def summary(results) -> None:
    print(f"\n{'model':<13} {'batch':>5} {'fm-load img/s':>14} {'fm-run img/s':>13} {'ort img/s':>10} "
          f"{'load/ort':>9} {'run/ort':>8} {'RSS MiB load/run/ort':>21} {'RSS load/ort':>13} {'run/ort':>8} "
          f"{'max rel err':>12}")
    for (name, batch), v in results.items():
        rounds = v["rounds"]
        med = {lib: _median([g[lib].get("images_per_s") for g in rounds]) for lib in LIBS}
        rss = {lib: _median([g[lib].get("peak_rss_mib") for g in rounds]) for lib in LIBS}
        err = max((e for e in v["errors"].values() if e is not None), default=None)
        rss_s = "/".join("–" if rss[lib] is None else f"{rss[lib]:.0f}" for lib in LIBS)
        print(f"{name:<13} {batch:>5} {_fmt(med['fm-load'], ',.0f', 14)} {_fmt(med['fm-run'], ',.0f', 13)} "
              f"{_fmt(med['ort'], ',.0f', 10)} {_fmt(_ratio(rounds, 'fm-load', 'images_per_s'), '.2f', 9)} "
              f"{_fmt(_ratio(rounds, 'fm-run', 'images_per_s'), '.2f', 8)} {rss_s:>21} "
              f"{_fmt(_ratio(rounds, 'fm-load', 'peak_rss_mib'), '.2f', 13)} "
              f"{_fmt(_ratio(rounds, 'fm-run', 'peak_rss_mib'), '.2f', 8)} {_fmt(err, '.1e', 12)}")
    n = len(next(iter(results.values()))["rounds"]) if results else 0
    print(f"images/s: median over {n} round(s); ratios: median of the per-round ratios featuremaps / onnxruntime "
          f"(throughput, > 1 = featuremaps faster; RSS, < 1 = featuremaps smaller). Bars (issue 12, batch 8): "
          f"lenet ≥ 0.5, resnet18 ≥ 0.3; resnet18 peak RSS ≤ 1.5× ort's.")


if __name__ == "__main__":
    sys.exit(main())
