"""The CLI on every model file kind of issue 11: Keras `.keras` and legacy `.h5` files, `.safetensors`
weights with `--arch`, ONNX and checkpoints; `featuremaps convert` between them (each written file
checked by its own framework: Keras, torch, onnxruntime); and one clear error line for each bad input.

The Keras files are written by Keras itself (the oracle, torch backend), never by featuremaps."""
import json
import zipfile

import keras
import numpy as np
import pytest
import torch

import featuremaps as fm
import featuremaps.torch  # noqa: F401 - fm.torch
from featuremaps import checkpoint as ckpt
from featuremaps._load import ModelFileError, sniff
from tests.clirun import one_error, run_cli
from tests.onnx_oracle import ort_run

RTOL = 1e-4  # float32 against another framework's kernels (issue 11)


def forward(model, x) -> np.ndarray:
    with fm.no_grad():
        y = model(x)
    return np.asarray(getattr(y, "data", y))


def close(got, want, rtol: float = RTOL) -> None:
    """|got − want| ≤ rtol · max|want| element-wise (a relative test near 0 means nothing)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


def ort(path, x_nhwc):
    """onnxruntime on an ONNX file featuremaps wrote (NCHW input): its first output."""
    import onnx
    name = onnx.load(str(path)).graph.input[0].name
    return ort_run(path, {name: np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})[0]  # (n, c, h, w)


class TorchLeNet(torch.nn.Module):
    """The zoo's `lenet` written in torch, its attributes named as featuremaps names the layers."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 20, 5), torch.nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = torch.nn.Linear(800, 500), torch.nn.Linear(500, 10)

    def forward(self, x):
        x = torch.tanh(torch.nn.functional.max_pool2d(self.conv1(x), 2))
        x = torch.tanh(torch.nn.functional.max_pool2d(self.conv2(x), 2))
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))   # torch flattens in (c, h, w) order


def keras_net():
    """A small Keras CNN with non-trivial weights: conv (same, relu), pool, conv, flatten, dense."""
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((12, 12, 3)),
                            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
                            keras.layers.MaxPooling2D(2, name="p1"),
                            keras.layers.Conv2D(6, 3, name="c2"),
                            keras.layers.Flatten(name="flat"),
                            keras.layers.Dense(5, name="fc")])
    for layer in net.layers:  # random biases too (Keras starts them at zero)
        layer.set_weights([np.random.default_rng(1).uniform(-0.5, 0.5, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return net


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    net = keras_net()
    net.save(d / "net.keras")
    net.save(d / "net.h5")
    x = np.random.default_rng(2).standard_normal((1, 12, 12, 3)).astype(np.float32)
    np.save(d / "x.npy", x)
    lenet = fm.models.get("lenet", rng=np.random.default_rng(3)).eval()
    r = np.random.default_rng(5)  # the zoo starts fc2 at zero (as the tutorial): give every weight a value
    for p in (lenet["fc2"].weight, lenet["fc2"].bias, lenet["conv1"].bias, lenet["conv2"].bias):
        p.data[...] = r.uniform(-0.3, 0.3, p.data.shape)
    ckpt.save_checkpoint(d / "lenet.npz", lenet, epoch=0, keep_previous=False)
    fm.torch.export_state_dict(lenet, d / "lenet.safetensors")
    digit = np.random.default_rng(4).random((1, 28, 28, 1), dtype=np.float32)
    np.save(d / "digit.npy", digit)
    return {"dir": d, "keras": d / "net.keras", "h5": d / "net.h5", "x": x, "x_npy": d / "x.npy",
            "keras_y": np.asarray(net.predict(x, verbose=0)), "net": net, "lenet": lenet,
            "npz": d / "lenet.npz", "st": d / "lenet.safetensors", "digit": digit, "digit_npy": d / "digit.npy"}


# --- recognised by content, loaded equal to the framework ------------------------------------------------

def test_keras_and_safetensors_files_are_recognised_by_content_whatever_their_name(files, tmp_path):
    for key, kind in (("keras", "keras"), ("h5", "keras"), ("st", "safetensors"), ("npz", "checkpoint")):
        renamed = tmp_path / f"{key}.bin"
        renamed.write_bytes(files[key].read_bytes())
        assert sniff(renamed) == kind, key
    for key in ("keras", "h5"):
        model = fm.load_model(files[key])
        close(forward(model, files["x"]), files["keras_y"])
        assert model.import_log, key  # every conversion logged
    model = fm.load_model(files["st"], arch="lenet")
    close(forward(model, files["digit"]), forward(files["lenet"], files["digit"]))
    assert any("safetensors" in line or "OIHW" in line for line in model.import_log), model.import_log


def test_summary_explain_show_report_accept_keras_h5_and_safetensors(files, capsys, tmp_path):
    for path, extra in ((files["keras"], ()), (files["h5"], ()), (files["st"], ("--arch", "lenet"))):
        code, out, err = run_cli(capsys, "summary", path, *extra, "--json")
        assert code == 0, err
        names = [row["name"] for row in json.loads(out)["rows"]]
        assert ("c2" in names) if path != files["st"] else ("conv2" in names and "fc2" in names), names
    code, out, err = run_cli(capsys, "summary", files["keras"])
    assert code == 0 and all(line in out for line in fm.load_model(files["keras"]).import_log), err
    # explain one value of c2 (pre-activation): recomputed and checked against the engine
    for path in (files["keras"], files["h5"]):
        code, out, err = run_cli(capsys, "explain", path, "--image", files["x_npy"], "--layer", "c2", "--map", "3",
                                 "--at", "1,2", "--json")
        assert code == 0, err
        e = json.loads(out)["explanation"]
        assert e["agrees"] is True, e
    code, out, err = run_cli(capsys, "explain", files["st"], "--arch", "lenet", "--image", files["digit_npy"],
                             "--layer", "conv2", "--map", "7", "--at", "3,3", "--json")
    assert code == 0 and json.loads(out)["explanation"]["agrees"] is True, err
    png = tmp_path / "k.png"
    assert run_cli(capsys, "show", "kernels", files["h5"], "--layer", "c1", "-o", png)[0] == 0 and png.stat().st_size
    png2 = tmp_path / "k2.png"
    code, _, err = run_cli(capsys, "show", "kernels", files["st"], "--arch", "lenet", "-o", png2)
    assert code == 0 and png2.stat().st_size, err
    html = tmp_path / "r.html"
    code, out, err = run_cli(capsys, "report", files["keras"], "--image", files["x_npy"], "-o", html)
    assert code == 0 and html.stat().st_size > 1000, err
    html2 = tmp_path / "r2.html"
    code, out, err = run_cli(capsys, "report", files["st"], "--arch", "lenet", "--image", files["digit_npy"],
                             "-o", html2)
    assert code == 0 and html2.exists(), err


# --- convert: every route, each written file run by its own framework ------------------------------------

def _convert(capsys, *argv):
    code, out, err = run_cli(capsys, "convert", *argv, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verify"]["agrees"] is True and doc["verify"]["max_difference"] >= 0, doc["verify"]
    return doc


def test_convert_keras_files_to_every_format(files, capsys, tmp_path):
    x, want = files["x"], files["keras_y"]
    for src in (files["keras"], files["h5"]):
        doc = _convert(capsys, src, tmp_path / "k.npz")
        assert doc["import_log"] == fm.load_model(src).import_log and doc["format"] == "checkpoint"
        close(forward(fm.load_model(tmp_path / "k.npz"), x), want)
        _convert(capsys, src, tmp_path / "k.onnx")
        close(ort(tmp_path / "k.onnx", x), want)
        _convert(capsys, src, tmp_path / "k.keras")
        again = keras.models.load_model(tmp_path / "k.keras")
        close(again.predict(x, verbose=0), want)


def test_convert_checkpoint_and_safetensors_routes(files, capsys, tmp_path):
    lenet, digit = files["lenet"], files["digit"]
    want = forward(lenet, digit)
    doc = _convert(capsys, files["npz"], tmp_path / "l.safetensors")
    assert doc["format"] == "safetensors"
    from safetensors.torch import load_file
    net = TorchLeNet().eval()
    net.load_state_dict(load_file(str(tmp_path / "l.safetensors")))   # torch loads what convert wrote
    with torch.no_grad():
        close(net(torch.from_numpy(digit.transpose(0, 3, 1, 2))).numpy(), want)
    _convert(capsys, tmp_path / "l.safetensors", tmp_path / "l.onnx", "--arch", "lenet")
    close(ort(tmp_path / "l.onnx", digit), want)
    _convert(capsys, tmp_path / "l.onnx", tmp_path / "l2.npz")
    close(forward(fm.load_model(tmp_path / "l2.npz"), digit), want)
    _convert(capsys, files["npz"], tmp_path / "l.keras")
    close(keras.models.load_model(tmp_path / "l.keras").predict(digit, verbose=0), want)
    code, out, err = run_cli(capsys, "convert", files["st"], tmp_path / "l3.npz", "--arch", "lenet")
    assert code == 0, err
    assert out.startswith("import log (") and "verified on a random probe (seed 0)" in out and "agrees" in out
    assert "max |difference| = " in out


def test_convert_reports_a_divergence_with_its_layer(files, capsys, tmp_path, monkeypatch):
    from featuremaps.commands import convert
    real = convert._read_back

    def broken(kind, out, model):  # a writer bug: one kernel of conv2 comes back wrong
        back = real(kind, out, model)
        back["conv2"].weight.data[0, 0, 0, 0] += 1.0
        return back
    monkeypatch.setattr(convert, "_read_back", broken)
    code, out, err = run_cli(capsys, "convert", files["npz"], tmp_path / "bad.onnx")
    assert code == 1 and "DIVERGES" in out and "'conv2'" in out, (out, err)
    assert "first at layer 'conv2'" in err


# --- bad input: one line each ------------------------------------------------------------------------------

def test_bad_format_inputs_are_one_line_each(files, capsys, tmp_path):
    def line(*argv):
        return one_error(*run_cli(capsys, *argv)[::2])

    msg = line("summary", files["st"])
    assert "safetensors" in msg and "--arch NAME" in msg and "lenet" in msg, msg
    msg = line("summary", files["st"], "--arch", "resnet9000")
    assert "--arch must name a zoo model" in msg and "'resnet9000'" in msg, msg
    msg = line("explain", files["keras"], "--arch", "lenet", "--layer", "c1", "--map", "0", "--at", "1,1",
               "--image", files["x_npy"])
    assert "--arch is for .safetensors files" in msg and "drop --arch" in msg, msg
    msg = line("convert", files["keras"], tmp_path / "out.h5")
    assert "does not write them" in msg and "OUT.keras" in msg, msg
    msg = line("convert", files["keras"], tmp_path / "out.pt")
    assert "OUT must name a .npz, .onnx, .keras or .safetensors file" in msg, msg
    msg = line("convert", files["keras"], tmp_path / "out.onnx", "--mean", "0.5,0.5,0.5")
    assert "--mean/--std are stored in a featuremaps checkpoint only" in msg, msg
    msg = line("convert", files["keras"], files["keras"])
    assert "IN and OUT are the same file" in msg, msg
    msg = line("explain", files["keras"], "--layer", "c1", "--map", "0", "--at", "1,1", "--index", "0")
    assert "a Keras model does not say which" in msg and "--image" in msg, msg
    for out in ("o.npz", "o.onnx", "o.h5", "o.pt"):
        assert not (tmp_path / out).exists()


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in entries.items():
            zf.writestr(k, v)
    return path


def test_damaged_files_are_one_line_naming_the_file(files, capsys, tmp_path):
    cases = {}
    notzip = tmp_path / "notzip.keras"
    notzip.write_text("hello, not a zip\n")
    cases[notzip] = ["notzip.keras", "its name says a Keras .keras file"]
    cut = tmp_path / "cut.keras"
    data = files["keras"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cases[cut] = ["cut.keras", "damaged or truncated"]
    with zipfile.ZipFile(files["keras"]) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    bad = dict(entries, **{"model.weights.h5": entries["model.weights.h5"][:200]})
    cases[_zip(tmp_path / "badweights.keras", bad)] = ["badweights.keras"]
    cases[_zip(tmp_path / "noweights.keras", {"config.json": entries["config.json"]})] = [
        "noweights.keras", "no weights file"]
    h5 = tmp_path / "weights.h5"
    import h5py
    with h5py.File(h5, "w") as f:
        f.attrs["layer_names"] = np.array([b"c1"])
    cases[h5] = ["weights.h5", "without a 'model_config' attribute", "weights alone"]
    st = tmp_path / "cut.safetensors"
    data = files["st"].read_bytes()
    st.write_bytes(data[:40])
    cases[st] = ["cut.safetensors", "truncated"]
    for path, needles in cases.items():
        for argv in (("summary", path), ("convert", path, tmp_path / "o.npz")):
            msg = one_error(*run_cli(capsys, *argv)[::2])
            assert all(n in msg for n in needles), (argv, msg)
        with pytest.raises((ModelFileError, ValueError)) as e:
            fm.load_model(path)
        assert path.name in str(e.value)
    assert not (tmp_path / "o.npz").exists()


def test_a_state_dict_that_does_not_fit_the_arch_is_refused_whole(files, capsys, tmp_path):
    msg = one_error(*run_cli(capsys, "summary", files["st"], "--arch", "lenet5")[::2])
    assert "conv" in msg or "shape" in msg, msg


def test_help_names_the_formats(capsys):
    code, out, _ = run_cli(capsys, "convert", "--help")
    text = " ".join(out.split())
    assert code == 0 and all(n in text for n in (".keras", ".safetensors", "--arch", "--seed", "read only"))
    for argv in (("summary",), ("explain",), ("report",), ("show", "maps")):
        code, out, _ = run_cli(capsys, *argv, "--help")
        assert code == 0 and "--arch" in out, argv
