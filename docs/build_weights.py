#!/usr/bin/env python
"""Build `docs/weights-across-frameworks.md` ("which dimension holds map n's filters", from real files).

Like `build_real_models.py`: every code block in the page is a snippet below, run in order in one
namespace (in a temporary folder, where the files are written), and its printed output is pasted
under it. So the page cannot go stale:

    python docs/build_weights.py            # regenerate the page
    python docs/build_weights.py --check    # exit 1 (with a diff) if the committed page is stale

Needs the test extra: Keras 3 (torch backend) writes the legacy .h5 and reads both Keras files back,
torch loads the safetensors file, onnx reads the ONNX file. Determinism: after a few seeded training
steps the weights are rounded to multiples of 1/64, so every file holds exactly the same numbers and
the page prints shapes, equalities and kernel values in units of 1/64, never float noise. Build time
is a few seconds (Keras's import is most of it).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "weights-across-frameworks.md"
IMG = ROOT / "docs" / "img"
PREFIX = "wx-"  # figure file names: docs/img/wx-<name>.png (none)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs"))
os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch (its numpy backend needs jax)
import _pages as pages  # noqa: E402 - the shared page machinery, next to this script

SNIPPETS: dict[str, str] = {}

SNIPPETS["train"] = '''\
import numpy as np
import featuremaps as fm

model = fm.models.get("lenet", rng=np.random.default_rng(0))    # the Theano tutorial's LeNet
train = fm.data.load("sample", "train").subset(np.arange(256))
opt = fm.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
fm.train.fit(model, train, epochs=1, batch_size=64, optimizer=opt, seed=0, plot=False)   # 4 steps
for p in model.parameters():           # round to a 1/64 grid: every file below holds these exact numbers
    p.data[...] = np.round(p.data * 64) / 64
model.eval()
print("conv2 weight (featuremaps, HWIO):", model["conv2"].weight.shape)
'''

SNIPPETS["save"] = '''\
import keras
import featuremaps.keras, featuremaps.onnx, featuremaps.torch
from featuremaps import layouts

featuremaps.onnx.export(model, "lenet.onnx")                 # ONNX: OIHW weights, NCHW input
featuremaps.keras.export(model, "lenet.keras")               # Keras 3: HWIO, as featuremaps
keras.models.load_model("lenet.keras").save("lenet.h5")      # legacy .h5, written by Keras itself
featuremaps.torch.export_state_dict(model, "lenet.safetensors")   # a torch state dict: OIHW

def theano_conv(layer):                # Theano's conv2d is a true convolution: OIHW, flipped kernels
    return layouts.flip_kernels(layouts.hwio_to_oihw(layer.weight.data), layout="OIHW")

chw = layouts.flatten_permutation(4, 4, 50, source="HWC", target="CHW")   # Theano flattens (c, h, w)
params = [theano_conv(model["conv1"]), model["conv1"].bias.data,       # the tutorial's layer0 ...
          theano_conv(model["conv2"]), model["conv2"].bias.data,       # layer1
          model["fc1"].weight.data[chw], model["fc1"].bias.data,      # layer2 (HiddenLayer)
          model["fc2"].weight.data, model["fc2"].bias.data]           # layer3 (LogisticRegression)
for name in ("lenet.onnx", "lenet.keras", "lenet.h5", "lenet.safetensors"):     # recognised by content
    back = fm.load_model(name, arch="lenet" if name.endswith(".safetensors") else None)
    same = all(np.array_equal(a.data, b.data) for a, b in zip(back.parameters(), model.parameters()))
    print(f"{name:18} read back by fm.load_model: {type(back).__name__}, the same weights: {same}")
'''

SNIPPETS["index"] = '''\
import onnx
import torch
from safetensors.torch import load_file
from featuremaps.inspect import filters_for_output

class TheanoLeNet(torch.nn.Module):    # the same network in torch, to load the state dict into
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 20, 5), torch.nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = torch.nn.Linear(800, 500), torch.nn.Linear(500, 10)

    def forward(self, x):
        x = torch.tanh(torch.nn.functional.max_pool2d(self.conv1(x), 2))
        x = torch.tanh(torch.nn.functional.max_pool2d(self.conv2(x), 2))
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))

net = TheanoLeNet()
net.load_state_dict(load_file("lenet.safetensors"))
graph = onnx.load("lenet.onnx").graph
conv2_node = next(node for node in graph.node if node.op_type == "Conv" and "conv2" in node.name)
onnx_w = next(onnx.numpy_helper.to_array(t) for t in graph.initializer if t.name == conv2_node.input[1])

weights = {"Keras .keras": keras.models.load_model("lenet.keras").get_layer("conv2").get_weights()[0],
           "Keras .h5": keras.models.load_model("lenet.h5").get_layer("conv2").get_weights()[0],
           "PyTorch": net.conv2.weight.detach().numpy(), "ONNX": onnx_w, "Theano": params[2]}
n = 7
kernel, connected = filters_for_output(model["conv2"], n)       # (kh, kw, C_in): map n's 3-D kernel
to_hwi = (1, 2, 0)                     # (C_in, kh, kw) -> (kh, kw, C_in), to compare
picks = {"Keras .keras": ("w[:, :, :, n]", lambda w: w[:, :, :, n]),
         "Keras .h5": ("w[:, :, :, n]", lambda w: w[:, :, :, n]),
         "PyTorch": ("w[n]", lambda w: w[n].transpose(to_hwi)),
         "ONNX": ("w[n]", lambda w: w[n].transpose(to_hwi)),
         "Theano": ("w[n, :, ::-1, ::-1]", lambda w: w[n, :, ::-1, ::-1].transpose(to_hwi))}
print(f"featuremaps: filters_for_output(conv2, {n}) -> {kernel.shape}, fed by {len(connected)} input maps")
for name, w in weights.items():
    index, pick = picks[name]
    print(f"{name:13} w.shape {str(w.shape):16} {index:20} equal: {np.array_equal(pick(w), kernel)}")
'''

SNIPPETS["kernel"] = '''\
print(f"map {n}'s filter over input map 0, in units of 1/64 (featuremaps w[:, :, 0, {n}]):")
print((kernel[:, :, 0] * 64).astype(int))
print("Theano's array holds it upside down and mirrored, w[n, 0]:")
print((params[2][n, 0] * 64).astype(int))
'''

SNIPPETS["run"] = '''\
import onnxruntime
from featuremaps import theano

x = np.round(np.random.default_rng(1).random((1, 28, 28, 1), dtype=np.float32) * 8) / 8   # NHWC
ours = model(x).data
with torch.no_grad():
    torch_out = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()             # NCHW for torch
session = onnxruntime.InferenceSession("lenet.onnx", providers=["CPUExecutionProvider"])
outs = {"Keras .keras": keras.models.load_model("lenet.keras").predict(x, verbose=0),
        "Keras .h5": keras.models.load_model("lenet.h5").predict(x, verbose=0),
        "PyTorch": torch_out,
        "ONNX": session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0],
        "Theano": theano.lenet_from_params(params)(x).data}
bound = 1e-4 * np.abs(ours).max()
for name, y in outs.items():
    print(f"{name:13} logits agree with featuremaps (rtol 1e-4 of the largest):", np.abs(y - ours).max() <= bound)
'''

TEMPLATE = '''\
<!-- Generated by docs/build_weights.py from its TEMPLATE: edit the template there and rerun
     `python docs/build_weights.py`; CI fails when this page is stale. -->
# Weights across frameworks: which dimension holds map n's filters?

*I have a conv layer's weight array from Keras, PyTorch, ONNX or Theano. Where are the filters of
output map n?*

Each output map of a conv layer has one 3-D kernel, `kh × kw × C_in`, spanning every input map. The
frameworks store the same numbers in different orders:

| framework | weight layout | map n's kernel |
|---|---|---|
| featuremaps, Keras, TensorFlow | `(kh, kw, in, out)` | `w[:, :, :, n]` |
| PyTorch, ONNX, Caffe | `(out, in, kh, kw)` | `w[n]` |
| Theano (`conv2d`, `filter_flip=True`) | `(out, in, kh, kw)`, kernels flipped | `w[n, :, ::-1, ::-1]` |

Theano's `conv2d` computes a true convolution, which flips the kernel; featuremaps, like the others,
computes a cross-correlation, so a Theano kernel is the featuremaps kernel rotated by 180°. This
page checks the table on real files: it trains a featuremaps LeNet for a few steps, saves it through
every route, reads each file back with that framework's own tools and indexes the array the
framework's way. Every code block was run to build the page (by `docs/build_weights.py`) and the
output under it is what it printed.

## A trained LeNet

{{code:train}}

{{out:train}}

## Save it through every route

{{code:save}}

{{out:save}}

`fm.load_model` recognises each file by its content, not its name (a safetensors file holds weights
only, so it needs the zoo model's name). `flip_kernels`, `hwio_to_oihw` and
`flatten_permutation` (in `featuremaps.layouts`) write the Theano tutorial's parameter list
`[W0, b0, W1, b1, W2, b2, W3, b3]`; `featuremaps.theano.lenet_from_params` reads it back.

## Map n's filters, by each framework's own indexing

{{code:index}}

{{out:index}}

Every framework's indexing gives exactly the kernel `filters_for_output` gives: the numbers are on a
1/64 grid, so every file holds them exactly and the comparison is `np.array_equal`. Here is one 2-D
slice of it, and the same slice in Theano's array:

{{code:kernel}}

{{out:kernel}}

## And every framework computes the same logits

{{code:run}}

{{out:run}}

## From the command line

`featuremaps convert IN OUT` makes each of these files from any other one (`.h5` is read only) and
checks the result on a random probe; `summary`, `explain`, `show` and `report` open them all:

    featuremaps convert run/checkpoint.npz lenet.keras        # prints the log and the max difference
    featuremaps convert lenet.h5 lenet.onnx
    featuremaps convert lenet.safetensors lenet.npz --arch lenet   # weights only: name the zoo model
    featuremaps summary lenet.safetensors --arch lenet
    featuremaps explain lenet.keras --layer conv2 --map 7 --at 3,3 --image digit.png
'''


def values(ns: dict, outputs: dict[str, str]) -> dict[str, str]:
    """The page's checks: every indexing equal, every framework's logits agreeing."""
    if outputs["index"].count("equal: True") != 5 or "False" in outputs["index"]:
        raise AssertionError("a framework's indexing did not give filters_for_output's kernel:\n" + outputs["index"])
    if outputs["save"].count("weights: True") != 4:
        raise AssertionError("a file did not read back with the same weights:\n" + outputs["save"])
    if outputs["run"].count(": True") != 5:
        raise AssertionError("a framework's logits disagree with featuremaps:\n" + outputs["run"])
    return {}


def generate(img_dir: Path) -> tuple[str, list[Path]]:
    """Run the snippets (in a temporary folder) and render the page; it has no figures."""
    with tempfile.TemporaryDirectory() as tmp:
        ns, outputs = pages.run_snippets(SNIPPETS, "weights_page", cwd=Path(tmp))
    page = pages.render(TEMPLATE, SNIPPETS, outputs, {}, values(ns, outputs), PREFIX)
    return page, []


def stale(page: str, drawn: list[Path], doc: Path = DOC, img_dir: Path = IMG) -> list[str]:
    return pages.stale(page, drawn, doc, img_dir, PREFIX)


def build(check: bool, doc: Path = DOC, img_dir: Path = IMG) -> int:
    return pages.build(lambda d: generate(d), check, doc, img_dir, PREFIX, Path(__file__).name)


def main(argv=None) -> int:
    return pages.main(build, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
