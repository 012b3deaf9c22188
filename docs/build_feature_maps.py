#!/usr/bin/env python
"""Build the tutorial `docs/feature-maps.md` and its figures in `docs/img/` from the TEMPLATE below.

Every code block in the page is a snippet below, run here in order in one namespace; its printed
output is pasted under it. Every figure is drawn here with `featuremaps.pictures`, every number in the
prose is computed here. So the page cannot go stale:

    python docs/build_feature_maps.py            # regenerate the page and the figures
    python docs/build_feature_maps.py --check    # exit 1 (with a diff) if the committed page or figures are stale

`--check` renders the page again and compares it with the committed page and figures (see
`docs/_pages.py`, the machinery this page shares with `build_real_models.py`).

Determinism: fixed rng seeds, and the tutorial network's weights and image are rounded to powers of
two (see the snippet) so every sum is exact in float32 and the printed numbers do not depend on the
BLAS or the order of summation. Build time is a few seconds.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "feature-maps.md"
IMG = ROOT / "docs" / "img"
PREFIX = "fm-"  # figure file names: docs/img/fm-<name>.png
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
import _pages as pages  # noqa: E402 - the shared page machinery, next to this script

# --- the code shown in the page (run in this order, in one namespace) -------------------------------

SNIPPETS: dict[str, str] = {}

SNIPPETS["setup"] = '''\
import numpy as np
from featuremaps import nn
from featuremaps.inspect import activations, summary

rng = np.random.default_rng(0)
net = nn.Sequential([
    ("conv1", nn.Conv2D(1, 32, 3, rng=rng)),   # 32 kernels, each 3×3 over the 1 input map
    ("relu1", nn.ReLU()),
    ("conv2", nn.Conv2D(32, 64, 3, rng=rng)),  # 64 kernels, each 3×3 over all 32 input maps
], input_shape=(100, 100, 1))

# Round the weights to multiples of 1/64 and 1/256 (and the image below to 1/16) so that every sum
# on this page is exact in float32: the printed numbers are the same on every machine.
for name, step in (("conv1", 1 / 64), ("conv2", 1 / 256)):
    w = net[name].weight
    w.data = (np.round(w.data / step) * step).astype(np.float32)

# A 100×100 grey image: a soft gradient, a ring, a square and a dark diagonal line.
yy, xx = np.mgrid[0:100, 0:100] / 99.0
img = 0.25 + 0.25 * xx
img[np.abs(np.hypot(yy - 0.38, xx - 0.33) - 0.2) < 0.035] = 1.0
img[58:86, 56:84] = 0.85
img[np.abs(yy - (1.25 - xx)) < 0.02] = 0.0
x = (np.round(img * 16) / 16).astype(np.float32)[:, :, None]  # (100, 100, 1)

for a in activations(net, x):
    print(f"{a.name:6} {a.kind:7} {a.array.shape}")
'''

SNIPPETS["weights"] = '''\
w1 = net["conv1"].weight.data   # HWIO: (kh, kw, in, out)
w2 = net["conv2"].weight.data
print("conv1.weight", w1.shape, "=", w1.shape[3], "kernels of shape", w1.shape[:3])
print("conv2.weight", w2.shape, "=", w2.shape[3], "kernels of shape", w2.shape[:3])
'''

SNIPPETS["summary"] = '''\
print(summary(net))
'''

SNIPPETS["by_hand"] = '''\
from numpy.lib.stride_tricks import sliding_window_view

maps = {a.name: a.array for a in activations(net, x)}
h, y = maps["relu1"], maps["conv2"]       # (98, 98, 32) in, (96, 96, 64) out
n = 5
k = w2[:, :, :, n]                         # (3, 3, 32): the ONE 3-D kernel of output map n
win = sliding_window_view(h, (3, 3), axis=(0, 1))         # (96, 96, 32, 3, 3)
per_input = np.einsum("rcipq,pqi->rci", win, k)            # (96, 96, 32): map i ⋆ k[:, :, i]
out = per_input.sum(axis=2) + net["conv2"].bias.data[n]    # (96, 96): summed into ONE map
print("32 partial maps:", per_input.shape, "-> summed:", out.shape)
print("max |by hand - engine| over all of map 5:", np.abs(out - y[:, :, n]).max())
'''

SNIPPETS["explain"] = '''\
from featuremaps.inspect import explain

e = explain(net, x, "conv2", 5, (35, 52))
print(e.to_text(top=8))
'''

SNIPPETS["filters"] = '''\
from featuremaps.inspect import connections, filters_for_output

kernels, inputs = filters_for_output(net["conv2"], 5)
print("filters of map 5:", kernels.shape, "| same as w2[:, :, :, 5]:", np.array_equal(kernels, w2[:, :, :, 5]))
print("it reads", len(inputs), "input maps; the filter from input map 3 is w2[:, :, 3, 5]:")
print(w2[:, :, 3, 5])
print("connections(conv2):", connections(net["conv2"]).shape, "all True:", connections(net["conv2"]).all())
'''

SNIPPETS["lenet5"] = '''\
from featuremaps import models

lenet5 = models.get("lenet5", rng=0)
print(summary(lenet5))
'''

SNIPPETS["table"] = '''\
c3 = lenet5["C3"]
table = connections(c3)            # (6, 16): rows = S2 maps, columns = C3 maps
print("     " + "".join(f"{n:>3}" for n in range(16)))
for i, row in enumerate(table):
    print(f"S2 {i}" + "".join("  X" if c else "   " for c in row))
for n in (0, 6, 15):
    _, inputs = filters_for_output(c3, n)
    print(f"C3 map {n:2} reads S2 maps {inputs}")
print("weight", c3.weight.shape, "| pairs used:", table.sum(), "of", table.size,
      "| unconnected filters are exactly 0:", bool((c3.weight.data[:, :, ~table] == 0).all()))
'''

SNIPPETS["groups"] = '''\
alex2 = nn.Conv2D(96, 256, 5, padding=2, groups=2, rng=rng)   # AlexNet's conv2, two GPUs
full2 = nn.Conv2D(96, 256, 5, padding=2, rng=rng)             # the same layer, not split
print("grouped weight", alex2.weight.shape, f"parameters {sum(p.size for p in alex2.parameters()):,}")
print("full    weight", full2.weight.shape, f"parameters {sum(p.size for p in full2.parameters()):,}")
for n in (0, 255):
    _, inputs = filters_for_output(alex2, n)
    print(f"output map {n:3} reads input maps {inputs[0]}..{inputs[-1]} ({len(inputs)} maps)")
dw = nn.Conv2D(8, 8, 3, groups=8, rng=rng)                    # depthwise: groups = input maps
print("depthwise weight", dw.weight.shape, "| output map 3 reads", filters_for_output(dw, 3)[1])
'''

# --- the figures: name -> (alt text, function of the snippet namespace and a path) -------------------


def _figures():
    from featuremaps import nn
    from featuremaps import pictures as P

    def toy_grouped(ns):
        return nn.Conv2D(8, 8, 3, groups=2, rng=ns["np"].random.default_rng(1))

    return {
        "maps": ("Feature maps of the example image at every layer",
                 lambda ns, p: P.feature_maps(ns["net"], ns["x"], p, max_maps=8)),
        "conv2-kernels": ("The 32 × 64 kernels of conv2; column 5 outlined",
                          lambda ns, p: P.kernel_grid(ns["net"]["conv2"], p, name="conv2", highlight=5)),
        "conv2-connections": ("conv2 connects every input map to every output map",
                              lambda ns, p: P.connectivity_diagram(ns["net"]["conv2"], p, name="conv2")),
        "receptive": ("The input pixels that unit (35, 52) of conv2 sees",
                      lambda ns, p: P.receptive_field_overlay(ns["net"], ns["x"], "conv2", (35, 52), p)),
        "c3-connections": ("LeNet-5's C3 connection table, as a matrix and as a graph",
                           lambda ns, p: P.connectivity_diagram(ns["lenet5"]["C3"], p, name="LeNet-5 C3")),
        "c3-kernels": ("The kernels of LeNet-5's C3; unconnected pairs hatched",
                       lambda ns, p: P.kernel_grid(ns["lenet5"]["C3"], p, name="LeNet-5 C3")),
        "alexnet-conv2-connections": ("AlexNet's conv2 with groups=2: two independent blocks",
                                      lambda ns, p: P.connectivity_diagram(ns["alex2"], p, name="AlexNet conv2")),
        "grouped-kernels": ("Kernels of a small grouped layer (8 → 8 maps, groups=2)",
                            lambda ns, p: P.kernel_grid(toy_grouped(ns), p, name="8→8, groups=2")),
        "depthwise-connections": ("A depthwise layer: each output map reads one input map",
                                  lambda ns, p: P.connectivity_diagram(ns["dw"], p, name="8→8, groups=8")),
    }


# --- the page ----------------------------------------------------------------------------------------

TEMPLATE = '''\
<!-- Generated by docs/build_feature_maps.py from its TEMPLATE: edit the template there and rerun
     `python docs/build_feature_maps.py`; CI runs it with --check, so this page cannot go stale. -->
# How feature maps connect: 32 maps in, 64 kernels, 64 maps out

A classic question about convolutional networks: *the first layer makes 32 feature maps, the second
layer has 64 kernels — how are the 32 maps and the 64 kernels connected? Each of the 64 kernels
applied to each of the 32 maps would give 32 × 64 = {{v:pairs}} maps, yet the layer outputs 64. Where
does each map come from, and which weights belong to it?*

Short answer: **each of the 64 kernels is 3-D** — 3 × 3 × 32, one 3 × 3 slice per input map. Output map
n applies slice i to input map i, for every i, and **adds the 32 results** (plus one bias) into one
map. So there are 64 output maps, and the filters of map n are `w[:, :, :, n]` (weights are stored
`(kh, kw, in, out)`). The 32 × 64 = {{v:pairs}} 2-D slices exist — they are the weights — but their
responses are summed per output map, never kept as separate maps.

This page shows it with featuremaps' own outputs. Every code block below was run to build the page
(by `docs/build_feature_maps.py`) and the output under it is what it printed.

## The example: a 100 × 100 grey image through two conv layers

{{code:setup}}

{{out:setup}}

A 3 × 3 kernel fits {{v:out1}} times across 100 pixels (100 − 3 + 1), so conv1 makes
{{v:shape1}}: 32 maps, one per kernel. conv2 slides its kernels over those maps and makes
{{v:shape2}}: 64 maps, one per kernel, **not** {{v:pairs}}. The weights say why:

{{code:weights}}

{{out:weights}}

Each conv1 kernel is 3 × 3 × 1 (the image has one map); each conv2 kernel is 3 × 3 × 32: it spans
all 32 input maps. The summary counts it — conv2 has 64 · (32 · 3 · 3) + 64 = {{v:params2}}
parameters — and spells out the alternative:

{{code:summary}}

{{out:summary}}

Here is what the image looks like after each layer (the first 8 of each layer's maps):

{{fig:maps}}

## Why 64 maps and not 32 × 64

Output map n of conv2 is

    y[:, :, n] = b[n] + Σ_i  x[:, :, i] ⋆ w[:, :, i, n]        (i = 0 … 31)

where ⋆ is a 2-D cross-correlation (the full formula, with stride, padding and dilation, is in the
docstring of `featuremaps.functional.conv`). Each of the 32 input maps is filtered by its own 3 × 3
slice `w[:, :, i, n]`, giving 32 partial maps; **they are summed** into output map n. Doing that sum
by hand reproduces the engine's map 5 exactly:

{{code:by_hand}}

{{out:by_hand}}

`explain` takes one value apart the same way: for output map 5 at row 35, column 52, one row per
input map with the 3 × 3 window that map contributes and its dot product with the kernel slice,
then the bias, the total and the engine's own value:

{{code:explain}}

{{out:explain}}

All {{v:explain_terms}} input maps contribute to this one number. Their {{v:explain_terms}} windows
of 3 × 3 pixels sit at the same place in each map, and conv1 computed each of those pixels from a
3 × 3 patch of the image, so the value depends on one {{v:field}} patch of the image (rows
{{v:field_rows}}, columns {{v:field_cols}}: `receptive_field(net, "conv2", (35, 52))`):

{{fig:receptive}}

So a conv layer connects **every input map to every output map** — 32 × 64 = {{v:pairs}}
connections, each one a 3 × 3 filter — but it makes only one map per kernel:

{{fig:conv2-connections}}

## Where the filters of map n are: `w[:, :, :, n]`

featuremaps stores conv weights channels-last, `(kh, kw, in, out)`. The filters of output map n are
the last-axis slice `w[:, :, :, n]` — a 3 × 3 × 32 block — and the single 3 × 3 filter that map n
applies to input map i is `w[:, :, i, n]`. `filters_for_output` returns the same block (and, for
layers that do not read every input map, zeros where a map is not connected):

{{code:filters}}

{{out:filters}}

Drawn as a grid, rows are input maps i and columns are output maps n, so **column n is
`w[:, :, :, n]`** (outlined for n = 5) and tile (i, n) is the 3 × 3 filter `w[:, :, i, n]`. The
weights here are the initial random ones: the point is the layout, not the values.

{{fig:conv2-kernels}}

(PyTorch stores the same numbers as `(out, in, kh, kw)`, so there the filters of map n are
`weight[n]`; Keras/TensorFlow use `(kh, kw, in, out)` like featuremaps.)

## LeNet-5 connected its maps differently: Table I

In LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), layer C3 makes 16 maps from S2's 6 maps, but
not every C3 map reads every S2 map. Table I of the paper lists which ones: the first six C3 maps
read 3 neighbouring S2 maps, the next nine read 4, and the last one reads all 6. The paper gives two
reasons: it keeps the number of connections down, and — more important — it breaks the symmetry
between maps, so different maps are forced to extract different features. featuremaps builds C3 with
that table:

{{code:lenet5}}

{{out:lenet5}}

C3 has {{v:c3_params}} trainable parameters ({{v:c3_links}} filters of 5 × 5, plus 16 biases) instead of
the {{v:c3_full_params}} a full 6 → 16 layer would have.
The table, the maps it gives and the weights it keeps:

{{code:table}}

{{out:table}}

{{fig:c3-connections}}

The weight keeps the full `(5, 5, 6, 16)` shape, with the filters of unconnected pairs fixed at 0
(their gradient is masked, so they stay 0); the kernel grid hatches them:

{{fig:c3-kernels}}

## Grouped layers: AlexNet's conv2 (groups = 2)

AlexNet (Krizhevsky, Sutskever and Hinton, 2012) was trained on two GPUs, and its conv2 was split
in two: the first 128 output maps read only the first 48 input maps, the other 128 only the other 48.
That is `groups=2`. The weight stores just the connected slices — `(kh, kw, in / groups, out)` — so
the layer has half the parameters of a full one:

{{code:groups}}

{{out:groups}}

The connection matrix is block-diagonal, and the graph falls apart into two independent halves:

{{fig:alexnet-conv2-connections}}

On a small grouped layer the kernel grid shows the same blocks (hatched = not connected):

{{fig:grouped-kernels}}

Taken to the limit, `groups` = the number of input maps gives a **depthwise** layer: each output
map reads exactly one input map, so nothing is summed across maps at all.

{{fig:depthwise-connections}}

## Reproduce these pictures for any model

The figures come from `featuremaps.pictures` (needs `pip install 'featuremaps[plot]'`):
`kernel_grid(layer, path)`, `feature_maps(model, x, path)`, `connectivity_diagram(layer, path)`,
`receptive_field_overlay(model, x, layer, (row, col), path)` and `curves(metrics, path)`. For a
trained model, the command line draws the same ones from a run directory or checkpoint:

    featuremaps show kernels     RUN_DIR --layer C3 -o c3-kernels.png
    featuremaps show connections RUN_DIR --layer C3 -o c3-connections.png
    featuremaps show maps        RUN_DIR --index 0 -o maps.png
    featuremaps show receptive   RUN_DIR --index 0 --layer C3 --at 4,5 -o field.png
    featuremaps show curves      RUN_DIR -o curves.png
    featuremaps explain          RUN_DIR --layer C3 --map 7 --at 4,5 --index 0
'''


# --- build ------------------------------------------------------------------------------------------

def run_snippets() -> tuple[dict, dict[str, str]]:
    """Run every snippet in order in one namespace; return the namespace and each snippet's output."""
    return pages.run_snippets(SNIPPETS, "feature_maps_tutorial")


def values(ns: dict, outputs: dict[str, str]) -> dict[str, str]:
    """The numbers quoted in the prose, computed from the snippets' namespace (and checked)."""
    import numpy as np

    net, e = ns["net"], ns["e"]
    shapes = {a.name: a.array.shape for a in ns["activations"](net, ns["x"])}
    if e.difference != 0:
        raise AssertionError(f"the explained value should be exact (weights rounded); difference {e.difference}")
    c3 = ns["lenet5"]["C3"]
    kh, kw, c_in, c_out = c3.weight.shape
    c3_row = next(r for r in ns["summary"](ns["lenet5"]).to_dict()["rows"] if r["name"] == "C3")
    from featuremaps.inspect import receptive_field

    mask, (rows, cols) = receptive_field(net, "conv2", (35, 52))
    v = {
        "pairs": f"{32 * 64:,}",
        "out1": str(shapes["conv1"][0]),
        "shape1": f"`{shapes['conv1']}`",
        "shape2": f"`{shapes['conv2']}`",
        "params2": f"{sum(p.size for p in net['conv2'].parameters()):,}",
        "explain_terms": str(len(e.terms)),
        "c3_params": f"{c3_row['params']:,}",
        "c3_links": str(int(ns["table"].sum())),
        "field": f"{rows.stop - rows.start} × {cols.stop - cols.start}",
        "field_rows": f"{rows.start}–{rows.stop - 1}",
        "field_cols": f"{cols.start}–{cols.stop - 1}",
        "c3_full_params": f"{kh * kw * c_in * c_out + c_out:,}",
    }
    assert shapes["conv2"] == (96, 96, 64) and np.all(ns["out"] == ns["y"][:, :, 5])
    assert mask.sum() == (rows.stop - rows.start) * (cols.stop - cols.start)  # a full box: no holes
    # the prose about Table I: six C3 maps read 3 S2 maps, nine read 4, the last reads all 6
    assert ns["table"].sum(axis=0).tolist() == [3] * 6 + [4] * 9 + [6]
    return v


def render(ns: dict, outputs: dict[str, str], figures: dict) -> str:
    return pages.render(TEMPLATE, SNIPPETS, outputs, figures, values(ns, outputs), PREFIX)


def compare_pngs(new: list[Path], old_dir: Path) -> list[str]:
    return pages.compare_pngs(new, old_dir, PREFIX)


def generate(img_dir: Path) -> tuple[str, list[Path]]:
    """Run the snippets, render the page and draw every figure into `img_dir`."""
    ns, outputs = run_snippets()
    figures = _figures()
    page = render(ns, outputs, figures)
    return page, pages.draw(ns, figures, img_dir, PREFIX)


def stale(page: str, drawn: list[Path], doc: Path = DOC, img_dir: Path = IMG) -> list[str]:
    """What differs between a freshly generated page/figures and the committed ones ([] = up to date)."""
    return pages.stale(page, drawn, doc, img_dir, PREFIX)


def build(check: bool, doc: Path = DOC, img_dir: Path = IMG) -> int:
    return pages.build(lambda d: generate(d), check, doc, img_dir, PREFIX, Path(__file__).name)


def main(argv=None) -> int:
    return pages.main(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
