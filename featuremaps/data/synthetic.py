"""Seeded synthetic datasets for two classic claims (NumPy only, nothing downloaded).

`colour_conjunctions(n, seed)` — 32 × 32 RGB images whose class depends on what two colour channels
do *at the same place*. Every image has a grey background (one level for all three channels, jittered
per image) with pixel noise, and one oriented edge element (an 8 × 8 patch, one half brighter and the
other darker by the same amount `a`; orientation 0°, 45°, 90° or 135°) in the red channel and one in the
green channel, of the same orientation and size. The blue channel is flat in every class.

- class 0 `red-green edge`: the red and green elements sit at one place with opposite polarities
  (red rises where green falls): an isoluminant edge, since R + G + B stays constant across it;
- class 1 `red and green apart`: the same red element and the same green element (same orientation,
  opposite polarities) at two places that do not overlap;
- class 2 `luminance edge` (the control): the two elements at one place with the same polarity.

The polarity `s` of the red element is ±1 at random in every class, so in each class every channel
holds exactly one element whose orientation is uniform over the four and whose polarity is uniform
over ±: the per-channel histograms of edges by orientation and polarity are the same in every class
(`edge_histogram`; tests/test_synthetic.py checks it on many samples). The elements lie at least 4
pixels from the border, so a 5 × 5 'valid' convolution sees each one whole wherever it is. Only a layer
that combines channels at one place can tell class 0 from class 1.

`corners(n, seed)` — 28 × 28 grey images (the size of the zoo's MNIST models) of two bright line segments
of the same length `L` on a dark, noisy background; the segments leave one point in directions `phi`
and `phi + angle`, where `phi` is 0°, 90°, 180° or 270° (four orientations) and `angle` is 60°, 90° or
120°:

- class 0 `corner`: the two segments share an end point (an L with that angle);
- class 1 `cross`: the same two segments cross at their midpoints;
- class 2 `bars`: the same two segments apart (their nearest points at least 4 pixels apart).

So every class holds the same two segment orientations (uniform over the same set): no single edge
orientation gives the class away, only how the segments meet.

Determinism: the same `(n, seed)` gives the same arrays on every machine with the same NumPy (the
stream policy of `numpy.random.Generator`); labels are balanced (`n // 3` or one more per class).
"""
from __future__ import annotations

import numpy as np

__all__ = ["COLOUR_CLASSES", "CORNER_CLASSES", "GENERATED", "colour_conjunctions", "corners", "edge_histogram",
           "oriented_edge", "corner_probe", "SIZES"]

COLOUR_CLASSES = ["red-green edge", "red and green apart", "luminance edge"]
CORNER_CLASSES = ["corner", "cross", "bars"]
GENERATED = ("colour-conjunctions", "corners")  # the dataset names `featuremaps.data.load` makes from these
SIZES = {"train": 3000, "test": 1500}  # images per split that `featuremaps.data.load` makes
_SPLIT_STREAM = {"train": 0, "test": 1}

PATCH = 8  # edge element, PATCH × PATCH pixels
MARGIN = 4  # pixels between an element and the border
ORIENTATIONS = (0, 45, 90, 135)  # degrees of the edge line (0 = vertical edge: left/right halves differ)
CORNER_DIRECTIONS = (0, 90, 180, 270)  # phi, degrees
CORNER_ANGLES = (60, 90, 120)


def _check(n, seed, fn: str) -> np.random.Generator:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{fn}: n must be a positive int (number of images); received {n!r}")
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, list, tuple)):
        raise TypeError(f"{fn}: seed must be an int (or a list of ints, or a numpy.random.Generator); "
                        f"received {type(seed).__name__}")
    return np.random.default_rng(seed)


def _labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k).astype(np.int64)  # balanced, shuffled


def oriented_edge(size: int, degrees: float) -> np.ndarray:
    """A size × size step profile in [-1, 1]: +1 on one side of a line through the centre, -1 on the
    other; `degrees` is the line's orientation (0 = vertical line, +1 on the right; 90 = horizontal,
    +1 at the bottom). Pixels the line crosses get the fraction in between."""
    t = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2.0  # (size, size) each
    proj = xx * np.cos(t) + yy * np.sin(t)  # signed distance from the line along its normal
    return np.clip(proj * 2.0, -1.0, 1.0)


def _place(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(MARGIN, size - PATCH - MARGIN + 1, size=2)  # top-left (row, col)


def colour_conjunctions(n: int, seed=0, *, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (n, size, size, 3) uint8 and labels (n,) int64 of the colour-conjunction task
    (module docstring). `seed`: an int, a list of ints, or a Generator."""
    rng = _check(n, seed, "colour_conjunctions")
    if size < PATCH * 2 + MARGIN * 2:
        raise ValueError(f"colour_conjunctions: size must be at least {PATCH * 2 + MARGIN * 2}; received {size}")
    labels = _labels(n, 3, rng)
    profiles = {d: oriented_edge(PATCH, d) for d in ORIENTATIONS}
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for k in range(n):
        img = np.full((size, size, 3), rng.uniform(100.0, 156.0))  # grey background
        img += rng.normal(0.0, 6.0, img.shape)
        edge = profiles[ORIENTATIONS[rng.integers(4)]] * rng.uniform(35.0, 55.0)  # (PATCH, PATCH)
        s = 1.0 if rng.random() < 0.5 else -1.0  # polarity of the red element
        # Two places apart (no overlap, a pixel between) are drawn for every class, so the red
        # element's place has one distribution in all classes; only class 1 puts green at the other.
        p_red, p_other = _place(rng, size), _place(rng, size)
        while np.abs(p_other - p_red).max() < PATCH + 1:
            p_red, p_other = _place(rng, size), _place(rng, size)
        p_green = p_other if labels[k] == 1 else p_red
        g_sign = s if labels[k] == 2 else -s
        for p, c, sign in ((p_red, 0, s), (p_green, 1, g_sign)):
            img[p[0]:p[0] + PATCH, p[1]:p[1] + PATCH, c] += sign * edge
        out[k] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, labels


def _segment(shape, a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Intensity in [0, 1] of a line segment from point a to b (row, col), `width` pixels wide,
    anti-aliased over one pixel."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    d = b - a
    t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    dist = np.hypot(yy - (a[0] + t * d[0]), xx - (a[1] + t * d[1]))
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)


def _segment_gap(a1, b1, a2, b2, steps: int = 24) -> float:
    """The smallest distance between two segments (sampled; enough for a placement rule)."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    p, q = a1 + t * (b1 - a1), a2 + t * (b2 - a2)  # (steps, 2) each
    return float(np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1)).min())


def _corner_segments(label: int, phi: float, angle: float, length: float, rng, size: int):
    """The two segments (a, b) of one image of class `label`, inside the image with a 2-pixel margin."""
    u1 = np.array([-np.sin(np.deg2rad(phi)), np.cos(np.deg2rad(phi))])  # (row, col) direction; 0° = right
    u2 = np.array([-np.sin(np.deg2rad(phi + angle)), np.cos(np.deg2rad(phi + angle))])
    for _ in range(1000):
        c = rng.uniform(2.0, size - 3.0, size=2)
        if label == 0:  # corner: both leave c
            segs = [(c, c + length * u1), (c, c + length * u2)]
        elif label == 1:  # cross: both centred on c
            segs = [(c - length / 2 * u1, c + length / 2 * u1), (c - length / 2 * u2, c + length / 2 * u2)]
        else:  # bars: the first leaves c, the second starts elsewhere
            c2 = rng.uniform(2.0, size - 3.0, size=2)
            segs = [(c, c + length * u1), (c2, c2 + length * u2)]
        pts = np.array([p for s in segs for p in s])
        if pts.min() < 2.0 or pts.max() > size - 3.0:
            continue
        if label == 2 and _segment_gap(*segs[0], *segs[1]) < 4.0:
            continue
        return segs
    raise RuntimeError("corners: could not place the segments; use a larger image")


def corners(n: int, seed=0, *, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (n, size, size, 1) uint8 and labels (n,) int64 of the corners task (module docstring)."""
    rng = _check(n, seed, "corners")
    if size < 24:
        raise ValueError(f"corners: size must be at least 24; received {size}")
    labels = _labels(n, 3, rng)
    out = np.empty((n, size, size, 1), dtype=np.uint8)
    for k in range(n):
        phi = CORNER_DIRECTIONS[rng.integers(4)]
        angle = CORNER_ANGLES[rng.integers(3)]
        length = rng.uniform(8.0, 11.0)
        segs = _corner_segments(int(labels[k]), phi, angle, length, rng, size)
        ink = np.maximum(*[_segment((size, size), a, b, 2.0) for a, b in segs])  # (size, size)
        img = rng.uniform(15.0, 40.0) + rng.uniform(150.0, 210.0) * ink + rng.normal(0.0, 6.0, ink.shape)
        out[k, :, :, 0] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out, labels


def corner_probe(phi: float, angle: float, *, kind: str = "corner", length: float = 10.0, size: int = 28,
                 centre=None) -> np.ndarray:
    """One noise-free probe image (size, size, 1) float in [0, 1]: a `kind` ('corner', 'cross' or 'bar',
    a single segment) at `centre` (default: the middle), the corner's vertex or the cross's midpoint."""
    c = np.full(2, (size - 1) / 2.0) if centre is None else np.asarray(centre, dtype=np.float64)
    u1 = np.array([-np.sin(np.deg2rad(phi)), np.cos(np.deg2rad(phi))])
    u2 = np.array([-np.sin(np.deg2rad(phi + angle)), np.cos(np.deg2rad(phi + angle))])
    if kind == "corner":
        segs = [(c, c + length * u1), (c, c + length * u2)]
    elif kind == "cross":
        segs = [(c - length / 2 * u1, c + length / 2 * u1), (c - length / 2 * u2, c + length / 2 * u2)]
    elif kind == "bar":
        segs = [(c - length / 2 * u1, c + length / 2 * u1)]
    else:
        raise ValueError(f"corner_probe: kind must be 'corner', 'cross' or 'bar'; received {kind!r}")
    return np.maximum.reduce([_segment((size, size), a, b, 2.0) for a, b in segs])[:, :, None]


def edge_histogram(images: np.ndarray, channel: int, *, threshold: float = 20.0, bins: int = 8) -> np.ndarray:
    """Counts of edge pixels of one channel by gradient direction (orientation and polarity), (bins,).

    The gradient is the central difference (d/drow, d/dcol) of the channel in grey levels; a pixel is
    an edge pixel where its magnitude exceeds `threshold`; its direction atan2(d/drow, d/dcol) in
    [0°, 360°) is put in `bins` equal bins, so opposite polarities of one orientation fall in bins
    `bins / 2` apart.
    """
    images = np.asarray(images)
    if images.ndim != 4 or not 0 <= channel < images.shape[-1]:
        raise ValueError(f"edge_histogram: images must be NHWC with a channel {channel}; got shape {images.shape}")
    x = images[..., channel].astype(np.float64)  # (n, h, w)
    gr = (x[:, 2:, 1:-1] - x[:, :-2, 1:-1]) / 2  # (n, h-2, w-2)
    gc = (x[:, 1:-1, 2:] - x[:, 1:-1, :-2]) / 2
    mag = np.hypot(gr, gc)
    ang = np.mod(np.arctan2(gr, gc), 2 * np.pi)[mag > threshold]
    return np.bincount(np.minimum((ang / (2 * np.pi) * bins).astype(np.int64), bins - 1), minlength=bins)


def load_arrays(name: str, split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images, labels, classes) of split 'train' or 'test' of 'colour-conjunctions' or 'corners';
    the split's images come from the stream `[seed, 0]` (train) or `[seed, 1]` (test), so the two never
    share an image and the same seed always gives the same split."""
    make, classes = {"colour-conjunctions": (colour_conjunctions, COLOUR_CLASSES),
                     "corners": (corners, CORNER_CLASSES)}[name]
    images, labels = make(SIZES[split], [int(seed), _SPLIT_STREAM[split]])
    return images, labels, classes
