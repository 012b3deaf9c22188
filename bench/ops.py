"""Speed of featuremaps' conv2d and max_pool2d against torch.nn.functional (CPU, float32, 2 threads).

    python bench/ops.py [--quick] [--repeat N] [--only SUBSTRING]

Each library is timed in a fresh subprocess of its own (torch's and OpenBLAS's thread pools fight
when they share a process), after allocating and freeing 64 MiB and warming up with the largest
shape. Correctness is checked separately, in this process, on the same seeded data (batch ≤ 4).
Times are medians of the repeats (--stat min: the fastest). Input layers (C_in ≤ 3) skip the input gradient in both
libraries; every other shape computes it. See bench/README.md for how to read the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# (name, N, H, W, C_in, C_out, k, stride, pad, kind)
SUITE = [
    ("lenet C1", 64, 28, 28, 1, 6, 5, 1, 2, "dense"),
    ("lenet C3 dense", 64, 14, 14, 6, 16, 5, 1, 0, "dense"),
    ("textbook 1", 8, 100, 100, 1, 32, 3, 1, 0, "dense"),
    ("textbook 2", 8, 98, 98, 32, 64, 3, 1, 0, "dense"),
    ("cifar 64", 64, 32, 32, 64, 64, 3, 1, 1, "dense"),
    ("resnet 128", 8, 56, 56, 128, 128, 3, 1, 1, "dense"),
    ("stride 2", 32, 56, 56, 64, 128, 3, 2, 1, "dense"),
    ("1x1", 32, 28, 28, 256, 64, 1, 1, 0, "dense"),
    ("depthwise", 32, 56, 56, 128, 128, 3, 1, 1, "depthwise"),
    ("lenet C3 table", 64, 14, 14, 6, 16, 5, 1, 0, "table"),
    ("maxpool", 64, 28, 28, 32, 32, 2, 2, 0, "maxpool"),
    ("maxpool", 8, 56, 56, 128, 128, 2, 2, 0, "maxpool"),
]
WARMUP = [5]  # index of the largest conv in CASES
STRETCH = {"lenet C1", "lenet C3 dense", "lenet C3 table"}
CASES = SUITE  # what this run times: the fixed suite, or --random draws
CHANNELS = (1, 3, 8, 16, 20, 32, 64, 128, 256)
MAX_FLOPS = 3e9  # per forward pass: keeps a 50-shape run within about 5 minutes on 2 cores


def random_cases(count: int, seed: int) -> list:
    """`count` conv layers from the issue-12 distribution: batch 1–128, size 5–128, channels from
    CHANNELS, k in {1, 3, 5, 7}, stride 1–2, same or valid padding, 10% grouped or depthwise;
    a draw over MAX_FLOPS (forward) is halved in batch, then in size, until it fits."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, size = int(rng.integers(1, 129)), int(rng.integers(5, 129))
        ci, co = int(rng.choice(CHANNELS)), int(rng.choice(CHANNELS))
        k, s = int(rng.choice([1, 3, 5, 7])), int(rng.integers(1, 3))
        same = bool(rng.integers(0, 2))
        kind = "dense"
        if rng.random() < 0.1:
            kind = "depthwise" if rng.random() < 0.5 or ci == 1 else "grouped"
        if kind == "depthwise":
            co = ci
        if kind == "grouped":
            co = max(co, 2) if co % 2 == 0 or co == 1 else co + 1
            ci = ci if ci % 2 == 0 else ci + 1
        if not same and size < k:
            continue
        p = (k - 1) // 2 if same else 0  # 'same' at stride 1 (odd k); at stride 2 the symmetric k//2 padding
        case = [f"r{len(cases)}", n, size, size, ci, co, k, s, p, kind]
        while flops(tuple(case), False) > MAX_FLOPS:
            if case[1] > 1:
                case[1] = max(1, case[1] // 2)
            else:
                case[2] = case[3] = max(k, case[2] // 2)
        cases.append(tuple(case))
    return cases


def lenet_c3_table() -> np.ndarray:
    """LeCun et al. 1998, Table I: which of S2's 6 maps feed each of C3's 16 maps."""
    t = np.zeros((6, 16), dtype=bool)
    for o in range(6):
        t[[o, (o + 1) % 6, (o + 2) % 6], o] = True
    for o in range(6, 12):
        t[[(o - 6 + k) % 6 for k in range(4)], o] = True
    for o, ins in zip(range(12, 15), ([0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5])):
        t[ins, o] = True
    t[:, 15] = True
    return t


def make_data(case, batch=None, dtype=np.float32):
    """Seeded NHWC/HWIO arrays for one case (the same numbers for both libraries)."""
    name, n, h, w, ci, co, k, s, p, kind = case
    n = n if batch is None else min(n, batch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, ci)).astype(dtype)
    if kind == "maxpool":
        return {"x": x}
    cg = {"depthwise": 1, "grouped": ci // 2}.get(kind, ci)
    wt = (rng.standard_normal((k, k, cg, co)) / np.sqrt(k * k * cg)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    gy = rng.standard_normal((n, oh, ow, co)).astype(dtype)
    return {"x": x, "w": wt, "b": b, "gy": gy}


def flops(case, with_backward):
    """Useful multiply-adds ×2: forward, + dW, + dx (not for input layers)."""
    name, n, h, w, ci, co, k, s, p, kind = case
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    per_out = {"dense": k * k * ci, "depthwise": k * k, "grouped": k * k * ci / 2,
               "table": k * k * lenet_c3_table().sum() / co}[kind]
    f = 2.0 * n * oh * ow * co * per_out
    if not with_backward:
        return f
    return f * (3 if ci > 3 else 2)


# ---------------------------------------------------------------------------------------------
# Workers: one library per process
# ---------------------------------------------------------------------------------------------
def _settle_memory():
    a = np.ones(64 << 18, np.float32)  # 64 MiB touched and freed
    a += 1
    del a


_CLOCK = [time.perf_counter]
_STAT = [np.median]


def _median_ms(fn, repeat):
    """The median (or, with --stat min, the fastest) of `repeat` timed calls after one untimed."""
    fn()
    ts = []
    clock = _CLOCK[0]
    for _ in range(repeat):
        t0 = clock()
        fn()
        ts.append(clock() - t0)
    return 1e3 * float(_STAT[0](ts))


def _fm_callables(case, data):
    import featuremaps.functional as fmf
    from featuremaps import Tensor

    name, n, h, w, ci, co, k, s, p, kind = case
    if kind == "maxpool":
        x = Tensor(data["x"], requires_grad=True)

        def fwd():
            return fmf.max_pool2d(x.data, 2)

        def fb():
            x.grad = None
            y = fmf.max_pool2d(x, 2)
            y.backward(np.ones(y.shape, np.float32))
        return fwd, fb
    x = Tensor(data["x"], requires_grad=ci > 3)
    wt, b = Tensor(data["w"], requires_grad=True), Tensor(data["b"], requires_grad=True)
    opts = dict(stride=s, padding=p)
    if kind in ("depthwise", "grouped"):
        opts["groups"] = ci if kind == "depthwise" else 2
    if kind == "table":
        opts["connections"] = lenet_c3_table()
    gy = data["gy"]

    def fwd():
        return fmf.conv2d(data["x"], data["w"], data["b"], **opts)

    def fb():
        x.grad = wt.grad = b.grad = None
        y = fmf.conv2d(x, wt, b, **opts)
        y.backward(gy)
    return fwd, fb


def _torch_callables(case, data):
    import torch
    import torch.nn.functional as F

    name, n, h, w, ci, co, k, s, p, kind = case
    x = torch.tensor(np.ascontiguousarray(data["x"].transpose(0, 3, 1, 2)), requires_grad=kind == "maxpool" or ci > 3)
    if kind == "maxpool":
        def fwd():
            with torch.no_grad():
                return F.max_pool2d(x, 2)

        def fb():
            x.grad = None
            y = F.max_pool2d(x, 2)
            y.backward(torch.ones_like(y))
        return fwd, fb
    wt = torch.tensor(np.ascontiguousarray(data["w"].transpose(3, 2, 0, 1)), requires_grad=True)
    b = torch.tensor(data["b"], requires_grad=True)
    gy = torch.tensor(np.ascontiguousarray(data["gy"].transpose(0, 3, 1, 2)))
    groups = {"depthwise": ci, "grouped": 2}.get(kind, 1)
    mask = torch.tensor(lenet_c3_table().T[:, :, None, None].astype(np.float32)) if kind == "table" else None

    def conv():
        weight = wt * mask if mask is not None else wt
        return F.conv2d(x, weight, b, s, p, 1, groups)

    def fwd():
        with torch.no_grad():
            return conv()

    def fb():
        x.grad = wt.grad = b.grad = None
        conv().backward(gy)
    return fwd, fb


def worker(lib, cases, repeat, threads, cpu_time, stat):
    """Time every case with one library; print JSON."""
    info = {}
    if cpu_time:
        _CLOCK[0] = time.process_time
    if stat == "min":
        _STAT[0] = np.min
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if lib == "torch":
        import torch
        torch.set_num_threads(threads)
        make = _torch_callables
    else:
        make = _fm_callables
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
        a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
        info["gemm_gflops"] = 2 * 2048 ** 3 / _median_ms(lambda: a @ a, max(repeat, 5)) / 1e6
        from featuremaps.functional import accel
        info["numba"] = accel.numba_enabled()
    _settle_memory()
    fwd, fb = make(CASES[WARMUP[0]], make_data(CASES[WARMUP[0]]))
    for _ in range(2):
        fb()
    rows = []
    for case in cases:
        try:
            fwd, fb = make(case, make_data(case))
            rows.append({"fwd": _median_ms(fwd, repeat), "fb": _median_ms(fb, repeat)})
        except NotImplementedError:
            rows.append(None)
    info["rows"] = rows
    if lib == "fm":
        from featuremaps.functional import conv_algorithm
        algos = []
        for name, n, h, w, ci, co, k, s, p, kind in cases:
            if kind in ("maxpool", "table"):
                algos.append(kind)
                continue
            groups = {"depthwise": ci, "grouped": 2}.get(kind, 1)
            a = conv_algorithm((n, h, w, ci), (k, k, ci // groups, co), stride=s, padding=p, groups=groups)
            algos.append(f"{a.forward}/{a.dw}/{a.dx}")
        info["algos"] = algos
    print(json.dumps(info))


RANDOM_ARGS: list = []


def run_worker(lib, names, repeat, threads, cpu_time, stat):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["FEATUREMAPS_NUM_THREADS"] = str(threads)  # featuremaps' own element-wise threads
    cmd = [sys.executable, __file__, "--worker", lib, "--repeat", str(repeat), "--only-index", names,
           "--threads", str(threads), "--stat", stat] + (["--cpu-time"] if cpu_time else []) + RANDOM_ARGS
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        sys.exit(f"{lib} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Correctness, in this process, untimed
# ---------------------------------------------------------------------------------------------
def check(case):
    """Max |fm − torch| / max |torch| over the output and every computed gradient (batch ≤ 4)."""
    import torch
    import torch.nn.functional as F

    import featuremaps.functional as fmf
    from featuremaps import Tensor

    data = make_data(case, batch=4)
    name, n, h, w, ci, co, k, s, p, kind = case
    errs = []

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    if kind == "maxpool":
        x = Tensor(data["x"], requires_grad=True)
        try:
            y = fmf.max_pool2d(x, 2)
        except NotImplementedError:
            return None
        y.backward(np.ones(y.shape, np.float32))
        xt = torch.tensor(np.ascontiguousarray(data["x"].transpose(0, 3, 1, 2)), requires_grad=True)
        yt = F.max_pool2d(xt, 2)
        yt.backward(torch.ones_like(yt))
        return max(rel(y.data, yt.detach().numpy().transpose(0, 2, 3, 1)),
                   rel(x.grad, xt.grad.numpy().transpose(0, 2, 3, 1)))
    opts = dict(stride=s, padding=p, groups={"depthwise": ci, "grouped": 2}.get(kind, 1))
    if kind == "table":
        opts["connections"] = lenet_c3_table()
    x, wt, b = (Tensor(data[key], requires_grad=True) for key in ("x", "w", "b"))
    y = fmf.conv2d(x, wt, b, **opts)
    y.backward(data["gy"])
    mask = lenet_c3_table()[None, None] if kind == "table" else 1.0
    xt = torch.tensor(np.ascontiguousarray(data["x"].transpose(0, 3, 1, 2)), requires_grad=True)
    wtt = torch.tensor(np.ascontiguousarray((data["w"] * mask).transpose(3, 2, 0, 1)), requires_grad=True)
    bt = torch.tensor(data["b"], requires_grad=True)
    yt = F.conv2d(xt, wtt, bt, s, p, 1, opts["groups"])
    yt.backward(torch.tensor(np.ascontiguousarray(data["gy"].transpose(0, 3, 1, 2))))
    errs.append(rel(y.data, yt.detach().numpy().transpose(0, 2, 3, 1)))
    errs.append(rel(x.grad, xt.grad.numpy().transpose(0, 2, 3, 1)))
    errs.append(rel(wt.grad, wtt.grad.numpy().transpose(2, 3, 1, 0) * mask))
    errs.append(rel(b.grad, bt.grad.numpy()))
    return max(errs)


def _alternate(args, names: str, repeat: int) -> tuple[list, list]:
    """Alternate featuremaps' and torch's worker processes for --rounds rounds: (fm results, torch results)."""
    fms, ths = [], []
    for r in range(max(1, args.rounds)):
        print(f"timing featuremaps, then torch (round {r + 1}) ...", flush=True)
        fms.append(run_worker("fm", names, repeat, args.threads, args.cpu_time, args.stat))
        ths.append(run_worker("torch", names, repeat, args.threads, args.cpu_time, args.stat))
    return fms, ths


def _median_rounds(results: list) -> dict:
    """One library's worker results over the rounds, each case's times their median (a new dict)."""
    out = dict(results[0])
    out["rows"] = [None if row is None else {key: float(np.median([r["rows"][j][key] for r in results]))
                                            for key in row}
                   for j, row in enumerate(results[0]["rows"])]
    if "gemm_gflops" in out:
        out["gemm_gflops"] = float(np.median([r["gemm_gflops"] for r in results]))
    return out


def _round_ratios(fms: list, ths: list) -> list:
    """Each case's median over the rounds of that round's featuremaps/torch f+b ratio (None where fm has no row)."""
    def ratio(j: int) -> float:
        return float(np.median([a["rows"][j]["fb"] / t["rows"][j]["fb"] for a, t in zip(fms, ths)]))
    return [None if row is None else ratio(j) for j, row in enumerate(fms[0]["rows"])]


def random_report(args, idx, repeat):
    """--random: the distribution of featuremaps/torch f+b ratios and the worst five shapes."""
    fms, ths = _alternate(args, ",".join(map(str, idx)), repeat)
    fm = fms[0]
    for b in fm["blas"]:
        print(f"BLAS: {b['internal_api']} {b['version']}, kernel {b['architecture']}, {b['num_threads']} threads")
    print(f"numba kernels: {'on' if fm.get('numba') else 'off'}; {args.random} layers, seed {args.seed}; "
          f"{'process CPU time' if args.cpu_time else 'wall time'}, {args.stat} of {repeat} repeats, "
          f"median of {max(1, args.rounds)} per-round ratio(s)")
    per_case = np.array(_round_ratios(fms, ths))  # (cases,)
    print(f"featuremaps/torch f+b: median {np.median(per_case):.2f}, p90 {np.percentile(per_case, 90):.2f}, "
          f"max {per_case.max():.2f}")
    print("every layer, worst first:" if args.all else "worst five:")
    for j in np.argsort(per_case)[::-1][:None if args.all else 5]:
        name, n, h, w, ci, co, k, s, p, kind = CASES[idx[j]]
        print(f"  {per_case[j]:5.2f}x  N={n} {h}x{w} {ci}->{co} k{k} s{s} p{p} {kind:<9} {fm['algos'][j]}")
    print(f"bar (with the fast extra): median <= 1.0: {'met' if np.median(per_case) <= 1.0 else 'NOT met'}; "
          f"max <= 1.5: {'met' if per_case.max() <= 1.5 else 'NOT met'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats per measurement (median)")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the two libraries' processes this many times and report the median of the "
                         "per-round ratios (use at least 5 for a quotable figure)")
    ap.add_argument("--threads", type=int, default=2, help="threads for BLAS/torch (default 2)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="diagnostic for a shared machine: time with process CPU time (use with --threads 1)")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="statistic over the repeats (default median; min resists a busy machine better)")
    ap.add_argument("--random", type=int, default=None, metavar="N",
                    help="time N conv layers drawn from the issue-12 distribution instead of the fixed suite")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --random draws (default 0)")
    ap.add_argument("--all", action="store_true", help="with --random: list every layer, not only the worst five")
    ap.add_argument("--worker", choices=["fm", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--only-index", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    if args.random:
        global CASES
        CASES = random_cases(args.random, args.seed)
        WARMUP[0] = int(np.argmax([flops(c, False) for c in CASES]))
        RANDOM_ARGS.extend(["--random", str(args.random), "--seed", str(args.seed)])
    if args.worker:
        idx = [int(i) for i in args.only_index.split(",")]
        worker(args.worker, [CASES[i] for i in idx], repeat, args.threads, args.cpu_time, args.stat)
        return
    idx = [i for i, c in enumerate(CASES) if args.only is None or args.only in c[0]]
    if args.random:
        return random_report(args, idx, repeat)
    names = ",".join(map(str, idx))
    print("correctness (float32, batch ≤ 4, max |fm − torch| / max |torch| over output and gradients) ...",
          flush=True)
    errors = []
    for i in idx:
        errors.append(check(CASES[i]))
    fms, ths = _alternate(args, names, repeat)
    ratios = _round_ratios(fms, ths)
    fm, th = _median_rounds(fms), _median_rounds(ths)
    for b in fm["blas"]:
        print(f"BLAS: {b['internal_api']} {b['version']}, kernel {b['architecture']}, {b['num_threads']} threads")
    print(f"featuremaps' numba kernels (the fast extra): {'on' if fm.get('numba') else 'off'} "
          f"(FEATUREMAPS_NUMBA=0 times the pure NumPy path)")
    peak = fm["gemm_gflops"]
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(f"float32 GEMM peak (numpy.matmul 2048×2048): {peak:.0f} GFLOP/s; {args.threads} threads; {clock}, "
          f"{args.stat} of {repeat} repeats; times are medians over {max(1, args.rounds)} round(s), "
          f"ratios the median of the per-round ratios\n")
    head = (f"{'case':<15} {'N,H,W,Cin→Cout,k,s,p':<24} {'fwd fm':>8} {'fwd th':>8} {'f+b fm':>8} {'f+b th':>8} "
            f"{'GFLOP/s':>8} {'%peak':>6} {'ratio':>6} {'bar':>5} {'err':>8}")
    print(head)
    print("-" * len(head))
    bars = []
    for j, i in enumerate(idx):
        case = CASES[i]
        name, n, h, w, ci, co, k, s, p, kind = case
        shape = f"{n},{h},{w},{ci}→{co},{k},{s},{p}" if kind != "maxpool" else f"{n},{h},{w},{ci} 2×2/2"
        a, t = fm["rows"][j], th["rows"][j]
        if a is None:
            print(f"{name:<15} {shape:<24} {'n/a':>8} {t['fwd']:8.2f} {'n/a':>8} {t['fb']:8.2f}")
            bars.append((name, None))
            continue
        ratio = ratios[j]
        limit = 1.0 if kind == "maxpool" else 1.5
        ok = ratio <= limit
        stretch = ""
        if name in STRETCH:
            stretch = " s✓" if ratio <= 1.0 else " s✗"
        bars.append((name, ok))
        if kind == "maxpool":
            gf = pk = "-"
        else:
            g = flops(case, True) / a["fb"] / 1e6
            gf, pk = f"{g:.1f}", f"{100 * g / peak:.0f}"
        err = "-" if errors[j] is None else f"{errors[j]:.1e}"
        print(f"{name:<15} {shape:<24} {a['fwd']:8.2f} {t['fwd']:8.2f} {a['fb']:8.2f} {t['fb']:8.2f} "
              f"{gf:>8} {pk:>6} {ratio:6.2f} {('✓' if ok else '✗') + stretch:>5} {err:>8}")
    print("\nbars: conv f+b ≤ 1.5× torch on every shape; stretch (s) ≤ 1.0× on LeNet C1/C3 and the C3 table; "
          "max-pool f+b ≤ 1.0× torch NCHW")
    conv_ok = all(ok for (nm, ok), i in zip(bars, idx) if CASES[i][9] != "maxpool")
    pool = [ok for (nm, ok), i in zip(bars, idx) if CASES[i][9] == "maxpool"]
    stretch_ok = all(ratios[j] <= 1.0 for j, i in enumerate(idx) if CASES[i][0] in STRETCH)
    print(f"conv ≤ 1.5×: {'met' if conv_ok else 'NOT met'}; stretch ≤ 1.0×: {'met' if stretch_ok else 'NOT met'}; "
          f"max-pool ≤ 1.0×: {'n/a' if any(p is None for p in pool) else ('met' if all(pool) else 'NOT met')}")


if __name__ == "__main__":
    main()
