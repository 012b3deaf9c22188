"""The command line on ONNX files: summary, explain, show and report on an `.onnx` file (recognised by
content), `convert` to a checkpoint and `export` back to ONNX, with onnxruntime as the oracle for every
value; `--mean/--std`, `--layout` and `--input-shape`; and one clear error line for each bad input.

The models are small torch modules with random weights exported here with the legacy exporter, and
graphs written with onnx.helper."""
import json

import numpy as np
import pytest
from PIL import Image

import featuremaps as fm
from featuremaps import checkpoint as ckpt
from featuremaps.nn.graph import model_nodes
from tests.clirun import one_error, run_cli
from tests.test_load_model import close, conv_relu_onnx, fm_run, forward

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from tests.torch_nets import build, export  # noqa: E402 - needs torch

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class TinyRGB(torch.nn.Module):
    """An ImageNet-shaped (224×224 RGB) classifier small enough for NumPy in a test."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 6, 7, stride=4, padding=3)
        self.c2 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.c2(x)), 1)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """tiny.onnx (224×224 RGB), resnet.onnx (a graph with skip connections), vgg.onnx (its flatten
    gives an import log), free.onnx (free H, W), a 224×224 RGB PNG and its ImageNet-preprocessed NCHW
    float input."""
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    tiny = TinyRGB().eval()
    export(tiny, d / "tiny.onnx", np.zeros((1, 3, 224, 224), np.float32), dynamo=False)
    for name in ("resnet_like", "vgg_like"):
        module, shape = build(name)
        export(module, d / f"{name.split('_')[0]}.onnx", np.zeros((1,) + shape[1:], np.float32), dynamo=False)
    conv_relu_onnx(d / "free.onnx", free=True)
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(d / "rgb.png")
    Image.fromarray(pixels[:32, :32]).save(d / "rgb32.png")  # for the 32×32 ResNet-like net
    x = ((pixels / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)[None]  # (1, 3, 224, 224)
    return {"dir": d, "tiny": d / "tiny.onnx", "resnet": d / "resnet.onnx", "vgg": d / "vgg.onnx",
            "free": d / "free.onnx", "png": d / "rgb.png", "png32": d / "rgb32.png", "x": np.ascontiguousarray(x),
            "pixels": pixels}


def ort_values(path, x, extra=()):
    """onnxruntime's graph outputs, plus the tensors named in `extra` exposed as extra outputs."""
    m = onnx.load(str(path))
    for name in extra:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))


def layers_of(path, role, **kw):
    model = fm.load_model(path, **kw)
    return [n.name for n in model_nodes(model) if n.layer.role == role]


def scale(e: dict) -> float:
    """The size of an explained sum: Σ|partial sums| + |bias| (the bound's scale for its total)."""
    return sum(abs(t["partial_sum"]) for t in e["terms"]) + abs(e["bias"] or 0.0)


def explain_json(capsys, *argv):
    code, out, err = run_cli(capsys, "explain", *argv, "--json")
    assert code == 0, err
    return json.loads(out)["explanation"]


# --- summary -----------------------------------------------------------------------------------------

def test_summary_on_onnx_shows_the_graph_rows_and_the_import_log(files, capsys):
    model = fm.load_model(files["resnet"])
    code, out, err = run_cli(capsys, "summary", files["resnet"])
    assert code == 0, err
    for name in model.names():
        assert name in out, name
    merges = [n for n in model_nodes(model) if n.layer.role == "merge"]
    assert len(merges) == 3  # the three residual additions are graph rows, with what they read
    assert all(f"{n.inputs[0]}, {n.inputs[1]}" in out for n in merges)
    vgg = fm.load_model(files["vgg"])
    assert any("permuted" in line for line in vgg.import_log)  # the flatten before the first Dense
    code, out, err = run_cli(capsys, "summary", files["vgg"])
    assert code == 0, err
    assert "import log:" in out and out.index("import log:") > out.index("total")  # after the table
    for line in vgg.import_log:
        assert line in out
    code, out, _ = run_cli(capsys, "summary", files["vgg"], "--json")
    assert code == 0 and json.loads(out)["import_log"] == vgg.import_log


def test_free_dimensions_need_input_shape(files, capsys):
    line = one_error(*run_cli(capsys, "summary", files["free"])[::2])
    assert "free dimensions (n, 3, h, w)" in line and "pass --input-shape H,W,C" in line, line
    line = one_error(*run_cli(capsys, "explain", files["free"], "--layer", "x", "--map", "0", "--image",
                              files["png"])[::2])
    assert "--input-shape" in line
    line = one_error(*run_cli(capsys, "evaluate", files["free"])[::2])  # no --input-shape there: convert first
    assert "featuremaps convert" in line and "--input-shape H,W,C" in line, line
    code, out, err = run_cli(capsys, "summary", files["free"], "--input-shape", "6,5,3")
    assert code == 0, err
    assert "6×5×4" in out  # the conv's output at that input


# --- explain: values against onnxruntime --------------------------------------------------------------

def test_explain_on_onnx_agrees_with_onnxruntime(files, capsys):
    conv = layers_of(files["tiny"], "conv")[0]
    dense = layers_of(files["tiny"], "dense")[-1]
    first_conv = next(n for n in onnx.load(str(files["tiny"])).graph.node if n.op_type == "Conv").output[0]
    ref = ort_values(files["tiny"], files["x"], extra=[first_conv])
    e = explain_json(capsys, files["tiny"], "--layer", conv, "--map", "2", "--at", "10,17", "--image", files["png"],
                     "--mean", "imagenet")
    assert e["agrees"]
    close(e["pre_activation"], ref[first_conv][0, 2, 10, 17], scale(e))
    e = explain_json(capsys, files["tiny"], "--layer", dense, "--map", "3", "--image", files["png"],
                     "--std", "imagenet")  # a preset on one flag sets both
    close(e["pre_activation"], ref["y"][0, 3], scale(e))
    code, out, err = run_cli(capsys, "explain", files["tiny"], "--layer", conv, "--map", "2", "--at", "10,17",
                             "--image", files["png"], "--mean", "imagenet")
    assert code == 0 and f"input: image {files['png']}" in out


def test_mean_and_std_numbers_equal_the_preset(files, capsys):
    conv = layers_of(files["tiny"], "conv")[0]
    args = ("--layer", conv, "--map", "1", "--at", "3,4", "--image", files["png"])
    preset = explain_json(capsys, files["tiny"], *args, "--mean", "imagenet")
    numbers = explain_json(capsys, files["tiny"], *args, "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225")
    assert numbers["pre_activation"] == preset["pre_activation"]  # the same constants, the same path
    plain = explain_json(capsys, files["tiny"], *args)  # no flags: pixels / 255
    raw = (files["pixels"] / 255.0).astype(np.float32).transpose(2, 0, 1)[None]
    first_conv = next(n for n in onnx.load(str(files["tiny"])).graph.node if n.op_type == "Conv").output[0]
    want = ort_values(files["tiny"], np.ascontiguousarray(raw), extra=[first_conv])[first_conv][0, 1, 3, 4]
    close(plain["pre_activation"], want, scale(plain))


@pytest.mark.parametrize("layout", ["NCHW", "CHW", "NHWC", "HWC"])
def test_npy_inputs_in_each_layout_give_the_same_value(files, capsys, layout, tmp_path):
    conv = layers_of(files["tiny"], "conv")[0]
    x = files["x"]  # (1, 3, 224, 224)
    arr = {"NCHW": x, "CHW": x[0], "NHWC": x.transpose(0, 2, 3, 1), "HWC": x[0].transpose(1, 2, 0)}[layout]
    np.save(tmp_path / "x.npy", np.ascontiguousarray(arr))
    args = ("--layer", conv, "--map", "4", "--at", "20,30")
    e = explain_json(capsys, files["tiny"], *args, "--image", tmp_path / "x.npy", "--layout", layout)
    png = explain_json(capsys, files["tiny"], *args, "--image", files["png"], "--mean", "imagenet")
    close(e["pre_activation"], png["pre_activation"], scale(png))


# --- show, report ----------------------------------------------------------------------------------

def test_show_and_report_write_their_files(files, capsys, tmp_path):
    for what in ("maps", "kernels", "receptive"):
        out = tmp_path / f"{what}.png"
        extra = ("--image", files["png"], "--mean", "imagenet") if what != "kernels" else ()
        code, stdout, err = run_cli(capsys, "show", what, files["tiny"], *extra, "-o", out)
        assert code == 0, err
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and stdout.strip() == str(out)
    html = tmp_path / "r.html"
    code, out, err = run_cli(capsys, "report", files["resnet"], "--image", files["png32"], "--mean", "imagenet",
                             "-o", html)
    assert code == 0, err
    assert out.startswith(f"wrote {html}")
    page = html.read_text(encoding="utf-8")
    model = fm.load_model(files["resnet"])
    merges = [n.name for n in model_nodes(model) if n.layer.role == "merge"]
    assert all(m in page for m in merges)


# --- convert, export -------------------------------------------------------------------------------

def test_convert_writes_a_checkpoint_that_keeps_the_import_log_and_normalisation(files, capsys, tmp_path):
    vgg, out = fm.load_model(files["vgg"]), tmp_path / "vgg.npz"
    code, stdout, err = run_cli(capsys, "convert", files["vgg"], out)
    assert code == 0, err
    assert f"import log ({len(vgg.import_log)} steps, from {files['vgg']}):" in stdout
    assert all(line in stdout for line in vgg.import_log) and f"wrote {out}" in stdout
    meta = ckpt.read_checkpoint(out).meta
    assert meta["import_log"] == vgg.import_log and meta["onnx_path"] == str(files["vgg"])
    code, stdout, err = run_cli(capsys, "summary", out)  # the log is still shown from the checkpoint
    assert code == 0 and all(line in stdout for line in vgg.import_log)
    assert fm.load_model(out).import_log == vgg.import_log
    out = tmp_path / "tiny.npz"
    code, stdout, err = run_cli(capsys, "convert", files["tiny"], out, "--mean", "imagenet")
    assert code == 0, err
    assert ckpt.read_checkpoint(out).meta["normalization"] == {"mean": MEAN.tolist(), "std": STD.tolist()}
    conv = layers_of(out, "conv")[0]
    args = ("--layer", conv, "--map", "2", "--at", "10,17", "--image", files["png"])
    from_npz = explain_json(capsys, out, *args)  # the stored normalisation, no flag
    from_onnx = explain_json(capsys, files["tiny"], *args, "--mean", "imagenet")
    close(from_npz["pre_activation"], from_onnx["pre_activation"], scale(from_onnx))
    reloaded = fm.load_model(out)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    close(fm_run(reloaded, x), ort_values(files["tiny"], x)["y"])


def test_export_writes_onnx_that_onnxruntime_runs_equal_to_featuremaps(files, capsys, tmp_path):
    model = fm.models.get("lenet", rng=np.random.default_rng(3))
    run = tmp_path / "run"
    ckpt.save_checkpoint(run, model, epoch=1)
    out = tmp_path / "lenet.onnx"
    code, stdout, err = run_cli(capsys, "export", run, out)
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}") and "opset 17" in stdout and "(NCHW)" in stdout
    x = np.random.default_rng(4).random((2, 1, 28, 28), dtype=np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    close(got, fm_run(model.eval(), x))
    # an imported graph, converted, exported again: onnxruntime agrees with the original file
    npz = tmp_path / "resnet.npz"
    assert run_cli(capsys, "convert", files["resnet"], npz)[0] == 0
    again = tmp_path / "again.onnx"
    code, stdout, err = run_cli(capsys, "export", npz, again, "--opset", "13", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["opset"] == 13 and doc["onnx"] == str(again) and doc["inputs"][0]["shape"][1:] == [3, 32, 32]
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    sess = ort.InferenceSession(str(again), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    close(got, ort_values(files["resnet"], x)["y"])


# --- bad input: one line each ----------------------------------------------------------------------

def test_preprocessing_errors_are_one_line(files, capsys, tmp_path):
    conv = layers_of(files["tiny"], "conv")[0]
    base = ("explain", files["tiny"], "--layer", conv, "--map", "0", "--at", "1,1")
    line = one_error(*run_cli(capsys, *base, "--image", files["png"], "--mean", "0.5,0.5")[::2])
    assert "--mean takes 3 numbers" in line and "received 2: 0.5,0.5" in line and "224×224×3" in line, line
    line = one_error(*run_cli(capsys, *base, "--image", files["png"], "--mean", "grey")[::2])
    assert "--mean" in line and "'grey'" in line and "imagenet" in line, line
    line = one_error(*run_cli(capsys, *base, "--image", files["png"], "--std", "0.2,0,0.2")[::2])
    assert "--std" in line and "> 0" in line, line
    line = one_error(*run_cli(capsys, *base, "--image", files["png"], "--layout", "NWHC")[::2])
    assert "--layout" in line and "'NWHC'" in line and "NCHW" in line, line
    line = one_error(*run_cli(capsys, *base, "--image", files["png"], "--layout", "NCHW")[::2])
    assert "--layout applies to .npy arrays" in line, line
    small = tmp_path / "small.png"
    Image.fromarray(files["pixels"][:80, :100]).save(small)
    line = one_error(*run_cli(capsys, *base, "--image", small)[::2])
    assert "100×80" in line and "224×224" in line and "resize" in line, line
    np.save(tmp_path / "nchw.npy", files["x"])
    line = one_error(*run_cli(capsys, *base, "--image", tmp_path / "nchw.npy")[::2])  # read as NHWC
    assert "pass --layout NCHW" in line, line
    line = one_error(*run_cli(capsys, *base, "--image", tmp_path / "nchw.npy", "--layout", "NCHW",
                              "--mean", "imagenet")[::2])
    assert "--mean/--std applies to pixel images" in line, line
    line = one_error(*run_cli(capsys, *base, "--index", "0")[::2])
    assert "ONNX model does not say which" in line and "--image" in line, line


def test_imagenet_preset_on_a_grey_model_is_refused(capsys, tmp_path):
    module, _ = build("lenet")
    path = export(module, tmp_path / "lenet.onnx", np.zeros((1, 1, 28, 28), np.float32), dynamo=False)
    img = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    conv = layers_of(path, "conv")[0]
    line = one_error(*run_cli(capsys, "explain", path, "--layer", conv, "--map", "0", "--at", "1,1", "--image", img,
                              "--mean", "imagenet")[::2])
    assert "is for RGB inputs" in line and "28×28×1" in line, line


def test_an_unsupported_op_is_one_line_naming_it(capsys, tmp_path):
    from featuremaps.onnx import supported_ops
    assert "Einsum" not in supported_ops()
    h, TP = onnx.helper, onnx.TensorProto
    g = h.make_graph([h.make_node("Relu", ["x"], ["r"], name="relu"),
                      h.make_node("Einsum", ["r"], ["y"], name="mix", equation="nchw->nchw")], "g",
                     [h.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4])],
                     [h.make_tensor_value_info("y", TP.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "einsum.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    for cmd in (("summary", path), ("convert", path, tmp_path / "out.npz")):
        line = one_error(*run_cli(capsys, *cmd)[::2])
        assert "Einsum" in line and "'mix'" in line, line
    assert not (tmp_path / "out.npz").exists()


def test_file_and_path_errors_are_one_line(files, capsys, tmp_path):
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model\n")
    line = one_error(*run_cli(capsys, "summary", notes)[::2])
    assert str(notes) in line and "'not a model" in line, line
    keras = tmp_path / "model.h5"
    keras.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    line = one_error(*run_cli(capsys, "explain", keras, "--layer", "c", "--map", "0", "--index", "0")[::2])
    assert "h5py cannot read it" in line, line
    line = one_error(*run_cli(capsys, "convert", files["tiny"], tmp_path / "out.pt")[::2])
    assert "OUT must name a .npz, .onnx, .keras or .safetensors file" in line, line
    npz = tmp_path / "ok.npz"
    ckpt.save_checkpoint(npz, fm.models.get("lenet"), epoch=0)
    line = one_error(*run_cli(capsys, "convert", npz, npz)[::2])
    assert "IN and OUT are the same file" in line, line
    line = one_error(*run_cli(capsys, "explain", npz, "--layer", "conv1", "--map", "0", "--index", "0",
                              "--input-shape", "32,32,1")[::2])
    assert "--input-shape is for ONNX files" in line and "28×28×1" in line, line
    line = one_error(*run_cli(capsys, "export", npz, tmp_path / "x.npz")[::2])
    assert "OUT must name an .onnx file" in line, line
    line = one_error(*run_cli(capsys, "export", npz, tmp_path / "x.onnx", "--opset", "5")[::2])
    assert "opset must be an int from 13" in line and "received 5" in line, line
    line = one_error(*run_cli(capsys, "show", "curves", files["tiny"], "--input-shape", "8,8,3", "-o",
                              tmp_path / "c.png")[::2])
    assert "takes no --input-shape" in line, line


def test_help_texts_name_the_new_options(capsys):
    for argv, needles in [(("explain",), ["--input-shape", "--mean", "--std", "--layout", "imagenet", "ONNX"]),
                          (("report",), ["--input-shape", "--mean", "--layout"]),
                          (("summary",), ["--input-shape", "ONNX"]),
                          (("show", "maps"), ["--input-shape", "--mean", "--layout"]),
                          (("convert",), ["IN.onnx", "OUT.npz", "--input-shape", "import log"]),
                          (("export",), ["RUN_OR_CHECKPOINT", "OUT.onnx", "--opset", "default: 17"])]:
        code, out, _ = run_cli(capsys, *argv, "--help")
        assert code == 0
        text = " ".join(out.split())
        for n in needles:
            assert n in text, (argv, n)
    code, out, _ = run_cli(capsys, "--help")
    assert "convert" in out and "export" in out
    code, out, _ = run_cli(capsys, "show", "kernels", "--help")
    assert "--mean" not in out and "--input-shape" in out  # kernels take no input image


def test_a_zoo_model_through_export_and_load_model_keeps_its_values(tmp_path, capsys):
    """export → fm.load_model(.onnx) gives the same outputs (and weights) as the checkpoint."""
    model = fm.models.get("lenet5", rng=np.random.default_rng(7)).eval()
    ckpt.save_checkpoint(tmp_path / "l5.npz", model, epoch=0)
    assert run_cli(capsys, "export", tmp_path / "l5.npz", tmp_path / "l5.onnx")[0] == 0
    back = fm.load_model(tmp_path / "l5.onnx")
    x = np.random.default_rng(8).random((2, 28, 28, 1), dtype=np.float32)
    close(forward(back, x), forward(model, x))
