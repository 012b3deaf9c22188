"""Edges into corners: a second conv layer combines first-layer orientations (issue 13).

The data is `featuremaps.data.synthetic.corners`: 28 × 28 grey images of two bright segments of the
same length that leave one point in directions phi and phi + angle; class 0 `corner` (they share an
end point), class 1 `cross` (they cross at their midpoints), class 2 `bars` (apart). Every class
holds the same two segment orientations, so only how the segments meet gives the class away.

The model has two conv layers (HWIO weights, NHWC maps):
  conv1 Conv2D(1, 8, 5) → ReLU → MaxPool2D(2) → conv2 Conv2D(8, 16, 5) → ReLU → GlobalMaxPool2D
  → Dense(16, 3).
A conv1 unit sees 5 × 5 pixels, a conv2 unit 14 × 14: enough for the vertex of a corner and a few
pixels of each arm (the arms are 8–11 pixels long).

Three findings are measured on every seed, all with noise-free probes (`corner_probe`) drawn on the
data's grey levels (background 28, ink 28 + 180 = 208, see `as_input`):
  1. `tuning_curves`: conv1 maps are orientation-selective (their response to a long bar peaks at
     one orientation);
  2. `corner_selectivity`: some conv2 maps respond more to a corner than to a cross or to single
     bars made of the same two segments;
  3. `remix`: for the most corner-selective conv2 map at its preferred corner, `explain` splits the
     unit's value into one partial sum per conv1 map; the two largest come from conv1 maps whose
     preferred orientations differ (by ≥ 30°): the corner is two edge orientations, remixed. That is
     the weak criterion; the strong one (`matches_segments`) also asks that both of those conv1 maps
     be orientation-selective (OSI ≥ 0.5) and that each prefer, within 22.5°, a different one of the
     probe's two segment orientations. The summary line counts the seeds meeting each.

Status of finding 3: the weak criterion holds on all 3 default seeds, the strong one on none. On every
seed at least one of the two top inputs is broadly tuned (OSI < 0.5), and the two preferred
orientations never fall one on each of the probe's two segments (at most one of them matches). Over
all 16 conv2 maps, each at its own preferred corner, none meets the strong criterion either (checked
with the defaults and with 12 epochs at lr 0.003). Variants tried, none of them meeting it on any of 3
seeds (the weak one held on 1–3): 4 or 6 conv1 maps, 3 × 3 conv1 kernels, 6–12 epochs at lr
0.01–0.003, and decoupled weight decay on conv1 (test accuracy 97.4–99.8% per seed, but 92.5–96.7%
with the strongest decay). Other measures of tuning were tried too: the mean over positions, the
centre position only, a 10-pixel bar, an oriented step edge (either polarity), and the kernel's own
response to oriented gratings (which agrees with the bar probe about the preferred orientations).
So the corner-selective conv2 maps combine conv1 maps of different orientations, but not two clean
detectors of the corner's own arms.

Run:  python examples/corners_experiment.py           (3 seeds)
      python examples/corners_experiment.py --quick   (1 seed, 1 epoch, 600 images; a few seconds)

Each seed s draws its own data (train stream [s, 0], test stream [s, 1]), initial weights
(`np.random.default_rng(s)`) and batch order (`fit(seed=s)`). Accuracies are mean ± sd over seeds
(sd with ddof=1).
"""
import argparse
import time

import numpy as np

import featuremaps as fm
from featuremaps import nn
from featuremaps.data.synthetic import CORNER_ANGLES, CORNER_CLASSES, CORNER_DIRECTIONS, corner_probe, corners
from featuremaps.inspect.activations import activations
from featuremaps.inspect.explain import explain

NORMALIZATION = {"mean": [0.2], "std": [0.3]}  # mostly dark (~0.1) with bright strokes (~0.75)
LAYER1, LAYER2 = "conv1", "conv2"  # the layer names `explain` and `activations` address
ACT1, ACT2 = "relu1", "relu2"
MAPS1, MAPS2 = 8, 16
KERNEL1, KERNEL2 = 5, 5  # conv kernel sizes
BACKGROUND, INK = 28.0, 180.0  # probe grey levels: the middle of the data's ranges (15–40, 150–210)
OSI_THRESHOLD = 0.5  # a conv1 map is orientation-selective when its OSI is at least this
CSI_THRESHOLD = 0.2  # a conv2 map is corner-selective when its CSI is above this (corner ≥ 1.5× the rest)
DIFFER_DEGREES = 30.0  # remix: the top two input maps' preferred orientations differ by at least this
MATCH_DEGREES = 22.5  # remix, strong test: an input map's preferred orientation is within this of a segment's


def build(rng: np.random.Generator) -> nn.Sequential:
    """The two-conv-layer model (module docstring), its weights drawn from `rng`."""
    layers = [(LAYER1, nn.Conv2D(1, MAPS1, KERNEL1, rng=rng, init="he_uniform")), (ACT1, nn.ReLU()),
              ("pool1", nn.MaxPool2D(2)),
              (LAYER2, nn.Conv2D(MAPS1, MAPS2, KERNEL2, rng=rng, init="he_uniform")), (ACT2, nn.ReLU()),
              ("gmax", nn.GlobalMaxPool2D()), ("dense", nn.Dense(MAPS2, 3, rng=rng))]
    return nn.Sequential(layers, input_shape=(28, 28, 1))


def train(seed: int, *, n_train: int = 3000, n_test: int = 1500, epochs: int = 4, lr: float = 0.01) -> dict:
    """Train `build(default_rng(seed))` on `corners(n_train, [seed, 0])`; returns `model`,
    `accuracy` (test, on `corners(n_test, [seed, 1])`) and `per_class` (a list, class order)."""
    model = build(np.random.default_rng(seed))
    opt = fm.optim.Adam(model.parameters(), lr=lr)
    fm.train.fit(model, corners(n_train, [seed, 0]), epochs=epochs, batch_size=64, optimizer=opt, seed=seed,
                 normalization=NORMALIZATION, plot=False)
    result = fm.train.evaluate(model, corners(n_test, [seed, 1]), normalization=NORMALIZATION)
    return {"model": model, "accuracy": float(result["accuracy"]),
            "per_class": [float(a) for a in result["per_class_accuracy"]]}


def as_input(probe: np.ndarray) -> np.ndarray:
    """A probe in [0, 1] (h, w, 1) → the model's input: drawn on the data's grey levels
    (BACKGROUND + INK · probe, rounded to uint8 like the data) and normalised like it."""
    img = np.clip(np.rint(BACKGROUND + INK * probe), 0, 255).astype(np.uint8)[None]  # (1, h, w, 1)
    return fm.train.normalize_images(img, NORMALIZATION)[0]  # (h, w, 1)


def map_maxima(model, probe: np.ndarray, layer: str) -> np.ndarray:
    """Each map's maximum over positions of `layer`'s output for one probe, (maps,)."""
    out = {a.name: a.array for a in activations(model, as_input(probe))}[layer]  # (h, w, maps)
    return out.max(axis=(0, 1))


def orientation_selectivity(curves: np.ndarray) -> np.ndarray:
    """OSI = 1 − min/max of each row of `curves` (n_maps, n_angles), in [0, 1]: 0 for a flat curve
    (or one that is 0 everywhere), 1 when the map does not answer its worst orientation at all, 0.5
    when it answers it half as much as its best. (The circular variance is a gentler index; with a
    5 × 5 kernel and a maximum over positions even an ideal edge detector's curve is broad, and the
    depth of the curve is what tells a tuned kernel from a blob.)"""
    top = curves.max(axis=1)  # (n_maps,)
    return np.where(top > 0, 1.0 - curves.min(axis=1) / np.maximum(top, 1e-12), 0.0)


def tuning_curves(model, angles=np.arange(0, 180, 15), *, length: float = 26.0) -> dict:
    """Orientation tuning of every conv1 map.

    Probe: a long bar (`corner_probe(theta, 0, kind='bar', length=26)`, 2 pixels wide, through the
    middle) at each orientation theta (degrees, 0 = horizontal, counter-clockwise). A bar, not a step
    edge, because the data's strokes are bars: a map tuned to one side of a stroke answers it too.
    Response = the maximum over positions of the map's post-ReLU output (the bar crosses many
    windows; the best-placed one counts).

    Returns `angles`, `curves` (n_maps, n_angles), `preferred` (n_maps,) the angle of each curve's
    maximum, `osi` (n_maps,) from `orientation_selectivity`, `selective` the indices of the maps with
    osi ≥ OSI_THRESHOLD, and `threshold`.
    """
    angles = np.asarray(angles, dtype=np.float64)
    curves = np.stack([map_maxima(model, corner_probe(t, 0, kind="bar", length=length), ACT1)
                       for t in angles], axis=1).astype(np.float64)  # (n_maps, n_angles)
    osi = orientation_selectivity(curves)
    return {"angles": angles, "curves": curves, "preferred": angles[curves.argmax(axis=1)], "osi": osi,
            "selective": np.flatnonzero(osi >= OSI_THRESHOLD), "threshold": OSI_THRESHOLD}


def _unit(degrees: float) -> np.ndarray:
    """The (row, col) unit vector of direction `degrees` (0 = right, 90 = up), as in `corner_probe`."""
    t = np.deg2rad(degrees)
    return np.array([-np.sin(t), np.cos(t)])


def probe_set(phi: float, angle: float, centre, length: float = 10.0) -> dict:
    """The probes of one (phi, angle) at one vertex `centre`: the `corner`, the `cross` of the same two
    segments (crossing at `centre`), and each segment alone where the corner has it (`bars`, a list)."""
    c = np.asarray(centre, dtype=np.float64)
    bars = [corner_probe(d, 0, kind="bar", length=length, centre=c + length / 2 * _unit(d))
            for d in (phi, phi + angle)]
    return {"corner": corner_probe(phi, angle, length=length, centre=c),
            "cross": corner_probe(phi, angle, kind="cross", length=length, centre=c), "bars": bars}


CENTRES = [(13.5, 13.5), (11.5, 11.5), (11.5, 15.5), (15.5, 11.5), (15.5, 15.5)]  # vertices (row, col)


def corner_selectivity(model, centres=CENTRES) -> dict:
    """Corner selectivity of every conv2 map.

    For each (phi, angle) of the data (4 × 3) and each vertex in `centres`, the map's response
    (maximum over positions of its post-ReLU output) to the corner, the cross, and the stronger of
    the two single bars (`probe_set`), averaged over the vertices: `corner`, `cross`, `bar`, each
    (n_maps, 4, 3). A map's preferred probe is the (phi, angle) of its largest corner response; at
    that probe its corner-selectivity index is CSI = (corner − max(cross, bar)) / (corner + max(cross,
    bar)) in [−1, 1] (0 where both are 0). Maps with CSI > CSI_THRESHOLD are `selective`; `best` is the
    map with the largest CSI, `preferred` (n_maps, 2) the (phi, angle) of each map.
    """
    grid = [(p, a) for p in CORNER_DIRECTIONS for a in CORNER_ANGLES]
    resp = {k: np.zeros((MAPS2, len(grid))) for k in ("corner", "cross", "bar")}
    for j, (phi, angle) in enumerate(grid):
        for c in centres:
            probes = probe_set(phi, angle, c)
            resp["corner"][:, j] += map_maxima(model, probes["corner"], ACT2) / len(centres)
            resp["cross"][:, j] += map_maxima(model, probes["cross"], ACT2) / len(centres)
            resp["bar"][:, j] += np.max([map_maxima(model, b, ACT2) for b in probes["bars"]], 0) / len(centres)
    pref = resp["corner"].argmax(axis=1)  # (n_maps,) index into grid
    rows = np.arange(MAPS2)
    c, other = resp["corner"][rows, pref], np.maximum(resp["cross"][rows, pref], resp["bar"][rows, pref])
    csi = np.where(c + other > 0, (c - other) / np.maximum(c + other, 1e-12), 0.0)
    shape = (MAPS2, len(CORNER_DIRECTIONS), len(CORNER_ANGLES))
    return {**{k: v.reshape(shape) for k, v in resp.items()},  # (n_maps, 4, 3) each
            "csi": csi, "preferred": np.array([grid[j] for j in pref], dtype=np.float64),
            "selective": np.flatnonzero(csi > CSI_THRESHOLD), "best": int(csi.argmax()), "threshold": CSI_THRESHOLD}


def orientation_difference(a: float, b: float) -> float:
    """The angle between two orientations in degrees, in [0, 90] (orientations repeat every 180°)."""
    d = abs(a - b) % 180.0
    return float(min(d, 180.0 - d))


def segment_match(orientations, osi, segments, *, tolerance: float = MATCH_DEGREES,
                  threshold: float = OSI_THRESHOLD) -> bool:
    """The strong remix test: both input maps are orientation-selective (osi ≥ `threshold`) and their
    preferred `orientations` match the two `segments` one each: some assignment of the two maps to
    the two different segments puts each within `tolerance` degrees of its segment (modulo 180°)."""
    (a, b), (s1, s2) = orientations, segments
    if len(osi) < 2 or min(osi) < threshold:
        return False
    near = lambda o, s: orientation_difference(o, s) <= tolerance  # noqa: E731
    return bool((near(a, s1) and near(b, s2)) or (near(a, s2) and near(b, s1)))


def remix(model, map2=None, *, tuning=None, selectivity=None) -> dict:
    """How conv2 map `map2` (default: the most corner-selective one) builds its preferred corner.

    Takes the map's preferred corner probe (`corner_selectivity`, vertex at the middle), the position
    where the map's post-ReLU output peaks on it, and `explain(model, probe, LAYER2, map2, position)`:
    the unit's pre-activation is bias + Σ_i partial_sum_i over the conv1 maps i. Returns `map2`,
    `probe` ((phi, angle)), `position`, `contributions` (C_in,) the partial sums by input map, `order`
    (input maps by |partial sum|, largest first), `bias`, `pre_activation`, `engine_value`, `top`
    (the two input maps with the largest positive partial sums: the excitatory inputs a corner is
    built from; a negative sum inhibits), `orientations` and `osi` of those two (`tuning_curves`),
    their `difference` in degrees, `differ`: whether it is ≥ DIFFER_DEGREES, `segments`: the
    orientations of the probe's two segments (phi and phi + angle, modulo 180°), `tuned`: whether both
    inputs have OSI ≥ OSI_THRESHOLD, `orientations_match`: whether each input's preferred orientation is
    within MATCH_DEGREES of a different one of the two segments (whatever the OSI), and
    `matches_segments` (the strong test, `segment_match`): tuned and orientations_match.
    """
    tuning = tuning_curves(model) if tuning is None else tuning
    selectivity = corner_selectivity(model) if selectivity is None else selectivity
    map2 = selectivity["best"] if map2 is None else int(map2)
    phi, angle = selectivity["preferred"][map2]
    probe = as_input(corner_probe(phi, angle))
    out = {a.name: a.array for a in activations(model, probe)}[ACT2][:, :, map2]  # (h, w)
    position = tuple(int(i) for i in np.unravel_index(out.argmax(), out.shape))
    e = explain(model, probe, LAYER2, map2, position)
    contributions = np.zeros(MAPS1)
    for term in e.terms:
        contributions[term.input_map] += term.partial_sum
    order = np.argsort(-np.abs(contributions), kind="stable")
    top = [int(i) for i in np.argsort(-contributions, kind="stable")[:2]]
    orientations = [float(tuning["preferred"][i]) for i in top]
    diff = orientation_difference(*orientations)
    osi = [float(tuning["osi"][i]) for i in top]
    segments = (float(phi % 180), float((phi + angle) % 180))
    return {"map2": map2, "probe": (float(phi), float(angle)), "position": position,
            "contributions": contributions, "order": order, "bias": float(e.bias), "pre_activation": e.pre_activation,
            "engine_value": e.engine_value, "top": top, "orientations": orientations,
            "osi": osi, "difference": diff, "differ": diff >= DIFFER_DEGREES,
            "segments": segments, "tuned": bool(min(osi) >= OSI_THRESHOLD),
            "orientations_match": segment_match(orientations, [1.0, 1.0], segments),
            "matches_segments": segment_match(orientations, osi, segments)}


def mean_sd(values) -> str:
    v = 100 * np.asarray(values)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():5.1f} ± {sd:4.1f}"


def findings(model) -> dict:
    """The three findings for one trained model: `tuning`, `selectivity`, `remix`."""
    tuning, selectivity = tuning_curves(model), corner_selectivity(model)
    return {"tuning": tuning, "selectivity": selectivity,
            "remix": remix(model, tuning=tuning, selectivity=selectivity)}


def print_table(runs: list, count: int) -> None:
    """The accuracy table: mean ± sd over the runs, overall and per class."""
    header = f"{'model':<10} {'params':>6}  {'test acc %':>12}  " + "  ".join(f"{c + ' %':>12}" for c in CORNER_CLASSES)
    print(header)
    print("-" * len(header))
    per_class = [mean_sd([r["per_class"][k] for r in runs]) for k in range(3)]
    print(f"{'2-conv':<10} {count:>6}  {mean_sd([r['accuracy'] for r in runs]):>12}  "
          + "  ".join(f"{c:>12}" for c in per_class))


def print_findings(seed: int, f: dict) -> None:
    """One seed's three findings, every number from the run."""
    t, s, r = f["tuning"], f["selectivity"], f["remix"]
    print(f"seed {seed}: (1) {len(t['selective'])} of {len(t['osi'])} {LAYER1} maps orientation-selective "
          f"(OSI = 1 − min/max ≥ {t['threshold']}; OSI {' '.join(f'{v:.2f}' for v in t['osi'])})")
    best = s["best"]
    print(f"        (2) {len(s['selective'])} of {len(s['csi'])} {LAYER2} maps corner-selective "
          f"(CSI > {s['threshold']}); "
          f"best map {best}: CSI {s['csi'][best]:.2f}, prefers phi {s['preferred'][best][0]:.0f}°, "
          f"angle {s['preferred'][best][1]:.0f}°")
    (a, b), (oa, ob) = r["top"], r["orientations"]
    print(f"        (3) remix of {LAYER2} map {r['map2']} at {r['position']}: top inputs {LAYER1} map {a} "
          f"({oa:.0f}°, OSI {r['osi'][0]:.2f}, partial sum {r['contributions'][a]:+.2f}) and map {b} ({ob:.0f}°, "
          f"OSI {r['osi'][1]:.2f}, {r['contributions'][b]:+.2f}); bias {r['bias']:+.2f}, total "
          f"{r['pre_activation']:.2f} (engine {r['engine_value']:.2f}); probe segments "
          f"{r['segments'][0]:.0f}°/{r['segments'][1]:.0f}°; orientations differ by {r['difference']:.0f}°: "
          f"{'yes' if r['differ'] else 'no'} (weak); both tuned (OSI ≥ {OSI_THRESHOLD}): "
          f"{'yes' if r['tuned'] else 'no'}, each within {MATCH_DEGREES}° of a different segment: "
          f"{'yes' if r['orientations_match'] else 'no'}, so strong: {'yes' if r['matches_segments'] else 'no'}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 600/300 images (a smoke test)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 4; --quick: 1)")
    args = p.parse_args(argv)
    seeds = range(args.seeds or (1 if args.quick else 3))
    epochs = args.epochs or (1 if args.quick else 4)
    n_train, n_test = (600, 300) if args.quick else (3000, 1500)
    count = build(np.random.default_rng(0)).num_parameters()
    print(f"parameters: {count}; {len(seeds)} seed(s), {epochs} epochs, {n_train} train / {n_test} test images")
    t_start = time.perf_counter()
    runs = [train(seed, n_train=n_train, n_test=n_test, epochs=epochs) for seed in seeds]
    print_table(runs, count)
    print(f"(mean ± sd over {len(seeds)} seed(s), in %; chance 33.3%)\n")
    confirmed = strong = tuned = matched = 0
    for seed, run in zip(seeds, runs):
        f = findings(run["model"])
        print_findings(seed, f)
        confirmed += bool(f["remix"]["differ"] and len(f["selectivity"]["selective"]))
        strong += bool(f["remix"]["matches_segments"] and len(f["selectivity"]["selective"]))
        tuned += f["remix"]["tuned"]
        matched += f["remix"]["orientations_match"]
    print(f"\nremix confirmed, weak criterion (a corner-selective {LAYER2} map whose two strongest excitatory "
          f"inputs prefer orientations ≥ {DIFFER_DEGREES:.0f}° apart): {confirmed} of {len(seeds)} seed(s); "
          f"strong criterion (and both inputs orientation-selective, OSI ≥ {OSI_THRESHOLD}, each within "
          f"{MATCH_DEGREES}° of a different segment of the probe): {strong} of {len(seeds)} seed(s); "
          f"{time.perf_counter() - t_start:.0f} s")
    print(f"(parts of the strong criterion: both inputs tuned on {tuned}, their orientations match the segments "
          f"on {matched} of {len(seeds)} seed(s))")


if __name__ == "__main__":
    main()
