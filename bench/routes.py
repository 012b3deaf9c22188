"""How far each conversion route moves a model's output: one table, model by route (issue 11).

    python bench/routes.py [--seed 0] [--batch 8]

Models: the zoo's lenet, lenet5 and cnn, and `residual`, a `featuremaps.nn.Graph` (conv–BatchNorm–
ReLU–conv–BatchNorm, Add of the input, ReLU; the layout of tests/torch_nets.BasicBlock(8, 8, 1),
whose node names it shares). Every parameter and BatchNorm statistic is redrawn from the seed
(`tests/test_onnx_export.randomize`: variance 1/fan-in weights, running means ≠ 0, variances ≠ 1),
and each model runs in eval mode on one seeded standard-normal float32 probe batch.

A cell is max |featuremaps − peer| / max |peer| over the output (float64 arithmetic on the two
outputs), the peer being the other framework, or the original model for a route that comes back
into featuremaps. A route that does not apply prints "n/a" with its reason in a footnote; a route
that fails prints "error" with the exception. Files go to a temporary directory. See
bench/README.md for each route.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch (its numpy backend needs jax)

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FLAG = 1e-5  # the relative difference above which a cell is marked (*) and listed under the table


class NotApplicable(Exception):
    """A route that does not apply to a model; the message is the footnote."""


# --- models ---------------------------------------------------------------------------------------
def residual_graph(rng):
    """torch_nets.BasicBlock(8, 8, 1) in featuremaps, on 12×12×8 maps: the same node names (c1, b1,
    c2, b2), so that its exported state dict loads into that module as it is."""
    from featuremaps import nn
    return nn.Graph({"image": (12, 12, 8)}, [
        ("c1", nn.Conv2D(8, 8, 3, padding=1, bias=False, rng=rng), "image"),
        ("b1", nn.BatchNorm2D(8), "c1"), ("relu1", nn.ReLU(), "b1"),
        ("c2", nn.Conv2D(8, 8, 3, padding=1, bias=False, rng=rng), "relu1"),
        ("b2", nn.BatchNorm2D(8), "c2"),
        ("add", nn.Add(), ["b2", "image"]), ("out", nn.ReLU(), "add")], "out")


def build_models(seed: int) -> dict:
    import featuremaps as fm
    from tests.test_onnx_export import randomize
    models = {name: fm.models.get(name, rng=seed) for name in ("lenet", "lenet5", "cnn")}
    models["residual"] = residual_graph(np.random.default_rng(seed))
    return {name: randomize(m, seed=seed + i) for i, (name, m) in enumerate(models.items())}


def input_shape(model) -> tuple:
    shapes = getattr(model, "input_shapes", None)
    return tuple(next(iter(shapes.values())) if isinstance(shapes, dict) else model.input_shape)


# --- helpers --------------------------------------------------------------------------------------
def fm_out(model, x: np.ndarray) -> np.ndarray:
    import featuremaps as fm
    with fm.no_grad():
        y = model(x)
    return np.asarray(getattr(y, "data", y))


def rel(ours, ref) -> float:
    """max |ours − ref| / max |ref|, in float64; shapes must agree."""
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: featuremaps {a.shape}, peer {b.shape}")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


@contextlib.contextmanager
def quiet():
    """Keras's and torch's warnings and progress chatter (h5 is "legacy", and so on) kept off the table."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# --- the torch modules of the test suite that equal a model here ---------------------------------------
def torch_twin(name: str):
    """(module, featuremaps layer → torch module prefix) for the models the test suite has in torch."""
    if name == "lenet":
        from tests.test_torch_convert import TheanoLeNet  # the zoo's lenet, layers named a, b, c, d
        return TheanoLeNet().eval(), {"conv1": "a", "conv2": "b", "fc1": "c", "fc2": "d"}
    if name == "residual":
        from tests.torch_nets import BasicBlock
        return BasicBlock(8, 8, 1).eval(), {}
    raise NotApplicable("the test suite has no torch module of this model (tests/torch_nets.py, "
                        "tests/test_torch_convert.py), and this script writes none of its own")


def torch_loaded(name: str, model, tmp: Path):
    """The torch twin holding `model`'s weights, through export_state_dict and torch's strict load."""
    import torch
    from safetensors.numpy import load_file

    from featuremaps.torch import export_state_dict
    net, prefix = torch_twin(name)
    path = export_state_dict(model, tmp / f"{name}.twin.safetensors")
    state = {}
    for key, a in load_file(str(path)).items():
        layer, _, kind = key.rpartition(".")
        state[f"{prefix.get(layer, layer)}.{kind}"] = torch.from_numpy(a)
    net.load_state_dict(state, strict=True)
    return net


def torch_out(net, x: np.ndarray) -> np.ndarray:
    import torch
    with torch.no_grad():
        return nhwc(net(torch.from_numpy(nchw(x))).numpy())


# --- the routes: each returns featuremaps' output and the peer's ----------------------------------------
def onnx_ort(name, model, x, tmp):
    import onnx

    from featuremaps.onnx import export
    from tests.onnx_oracle import ort_run
    path = export(model, tmp / f"{name}.onnx")
    feed = onnx.load(str(path)).graph.input[0].name
    return fm_out(model, x), nhwc(ort_run(path, {feed: nchw(x)})[0])


def onnx_back(name, model, x, tmp):
    from featuremaps.onnx import export, load
    back = load(export(model, tmp / f"{name}.rt.onnx"))
    return fm_out(back, x), fm_out(model, x)


def keras_file(name, model, tmp) -> Path:
    path = tmp / f"{name}.keras"
    if not path.exists():
        from featuremaps.keras import export
        export(model, path)
    return path


def keras_predict(name, model, x, tmp):
    import keras
    with quiet():
        km = keras.models.load_model(keras_file(name, model, tmp))
        ky = km.predict(x, verbose=0)
    return fm_out(model, x), np.asarray(ky)


def keras_back(name, model, x, tmp):
    from featuremaps.keras import load
    return fm_out(load(keras_file(name, model, tmp)), x), fm_out(model, x)


def keras_h5_back(name, model, x, tmp):
    """featuremaps writes no .h5 (commands/convert.py): Keras 3 turns the exported .keras into one."""
    import keras

    from featuremaps.keras import load
    h5 = tmp / f"{name}.h5"
    with quiet():
        keras.models.load_model(keras_file(name, model, tmp)).save(h5)
    return fm_out(load(h5), x), fm_out(model, x)


def safetensors_back(name, model, x, tmp):
    """export_state_dict, then load_state_dict into a fresh model of the same config (as convert does)."""
    from featuremaps.commands.convert import _read_back
    from featuremaps.torch import export_state_dict
    path = export_state_dict(model, tmp / f"{name}.safetensors")
    return fm_out(_read_back("safetensors", path, model), x), fm_out(model, x)


def torch_module(name, model, x, tmp):
    """featuremaps' model against its torch twin holding the same weights."""
    return fm_out(model, x), torch_out(torch_loaded(name, model, tmp), x)


def from_module(dtype):
    def route(name, model, x, tmp):
        """from_module of the torch twin (in `dtype`) against that module, on the probe in `dtype`."""
        import torch

        from featuremaps.torch import from_module
        net = copy.deepcopy(torch_loaded(name, model, tmp)).to(getattr(torch, dtype))
        with quiet():
            converted = from_module(net, input_shape(model))
        xd = x.astype(dtype)
        return fm_out(converted, xd), torch_out(net, xd)
    return route


def theano(name, model, x, tmp, *, seed: int):
    """lenet_from_params of seeded Theano-layout arrays (float32) against the tutorial's equations with
    scipy.signal.convolve2d (a true convolution): tests/test_theano.py's oracle."""
    if name != "lenet":
        raise NotApplicable("featuremaps.theano.lenet_from_params builds the zoo's lenet only (the Theano "
                            "tutorial's LeNet)")
    from featuremaps.theano import lenet_from_params
    from tests.test_theano import tutorial_forward, tutorial_params
    params = tutorial_params(np.random.default_rng([seed, 7]), dtype=np.float32)
    return fm_out(lenet_from_params(params), x), tutorial_forward(params, x[..., 0])["logits"]


def convert_to(suffix):
    def route(name, model, x, tmp, *, seed: int):
        """`featuremaps convert` (commands.convert.run) from a checkpoint of the model to `suffix`;
        its verify_conversion max |difference| over max |source output| on the same probe."""
        from featuremaps.checkpoint import save_checkpoint
        from featuremaps.commands import convert
        src = tmp / f"{name}.convert-src.npz"
        if not src.exists():
            save_checkpoint(src, model, epoch=0, keep_previous=False)
        args = argparse.Namespace(source=str(src), out=str(tmp / f"{name}.convert{suffix}"), input_shape=None,
                                  arch=None, mean=None, std=None, seed=seed, json=True)
        out = io.StringIO()
        with quiet(), contextlib.redirect_stdout(out):
            code = convert.run(args)
        v = json.loads(out.getvalue())["verify"]
        scale = float(np.max(np.abs(fm_out(model, convert.probe_for(model, seed)))))
        return v["max_difference"] / scale, code == 0 and v["agrees"]
    return route


# (label, function, whether it takes --seed)
ROUTES = [
    ("ONNX → onnxruntime", onnx_ort, False),
    ("ONNX → featuremaps.onnx.load", onnx_back, False),
    (".keras → Keras 3 predict", keras_predict, False),
    (".keras → featuremaps.keras.load", keras_back, False),
    (".keras → Keras .h5 → fm.keras.load", keras_h5_back, False),
    ("safetensors → load_state_dict", safetensors_back, False),
    ("safetensors → torch module", torch_module, False),
    ("from_module float64 vs torch", from_module("float64"), False),
    ("from_module float32 vs torch", from_module("float32"), False),
    ("theano arrays vs convolve2d", theano, True),
    ("convert .npz → .onnx (verify)", convert_to(".onnx"), True),
    ("convert .npz → .keras (verify)", convert_to(".keras"), True),
    ("convert .npz → .safetensors (verify)", convert_to(".safetensors"), True),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and the probe (default 0)")
    ap.add_argument("--batch", type=int, default=8, help="probe batch size (default 8)")
    args = ap.parse_args()
    if args.batch < 1:
        ap.error(f"--batch must be ≥ 1; received {args.batch}")
    if args.seed < 0:
        ap.error(f"--seed must be ≥ 0; received {args.seed}")
    import keras
    import onnxruntime
    import torch
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    models = build_models(args.seed)
    rng = np.random.default_rng([args.seed, 1])
    probes = {name: rng.standard_normal((args.batch, *input_shape(m))).astype(np.float32)
              for name, m in models.items()}
    notes: dict[str, int] = {}
    cells, flagged, failed = {}, [], []
    with tempfile.TemporaryDirectory(prefix="fm-routes-") as d:
        tmp = Path(d)
        for label, fn, seeded in ROUTES:
            for name, model in models.items():
                try:
                    got = fn(name, model, probes[name], tmp, **({"seed": args.seed} if seeded else {}))
                    if isinstance(got[1], (bool, np.bool_)):  # convert: (relative difference, agrees)
                        r, ok = got
                        mark = "" if ok else " ✗"
                        if not ok:
                            failed.append(f"{label} / {name}: verify_conversion says the read-back model diverges")
                    else:
                        r, mark = rel(*got), ""
                    if r > FLAG:
                        mark += " *"
                        flagged.append((label, name, r))
                    cells[label, name] = f"{r:.1e}{mark}"
                except NotApplicable as e:
                    k = notes.setdefault(f"n/a: {e}", len(notes) + 1)
                    cells[label, name] = f"n/a[{k}]"
                except Exception as e:  # noqa: BLE001 — shown in the table, never a blank
                    k = notes.setdefault(f"error: {type(e).__name__}: {str(e)[:300]}", len(notes) + 1)
                    cells[label, name] = f"error[{k}]"
    print(f"max |featuremaps − peer| / max |peer| over the output; seed {args.seed}, float32 probe "
          f"batch {args.batch} (convert rows: its own batch-of-one probe, seed {args.seed}); "
          f"onnxruntime {onnxruntime.__version__}, Keras {keras.__version__} ({keras.backend.backend()}), "
          f"torch {torch.__version__}\n")
    names = list(models)
    width = max(len(r[0]) for r in ROUTES)
    head = f"{'route':<{width}}" + "".join(f" {n:>13}" for n in names)
    print(head)
    print("-" * len(head))
    for label, _, _ in ROUTES:
        print(f"{label:<{width}}" + "".join(f" {cells[label, n]:>13}" for n in names))
    print()
    for text, k in notes.items():
        print(f"[{k}] {text}")
    print(f"* above {FLAG:g} relative" + (": " + "; ".join(f"{lb} / {n} {r:.2g}" for lb, n, r in flagged)
                                          if flagged else ": none"))
    print("✗ verify_conversion disagreed: " + ("; ".join(failed) if failed else "none"))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
