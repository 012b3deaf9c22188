"""Train the zoo's MNIST models on the 5,000-image sample and test them on the official 10,000 images;
compare LeNet's training/inference speed and memory with the same network in PyTorch.

    python bench/train_mnist.py [--models lenet,lenet5,cnn] [--epochs 10] [--quick] [--no-torch] [--json]

Data: `../shared/data/mnist` next to the repository (the 5,000-image training sample and the
official t10k test set). Every model uses the same recipe (RECIPE below): seed 0, batch 64,
momentum SGD, cosine learning-rate annealing over the run and random shifts of up to 2 pixels
(without them the 5,000 images are memorised by epoch 6 and the test accuracy stalls near 97.4%;
see the sweep at the end of this docstring). Each model, and the PyTorch peer, runs in a fresh process of its
own (torch's and OpenBLAS's thread pools fight when they share a process), on 2 threads.

Figures per process:
- test accuracy on the 10,000 official test images after the last epoch;
- wall time: loading the data and training (no validation during training);
- training images/s: median over epochs 2..N of (images / time in training steps), where a step
  is everything the training loop does per batch (gather, shift and normalise the batch, forward,
  loss, backward, optimiser update); featuremaps is timed inside `featuremaps.train.fit`;
- inference images/s at batch 64: the whole test set, eval mode, no autograd, median of 3 passes;
- peak RSS of the process (`getrusage(RUSAGE_SELF).ru_maxrss`).
The machine is shared, so the speed ratios come from separate short runs (2 epochs each, training
and inference timed as above) that alternate featuremaps and torch `--speed-rounds` times; each
round gives a ratio of two neighbouring runs and the median ratio is reported. Peak RSS comes from
the full 10-epoch runs. With numba installed (the `fast` extra) featuremaps runs its compiled
kernels (equal to the NumPy path to float rounding), and each round also times the pure NumPy
path (FEATUREMAPS_NUMBA=0). Each round also prints the images/s lenet's GEMMs alone would allow
(`_lenet_gemms`, back to back, nothing else): a ceiling for anything built on NumPy's BLAS.
The PyTorch peer trains the same LeNet (conv 20@5×5, pool, tanh, conv 50@5×5, pool, tanh, dense
500, tanh, dense 10; NCHW) with torch.optim.SGD + CosineAnnealingLR on the same batches: the same
`epoch_order`, the same shifts (`featuremaps.data.random_shift` with the same per-batch generators)
and the same normalisation. Bars: accuracy lenet ≥ 97.5%, lenet5 ≥ 97%, cnn ≥ 98% (after 10
epochs); lenet training ≥ 1.0× torch's images/s, inference ≥ 1.0×, peak RSS ≤ 1.5× torch's.

Recipe sweep for lenet, 10 epochs, test accuracy (one seed each; the spread between seeds is a few
tenths of a percent): lr 0.05/momentum 0.9 constant 97.47%; 0.02/0.9 97.17%; 0.01/0.9 96.65%;
0.03/0.9 97.39%; 0.1/0.9 96.93%; 0.1/0.5 97.33%; 0.05/0.5 96.72%; 0.05/0.9 cosine 97.36%;
0.1/0.9 cosine 97.01%; 0.05/0.9 shifts 96.86%; 0.05/0.9 cosine + shifts 98.30% (the recipe).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")

SEED, BATCH = 0, 64
RECIPE = {"lr": 0.05, "momentum": 0.9, "schedule": "cosine", "shift": 2}
BARS = {"lenet": 0.975, "lenet5": 0.97, "cnn": 0.98}  # test accuracy after 10 epochs


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} x{i.get('num_threads')}"
                     for i in threadpool_info())


def _load(test_limit):
    from featuremaps import data
    train = data.load("mnist", "train", data_dir=DATA, download=False)
    test = data.load("mnist", "test", data_dir=DATA, download=False)
    if test_limit:
        test = test.subset(np.arange(test_limit))
    return train, test


def _median_rate(rates) -> float:
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


# --- workers (each in its own process) -------------------------------------------------------------

def _lenet_gemms(batch: int, training: bool) -> list:
    """The matrix products featuremaps' engine runs for one lenet step (`functional.conv` and
    `linear`), as (a, b) float32 operand pairs in its layouts: the floor under any NumPy step."""
    rng = np.random.default_rng(0)

    def mat(shape, order="C"):
        return np.asarray(rng.standard_normal(shape), np.float32, order=order)
    m1, m2 = batch * 24 * 24, batch * 8 * 8
    pairs = [(mat((m1, 26), "F"), mat((26, 20))),  # conv1: colsᵀ built transposed, bias row folded in
             (mat((m2, 500)), mat((500, 50))),  # conv2: im2col · W
             (mat((batch, 800)), mat((800, 500))), (mat((batch, 500)), mat((500, 10)))]  # fc1, fc2
    if training:
        pairs += [(mat((m1, 26), "F").T, mat((m1, 20))),  # conv1 dW (and db) = colsᵀ · dy
                  (mat((m2, 500)).T, mat((m2, 50))),  # conv2 dW
                  (mat((batch * 8 * 12, 250)), mat((250, 100))),  # conv2 dx: row windows · reversed kernel
                  (mat((batch, 800)).T, mat((batch, 500))), (mat((batch, 500)), mat((500, 800))),  # fc1 dW, dx
                  (mat((batch, 500)).T, mat((batch, 10))), (mat((batch, 10)), mat((10, 500)))]  # fc2 dW, dx
    return pairs


def _gemm_floor_images_per_s(training: bool, repeats: int = 200) -> float:
    """Images/s if a lenet step did nothing but its GEMMs (median of `repeats`)."""
    pairs = _lenet_gemms(BATCH, training)
    outs = [np.empty((a.shape[0], b.shape[1]), np.float32) for a, b in pairs]
    times = []
    for i in range(repeats + 20):
        t0 = time.perf_counter()
        for (a, b), out in zip(pairs, outs):
            np.matmul(a, b, out=out)
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return BATCH / statistics.median(times)


def _time_inference(model, x) -> float:
    """Images/s of model's forward over x at batch 64 (eval, no autograd), median of 3 passes."""
    from featuremaps import Tensor, no_grad
    model.eval()
    with no_grad():
        model(Tensor(x[:BATCH]))  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for lo in range(0, len(x), BATCH):
                model(Tensor(x[lo:lo + BATCH]))
            times.append(time.perf_counter() - t0)
    return len(x) / statistics.median(times)


def worker_featuremaps_infer(model_name: str, weights: str) -> dict:
    """The trained weights' forward over the whole test set in a fresh process: what a user who
    loads a checkpoint sees (no training state in the process)."""
    from featuremaps import models, train
    train_ds, test_ds = _load(None)
    model = models.get(model_name, rng=np.random.default_rng(SEED))
    with np.load(weights) as z:
        model.load_state_dict({k: z[k] for k in z.files})
    x = train.normalize_images(test_ds.images, train.normalization_for(train_ds))
    return {"infer_images_per_s": _time_inference(model, x), "peak_rss_mib": _rss_mib(), "test_n": len(x)}


def worker_featuremaps(model_name: str, epochs: int, test_limit: int | None, recipe: dict,
                       save_weights: str | None = None) -> dict:
    from featuremaps import models, optim, schedules, train
    from featuremaps.functional import accel
    from featuremaps.progress import ProgressBar

    t_start = time.perf_counter()
    train_ds, test_ds = _load(test_limit)
    model = models.get(model_name, rng=np.random.default_rng(SEED))
    opt = optim.SGD(model.parameters(), lr=recipe["lr"], momentum=recipe["momentum"])
    sched = schedules.get(recipe["schedule"], recipe["lr"], epochs=epochs)
    reporter = ProgressBar(tty=False)
    numba = accel.numba_enabled()
    reporter.message(f"[featuremaps {model_name}] BLAS: {_blas_info()}; numba kernels: {'on' if numba else 'off'}")
    res = train.fit(model, train_ds, None, epochs=epochs, batch_size=BATCH, optimizer=opt, seed=SEED,
                    schedule=sched, augment=recipe["shift"], reporter=reporter)
    t_train = time.perf_counter() - t_start
    norm = train.normalization_for(train_ds)
    ev = train.evaluate(model, test_ds, normalization=norm)
    if save_weights:
        np.savez(save_weights, **model.state_dict())
    x = train.normalize_images(test_ds.images, norm)
    infer = _time_inference(model, x)
    return {"library": "featuremaps", "model": model_name, "epochs": epochs, "recipe": recipe,
            "test_accuracy": ev["accuracy"], "test_loss": ev["loss"], "test_n": ev["n"], "wall_s": t_train,
            "train_images_per_s": _median_rate([r["images_per_s"] for r in res.history]),
            "infer_images_per_s": infer, "peak_rss_mib": _rss_mib(),
            "numba": numba, "history": res.history,
            "gemm_floor": {"train_images_per_s": _gemm_floor_images_per_s(True),
                           "infer_images_per_s": _gemm_floor_images_per_s(False)}}


def worker_torch(epochs: int, test_limit: int | None, recipe: dict) -> dict:
    import torch
    from torch import nn
    from featuremaps import data

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    t_start = time.perf_counter()
    train_ds, test_ds = _load(test_limit)
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Tanh(), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
                        nn.Tanh(), nn.Flatten(), nn.Linear(800, 500), nn.Tanh(), nn.Linear(500, 10))
    for m in net:  # the zoo's lenet init: Glorot-uniform weights, zero biases, zero output layer
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.zeros_(net[-1].weight)
    opt = torch.optim.SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"])
    if recipe["schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    elif recipe["schedule"] in (None, "none"):
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    else:
        raise SystemExit(f"torch peer: schedule {recipe['schedule']!r} is not wired up here")
    lossf = nn.CrossEntropyLoss()

    def prep(images):  # the same normalisation, NHWC uint8 -> NCHW float32
        x = data.normalize(images, dataset="mnist")
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    images, labels = train_ds.images, train_ds.labels
    rates = []
    for epoch in range(epochs):
        net.train()
        order = data.epoch_order(len(labels), SEED, epoch)
        seen, busy = 0, 0.0
        for b, lo in enumerate(range(0, len(order), BATCH)):
            t0 = time.perf_counter()
            idx = order[lo:lo + BATCH]
            xb = images[idx]
            if recipe["shift"]:  # the generator featuremaps.data.Loader uses for batch b of this epoch
                xb = data.random_shift(xb, recipe["shift"], np.random.default_rng([SEED, epoch, b, 1]))
            x, y = prep(xb), torch.from_numpy(labels[idx])
            opt.zero_grad()
            loss = lossf(net(x), y)
            loss.backward()
            opt.step()
            busy += time.perf_counter() - t0
            seen += len(idx)
        sched.step()
        rates.append(seen / busy)
        print(f"[torch lenet] epoch {epoch + 1}/{epochs}  last loss {loss.item():.4f}  {seen / busy:,.0f} img/s",
              file=sys.stderr, flush=True)
    t_train = time.perf_counter() - t_start
    net.eval()
    xt = prep(test_ds.images)
    with torch.inference_mode():
        logits = torch.cat([net(xt[lo:lo + 256]) for lo in range(0, len(xt), 256)])
        acc = float((logits.argmax(1).numpy() == test_ds.labels).mean())
        net(xt[:BATCH])
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for lo in range(0, len(xt), BATCH):
                net(xt[lo:lo + BATCH])
            times.append(time.perf_counter() - t0)
    return {"library": "torch", "model": "lenet", "epochs": epochs, "recipe": recipe, "test_accuracy": acc,
            "test_n": len(xt), "wall_s": t_train, "train_images_per_s": _median_rate(rates),
            "infer_images_per_s": len(xt) / statistics.median(times), "peak_rss_mib": _rss_mib(),
            "torch_version": torch.__version__}


# --- driver ----------------------------------------------------------------------------------------

def _spawn(args: list[str], **env_extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], stdout=subprocess.PIPE, text=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet,lenet5,cnn", help="comma-separated (default: lenet,lenet5,cnn)")
    p.add_argument("--epochs", type=int, default=10, help="default: 10")
    p.add_argument("--quick", action="store_true", help="2 epochs, lenet only, 2,000 test images: a smoke run")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--json", action="store_true", help="also print all results as one JSON document")
    p.add_argument("--lr", type=float, default=None, help=f"override the recipe's learning rate ({RECIPE['lr']})")
    p.add_argument("--momentum", type=float, default=None, help=f"override the momentum ({RECIPE['momentum']})")
    p.add_argument("--schedule", default=None, help=f"override the schedule ({RECIPE['schedule']}; or none)")
    p.add_argument("--shift", type=int, default=None, help=f"override the augmentation shift ({RECIPE['shift']} "
                   "pixels; 0 = none)")
    p.add_argument("--speed-rounds", type=int, default=3,
                   help="alternating featuremaps/torch speed runs for the lenet ratios (default: 3)")
    p.add_argument("--worker", choices=["featuremaps", "featuremaps-infer", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--save-weights", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--test-limit", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    recipe = dict(RECIPE)
    recipe.update({k: getattr(args, k) for k in RECIPE if getattr(args, k) is not None})

    if args.worker == "featuremaps":
        print(json.dumps(worker_featuremaps(args.model, args.epochs, args.test_limit, recipe, args.save_weights)))
        return 0
    if args.worker == "featuremaps-infer":
        print(json.dumps(worker_featuremaps_infer(args.model, args.save_weights)))
        return 0
    if args.worker == "torch":
        print(json.dumps(worker_torch(args.epochs, args.test_limit, recipe)))
        return 0

    if not os.path.isdir(DATA):
        raise SystemExit(f"no MNIST data at {DATA} (see ../shared/data/README.md)")
    names = ["lenet"] if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in BARS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {', '.join(BARS)}")
    epochs = 2 if args.quick else args.epochs
    extra = ["--epochs", str(epochs)] + (["--test-limit", "2000"] if args.quick else [])
    for k in RECIPE:
        if getattr(args, k) is not None:
            extra += [f"--{k}", str(getattr(args, k))]

    results = [_spawn(["--worker", "featuremaps", "--model", name, *extra]) for name in names]
    peer, rounds = None, []
    if "lenet" in names and not args.no_torch:
        peer = _spawn(["--worker", "torch", *extra])
        quick = ["--epochs", "2", "--test-limit", "5000"] + extra[2:]
        keys = ("train_images_per_s", "infer_images_per_s")
        for i in range(max(args.speed_rounds, 0)):
            weights = os.path.join(tempfile.mkdtemp(prefix="fm-bench-"), "lenet.npz")
            f = _spawn(["--worker", "featuremaps", "--model", "lenet", "--save-weights", weights, *quick])
            fresh = _spawn(["--worker", "featuremaps-infer", "--model", "lenet", "--save-weights", weights])
            shutil.rmtree(os.path.dirname(weights), ignore_errors=True)
            t = _spawn(["--worker", "torch", *quick])
            rnd = {"featuremaps": {k: f[k] for k in keys}, "torch": {k: t[k] for k in keys},
                   "fresh_inference": fresh, "numba": f["numba"], "gemm_floor": f["gemm_floor"]}
            if f["numba"]:  # the pure NumPy path too, to show what the fast extra is worth
                npy = _spawn(["--worker", "featuremaps", "--model", "lenet", *quick], FEATUREMAPS_NUMBA="0")
                rnd["numpy_only"] = {k: npy[k] for k in keys}
            rounds.append(rnd)

    print(f"\nMNIST: 5,000 training images, {results[0]['test_n']:,} official test images, batch {BATCH}, "
          f"{epochs} epochs, seed {SEED}; SGD lr {recipe['lr']} momentum {recipe['momentum']}, "
          f"schedule {recipe['schedule']}, shifts ±{recipe['shift']} px")
    print(f"{'model':<8} {'test acc':>9} {'bar':>6} {'':>5} {'wall s':>7} {'train img/s':>12} {'infer img/s':>12} "
          f"{'peak RSS MiB':>13}")
    ok_all = True
    for r in results:
        bar = BARS[r["model"]]
        ok = r["test_accuracy"] >= bar
        if epochs >= 10:
            ok_all &= ok
        verdict = _verdict(ok) if epochs >= 10 else "n/a"  # the bars are for 10 epochs
        print(f"{r['model']:<8} {100 * r['test_accuracy']:8.2f}% {100 * bar:5.1f}% {verdict:>5} "
              f"{r['wall_s']:7.1f} {r['train_images_per_s']:12,.0f} {r['infer_images_per_s']:12,.0f} "
              f"{r['peak_rss_mib']:13.0f}")
    if peer:
        print(f"{'torch':<8} {100 * peer['test_accuracy']:8.2f}% {'':>6} {'':>5} {peer['wall_s']:7.1f} "
              f"{peer['train_images_per_s']:12,.0f} {peer['infer_images_per_s']:12,.0f} {peer['peak_rss_mib']:13.0f}"
              f"   (torch {peer['torch_version']}, lenet)")
        fm = next(r for r in results if r["model"] == "lenet")
        pairs = rounds or [{"featuremaps": fm, "torch": peer}]
        ratio = {k: statistics.median(r["featuremaps"][k] / r["torch"][k] for r in pairs)
                 for k in ("train_images_per_s", "infer_images_per_s")}
        if rounds:
            print(f"\nspeed rounds (lenet, 2 epochs each; img/s featuremaps vs torch; featuremaps "
                  f"{'with' if rounds[0]['numba'] else 'without'} the numba kernels):")
            for i, r in enumerate(rounds, 1):
                f, t, fl = r["featuremaps"], r["torch"], r["gemm_floor"]
                line = (f"  round {i}: train {f['train_images_per_s']:,.0f} vs {t['train_images_per_s']:,.0f}  "
                        f"inference {f['infer_images_per_s']:,.0f} vs {t['infer_images_per_s']:,.0f}")
                if "numpy_only" in r:
                    n_ = r["numpy_only"]
                    line += (f"   NumPy only: train {n_['train_images_per_s']:,.0f}  "
                             f"inference {n_['infer_images_per_s']:,.0f}")
                line += (f"   trained weights in a fresh process: inference "
                         f"{r['fresh_inference']['infer_images_per_s']:,.0f} (peak RSS "
                         f"{r['fresh_inference']['peak_rss_mib']:.0f} MiB)")
                print(line + f"   GEMMs alone: train {fl['train_images_per_s']:,.0f}  "
                      f"inference {fl['infer_images_per_s']:,.0f}")
            floor = {k: statistics.median(r["gemm_floor"][k] / r["torch"][k] for r in rounds)
                     for k in ("train_images_per_s", "infer_images_per_s")}
            print(f"  lenet's GEMMs alone (no im2col, pooling, activations or Python), as a ratio to torch's "
                  f"whole step: training {floor['train_images_per_s']:.2f}×, inference "
                  f"{floor['infer_images_per_s']:.2f}× (median of {len(rounds)})")
            fresh = statistics.median(r["fresh_inference"]["infer_images_per_s"] / r["torch"]["infer_images_per_s"]
                                      for r in rounds)
            print(f"  inference of the trained weights in a fresh process (what a user loading the checkpoint "
                  f"sees) / torch's in its training process: {fresh:.2f}× (median of {len(rounds)})")
            if all("numpy_only" in r for r in rounds):
                gain = {k: statistics.median(r["featuremaps"][k] / r["numpy_only"][k] for r in rounds)
                        for k in ("train_images_per_s", "infer_images_per_s")}
                print(f"  numba kernels vs the NumPy path: training {gain['train_images_per_s']:.2f}×, "
                      f"inference {gain['infer_images_per_s']:.2f}× the images/s")
        tr, inf = ratio["train_images_per_s"], ratio["infer_images_per_s"]
        mem = fm["peak_rss_mib"] / peer["peak_rss_mib"]
        print(f"\nlenet featuremaps / torch (median of {len(pairs)}):  "
              f"training {tr:.2f}× (bar ≥ 1.0: {_verdict(tr >= 1.0)})  "
              f"inference {inf:.2f}× (bar ≥ 1.0: {_verdict(inf >= 1.0)})  "
              f"peak RSS {mem:.2f}× (bar ≤ 1.5: {_verdict(mem <= 1.5)})")
        ok_all &= tr >= 1.0 and inf >= 1.0 and mem <= 1.5
    if args.json:
        print(json.dumps({"results": results, "torch": peer, "speed_rounds": rounds}, indent=2))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
