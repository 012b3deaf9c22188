"""Data-parallel training (featuremaps.distributed, issue 15): measured on this machine, then modelled
for a cluster.

    python bench/distributed.py              # 3 rounds, about 2 minutes
    python bench/distributed.py --rounds 5
    python bench/distributed.py --quick      # 1 round, fewer steps: a smoke run

Measured. lenet (the Theano-tutorial LeNet, 430k parameters) trains for 2 epochs of `--images`
images of the MNIST sample at global batch `--batch` (64) in three configurations, each in a fresh
process (or job) of its own, alternated for `--rounds` rounds:

- `plain 2 threads`: one ordinary process, 2 BLAS threads (and 2 featuremaps threads);
- `1 rank x 1 thread`: `mpiexec -n 1 ... --distributed` with OPENBLAS_NUM_THREADS=1;
- `2 ranks x 1 thread`: `mpiexec -n 2`, one thread per rank (what a Communicator sets by itself).

Images/s is epoch 2's training images over its time in training steps (`fit`'s `images_per_s`, on
rank 0), so process start-up, the first epoch's warm-up and the broadcast are not counted. The
allreduce figure is `Communicator.allreduce_seconds` over epoch 2's steps on rank 0: the gradient
allreduce, including the time rank 0 waits for a slower rank 1. Medians over the rounds, and the
median of the per-round ratios (perf-notes: processes vary by up to 1.8x, so only same-round ratios
are meaningful).

Modelled. A ring allreduce of `bytes` over K ranks costs
    t_comm(K) = 2·(K−1)/K · bytes / bandwidth + 2·(K−1) · latency
(each rank sends and receives 2·(K−1)/K of the buffer, in 2·(K−1) messages). The compute per global
batch is t1, one rank's (1 thread) time for a step of the whole batch, and K ranks each compute 1/K
of it, so
    speedup(K) = t1 / (t1 / K + t_comm(K)),  efficiency = speedup / K.
t1 comes from the measured 1-rank lenet runs and, for cnn and vgg-small, from a short 1-thread run
of the same `fit` steps (a few batches, random uint8 images for vgg-small's 32×32×3). bytes = 4 ×
parameters (float32 gradients). Networks: 10 Gbit/s (latency 20 µs, TCP over Ethernet) and
100 Gbit/s (2 µs, RDMA). "where it stops paying" gives the largest K of the list whose efficiency is
still >= 50% and the K where the speedup peaks (past it, more ranks are slower). The model is
optimistic at large K: it assumes compute shrinks exactly as 1/K, but a rank with 1-2 images of a
batch of 64 runs its GEMMs far below
the rate of a 32-image shard, and it ignores overlap of communication with the backward pass (which
featuremaps does not do: it allreduces after the whole backward).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from train_mnist import _blas_info  # noqa: E402  (the house helper: BLAS kernel and threads)

KS = (2, 4, 8, 16, 32, 64)
NETWORKS = {"10 Gbit/s": (10e9 / 8, 20e-6), "100 Gbit/s": (100e9 / 8, 2e-6)}  # bytes/s, latency s
MODELS = ("lenet", "cnn", "vgg-small")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FEATUREMAPS_NUM_THREADS")


# --- the worker: one training run (a plain process, or every rank of an mpiexec job) ------------------

def _data(name: str, n: int):
    from featuremaps import data
    if name == "vgg-small":  # speed only: random 32×32×3 images
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)
    ds = data.load("sample", "train")
    reps = -(-n // len(ds.labels))
    return np.concatenate([ds.images] * reps)[:n], np.concatenate([ds.labels] * reps)[:n]


def worker(name: str, images: int, batch: int) -> dict | None:
    import featuremaps as fm
    from featuremaps.progress import Reporter
    comm = None
    if "PMI_SIZE" in os.environ or "OMPI_COMM_WORLD_SIZE" in os.environ:
        from featuremaps.distributed import Communicator
        comm = Communicator(limit_threads=False)  # the driver sets the threads through the environment
    x, y = _data(name, images)
    model = fm.models.get(name, rng=np.random.default_rng(0), num_classes=10)
    opt = fm.optim.SGD(model.parameters(), 0.01, momentum=0.9)

    class Reset:  # count epoch 2's allreduces only
        def on_epoch_end(self, epoch, logs):
            if comm is not None and epoch == 1:
                comm.allreduce_seconds, comm.allreduces = 0.0, 0

    res = fm.train.fit(model, (x, y), epochs=2, batch_size=batch, optimizer=opt, seed=0, comm=comm,
                       callbacks=[Reset()], plot=False, reporter=Reporter())
    if comm is not None and comm.rank != 0:
        return None
    rec = res.history[-1]
    steps = -(-images // batch)
    return {"model": name, "images_per_s": rec["images_per_s"], "step_s": rec["time_s"] / steps,
            "allreduce_s_per_step": comm.allreduce_seconds / steps if comm else 0.0,
            "parameters": model.num_parameters(), "ranks": comm.size if comm else 0, "blas": _blas_info()}


# --- the driver --------------------------------------------------------------------------------------

def _mpiexec() -> str:
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise SystemExit("bench/distributed.py needs mpiexec (pip install -e '.[mpi]')")
    return exe


def _spawn(ranks: int, threads: int, model: str, images: int, batch: int) -> dict:
    """One run in a fresh process (ranks=0) or a fresh `mpiexec -n ranks` job, `threads` per process."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update({v: str(threads) for v in THREAD_VARS}, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", model, "--images", str(images), "--batch", str(batch)]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"worker {cmd} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


CONFIGS = (("plain 2 threads", 0, 2), ("1 rank x 1 thread", 1, 1), ("2 ranks x 1 thread", 2, 1))


def measure(rounds: int, images: int, batch: int) -> dict:
    runs: dict = {c[0]: [] for c in CONFIGS}
    for r in range(rounds):
        order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]  # alternate, so no configuration always runs first
        for label, ranks, threads in order:
            runs[label].append(_spawn(ranks, threads, "lenet", images, batch))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{c[0]} {runs[c[0]][-1]['images_per_s']:,.0f}"
                                                     for c in CONFIGS) + " images/s", flush=True)
    return runs


def _med(values) -> float:
    return statistics.median(values)


def report_measured(runs: dict, batch: int) -> dict:
    plain, one, two = (runs[c[0]] for c in CONFIGS)
    print(f"\nmeasured: lenet, global batch {batch}, median over {len(plain)} round(s)")
    print(f"{'configuration':<22}{'images/s':>10}{'ms/step':>10}{'allreduce ms/step':>19}")
    for label, rs in zip((c[0] for c in CONFIGS), (plain, one, two)):
        ar = _med([x["allreduce_s_per_step"] for x in rs]) * 1e3
        rate, ms = _med([x["images_per_s"] for x in rs]), _med([x["step_s"] for x in rs]) * 1e3
        print(f"{label:<22}{rate:>10,.0f}{ms:>10.1f}{(f'{ar:.2f}' if label != CONFIGS[0][0] else '-'):>19}")
    r2p = _med([b["images_per_s"] / a["images_per_s"] for a, b in zip(plain, two)])
    r21 = _med([b["images_per_s"] / a["images_per_s"] for a, b in zip(one, two)])
    share = _med([b["allreduce_s_per_step"] / b["step_s"] for b in two])
    print(f"2 ranks / plain 2 threads: {r2p:.2f}x   2 ranks / 1 rank: {r21:.2f}x   "
          f"allreduce share of a 2-rank step: {share:.0%} (median of per-round ratios)")
    return {"ratio_2ranks_plain": r2p, "ratio_2ranks_1rank": r21, "allreduce_share": share,
            "t1_lenet": _med([x["step_s"] for x in one])}


def ring_seconds(nbytes: float, k: int, bandwidth: float, latency: float) -> float:
    """t_comm of a ring allreduce of `nbytes` over `k` ranks (module docstring)."""
    return 2 * (k - 1) / k * nbytes / bandwidth + 2 * (k - 1) * latency


def model_table(t1: dict, params: dict, batch: int) -> None:
    print(f"\nmodelled: ring allreduce, compute t1/K per rank (global batch {batch}); speedup (efficiency)")
    print(f"{'model':<10}{'params':>10}{'t1 ms':>8}  {'network':<11}" + "".join(f"{'K=' + str(k):>12}" for k in KS)
          + "  where it stops paying")
    for name in t1:
        nbytes = 4.0 * params[name]
        for net, (bw, lat) in NETWORKS.items():
            speedups = [t1[name] / (t1[name] / k + ring_seconds(nbytes, k, bw, lat)) for k in KS]
            cells = [f"{sp:.1f} ({sp / k:.0%})" for k, sp in zip(KS, speedups)]
            half = [k for k, sp in zip(KS, speedups) if sp / k >= 0.5]
            peak = KS[int(np.argmax(speedups))]
            pays = (f">= 50% up to K={max(half)}" if half else "below 50% at K=2") + (
                f", speedup peaks at K={peak}" if peak < KS[-1] else f", speedup still rising at K={KS[-1]}")
            print(f"{name:<10}{params[name]:>10,}{t1[name] * 1e3:>8.0f}  {net:<11}" + "".join(f"{c:>12}" for c in cells)
                  + f"  {pays}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the measured configurations "
                   "(default: 3)")
    p.add_argument("--quick", action="store_true", help="1 round and fewer steps: a smoke run")
    p.add_argument("--images", type=int, default=None, help="training images per epoch for lenet (default: 1280)")
    p.add_argument("--batch", type=int, default=64, help="global batch (default: 64)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON document")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        doc = worker(args.worker, args.images, args.batch)
        if doc is not None:
            print(json.dumps(doc), flush=True)
        return 0
    rounds = 1 if args.quick else args.rounds
    images = args.images or (512 if args.quick else 1280)
    odd = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
    print(f"BLAS: {_blas_info()}; cores {len(os.sched_getaffinity(0))}; load {os.getloadavg()[0]:.1f}"
          + (f"; set in the environment: {odd} (quote runs with them unset)" if odd else ""), flush=True)
    runs = measure(rounds, images, args.batch)
    summary = report_measured(runs, args.batch)
    t1 = {"lenet": summary["t1_lenet"]}
    params = {"lenet": runs[CONFIGS[1][0]][0]["parameters"]}
    for name in MODELS[1:]:  # a few 1-thread steps of the whole batch
        few = args.batch * (2 if args.quick or name == "vgg-small" else 4)
        r = _spawn(0, 1, name, few, args.batch)
        t1[name], params[name] = r["step_s"], r["parameters"]
    model_table(t1, params, args.batch)
    if args.json:
        print(json.dumps({"runs": runs, "summary": summary, "t1": t1, "parameters": params}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
