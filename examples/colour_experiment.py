"""Colour needs 3-D kernels: an ordinary conv net against "separate 2-D convolutions" (issue 13).

The data is `featuremaps.data.synthetic.colour_conjunctions`: class 0 holds an isoluminant red↔green
edge (red and green change in opposite directions at one place), class 1 the same red and the same
green element at two places, class 2 a luminance edge (the control). Every channel's edge statistics
are the same in every class, so only a layer that combines channels at one place separates 0 from 1.

Three models, each conv → ReLU → global max pool → Dense(…, 3):
  (a) 3-D kernels: Conv2D(3, M, 5) — every kernel spans R, G and B;
  (b) separate 2-D convolutions: depthwise Conv2D(3, 3·M', 5, groups=3) — M' kernels per channel,
      no kernel sees two channels;
  (c) (b) plus a 1×1 Conv2D(3·M', K, 1) right after the depthwise conv, BEFORE the ReLU: local mixing.
      Mixing before the ReLU makes each of (c)'s maps a 5×5×3 kernel of rank ≤ M' per channel, i.e. a
      3-D kernel again, so (c) asks whether mixing at one place is what (b) lacks.

Run:  python examples/colour_experiment.py           (3 seeds × 3 models; about 4 min on 2 cores)
      python examples/colour_experiment.py --quick   (1 seed, 2 epochs, 600 images; a few seconds)

Each seed s draws its own data (train stream [s, 0], test stream [s, 1]: with the default sizes these
are exactly `featuremaps.data.load('colour-conjunctions', split, seed=s)`), initial weights
(`np.random.default_rng(s)`) and batch order (`fit(seed=s)`). The table gives the test accuracy
(mean ± sd over seeds, sd with ddof=1), the per-class accuracy, and "0 vs 1": on test images of
classes 0 and 1, how often the true class's logit beats the other's (chance 50%), the conjunction
that the claim is about. The learned kernels of (a) (last seed) are saved as RGB tiles (--kernels).
"""
import argparse
import time

import numpy as np

import featuremaps as fm
from featuremaps import nn
from featuremaps.data.synthetic import COLOUR_CLASSES, colour_conjunctions

NORMALIZATION = {"mean": [0.5] * 3, "std": [0.2] * 3}  # images are grey ~0.5 with edges of ±0.14–0.22
M, M_DEPTH, K_MIX = 16, 15, 16  # (a)'s maps; (b)'s kernels per channel; (c)'s 1×1 maps


def conv(*args, rng, **kwargs):
    return nn.Conv2D(*args, rng=rng, init="he_uniform", **kwargs)


def head(maps: int, rng) -> list:
    return [nn.ReLU(), nn.GlobalMaxPool2D(), nn.Dense(maps, 3, rng=rng)]


def build(name: str, rng: np.random.Generator) -> nn.Sequential:
    """One of the three models (module docstring), its weights drawn from `rng`."""
    if name == "a":
        layers = [conv(3, M, 5, rng=rng), *head(M, rng)]
    elif name == "b":
        layers = [conv(3, 3 * M_DEPTH, 5, groups=3, rng=rng), *head(3 * M_DEPTH, rng)]
    elif name == "c":
        layers = [conv(3, 3 * M_DEPTH, 5, groups=3, rng=rng), conv(3 * M_DEPTH, K_MIX, 1, rng=rng), *head(K_MIX, rng)]
    else:
        raise ValueError(f"build: name must be 'a', 'b' or 'c'; received {name!r}")
    return nn.Sequential(layers, input_shape=(32, 32, 3))


MODELS = {"a": "(a) 3-D kernels", "b": "(b) separate 2-D", "c": "(c) 2-D + 1x1 mix"}


def train_model(name: str, seed: int, train: tuple, epochs: int, lr: float) -> nn.Sequential:
    """Model `name` trained on `train` (images, labels) with `seed` (weights, batch order)."""
    model = build(name, np.random.default_rng(seed))
    opt = fm.optim.Adam(model.parameters(), lr=lr)
    fm.train.fit(model, train, epochs=epochs, batch_size=64, optimizer=opt, seed=seed, normalization=NORMALIZATION)
    return model


def scores(model, test: tuple) -> dict:
    """Test accuracy, per-class accuracy and "0 vs 1" (module docstring) of a trained model."""
    images, labels = test
    result = fm.train.evaluate(model, (images, labels), normalization=NORMALIZATION)
    pair = labels < 2  # the conjunction: class 0 against class 1, on their images only
    logits = fm.train.predict_logits(model, images[pair], normalization=NORMALIZATION)  # (n01, 3)
    rows = np.arange(pair.sum())
    wins = logits[rows, labels[pair]] > logits[rows, 1 - labels[pair]]
    return {"model": model, "accuracy": result["accuracy"], "per_class": result["per_class_accuracy"],
            "pair": float(wins.mean())}


def run_one(name: str, seed: int, data: dict, epochs: int, lr: float) -> dict:
    """Train model `name` with `seed` and return its test figures (`scores`)."""
    return scores(train_model(name, seed, data["train"], epochs, lr), data["test"])


def opponent_count(layer) -> tuple[int, int]:
    """How many of a 3-channel conv's kernels are red–green opponent: the correlation of their R and G
    slices is below −0.5 (a luminance kernel has R ≈ G, correlation near +1)."""
    w = layer.weight.data.astype(np.float64)  # (kh, kw, 3, out)
    r, g = w[:, :, 0].reshape(-1, w.shape[3]), w[:, :, 1].reshape(-1, w.shape[3])  # (kh·kw, out) each
    r, g = r - r.mean(0), g - g.mean(0)
    corr = (r * g).sum(0) / np.maximum(np.sqrt((r * r).sum(0) * (g * g).sum(0)), 1e-12)  # (out,)
    return int((corr < -0.5).sum()), w.shape[3]


def mean_sd(values) -> str:
    v = 100 * np.asarray(values)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():5.1f} ± {sd:4.1f}"


def print_table(results: dict, counts: dict, n_seeds: int) -> None:
    """The accuracy table: {model name: [scores per seed]}, {model name: parameters}."""
    short = ["0 R-G edge %", "1 apart %", "2 lum. %"]  # COLOUR_CLASSES, abbreviated for the columns
    header = (f"{'model':<18} {'params':>6}  {'test acc %':>12}  " + "  ".join(f"{s:>12}" for s in short)
              + f"  {'0 vs 1 %':>12}")
    print(f"classes: {', '.join(f'{i} {c}' for i, c in enumerate(COLOUR_CLASSES))} (chance 33.3%; 0 vs 1: 50%)")
    print(header)
    print("-" * len(header))
    for name, label in MODELS.items():
        rs = results[name]
        per_class = [mean_sd([r["per_class"][k] for r in rs]) for k in range(3)]
        print(f"{label:<18} {counts[name]:>6}  {mean_sd([r['accuracy'] for r in rs]):>12}  "
              + "  ".join(f"{c:>12}" for c in per_class) + f"  {mean_sd([r['pair'] for r in rs]):>12}")
    print(f"(mean ± sd over {n_seeds} seed(s), in %)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, 600/300 images (a smoke test)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model (default 5; --quick: 2)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument("--kernels", default="colour_kernels_a.png",
                   help="PNG path for (a)'s first-layer kernels as RGB tiles ('' to skip)")
    args = p.parse_args(argv)
    seeds = range(args.seeds or (1 if args.quick else 3))
    epochs = args.epochs or (2 if args.quick else 5)
    n_train, n_test = (600, 300) if args.quick else (3000, 1500)

    counts = {name: build(name, np.random.default_rng(0)).num_parameters() for name in MODELS}
    print(f"parameters: (a) {counts['a']}, (b) {counts['b']}, (c) {counts['c']}; "
          f"{len(seeds)} seed(s), {epochs} epochs, {n_train} train / {n_test} test images")
    results = {name: [] for name in MODELS}
    t_start = time.perf_counter()
    for seed in seeds:
        data = {"train": colour_conjunctions(n_train, [seed, 0]), "test": colour_conjunctions(n_test, [seed, 1])}
        for name in MODELS:
            t0 = time.perf_counter()
            results[name].append(run_one(name, seed, data, epochs, args.lr))
            r = results[name][-1]
            print(f"seed {seed} {MODELS[name]}: test accuracy {100 * r['accuracy']:.1f}%, "
                  f"0 vs 1 {100 * r['pair']:.1f}% ({time.perf_counter() - t0:.1f} s)")

    print()
    print_table(results, counts, len(seeds))
    print(f"({time.perf_counter() - t_start:.0f} s)")

    first = results["a"][-1]["model"][0]
    opponent, total = opponent_count(first)
    print(f"(a)'s first layer: {opponent} of {total} kernels are red–green opponent (corr(R, G) < −0.5)")
    if args.kernels:
        from featuremaps.pictures import kernel_grid
        path = kernel_grid(first, args.kernels, name="(a) conv1")
        print(f"saved (a)'s kernels as RGB tiles: {path}")


if __name__ == "__main__":
    main()
