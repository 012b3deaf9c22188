"""The command line, in-process through `main([...])` and as a real `python -m featuremaps` process:
JSON outputs parse, errors are one line with exit code 2 and no traceback, resume, predict on
PNG/IDX files written here, Ctrl-C (a real SIGINT) saves and exits with 130."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps import Tensor, checkpoint as ckpt, cli, data, models, train
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
FAST = ["--limit", "64", "--batch-size", "32", "--no-plot"]


def assert_one_line_error(code, out, err, *needles):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("featuremaps: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A lenet5 run of one epoch on 64 images (shared by the evaluate/predict tests)."""
    out = tmp_path_factory.mktemp("runs") / "lenet5"
    assert cli.main(["train", "lenet5", "--epochs", "1", "--out", str(out), *FAST]) == 0
    return out


def test_models_lists_names(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    names = [m["name"] for m in json.loads(out)["models"]]
    assert names[:3] == ["lenet5", "lenet", "cnn"]
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and out.splitlines()[0].startswith("lenet5 ")


def test_train_json_and_run_dir(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "lenet5", "--epochs", "2", "--out", out_dir, "--json",
                             "--optimizer", "adam", "--schedule", "cosine", "--augment", *FAST)
    assert code == 0, err
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert doc["run_dir"] == str(out_dir) and doc["model"] == "lenet5" and doc["dataset"] == "sample"
    assert len(doc["history"]) == 2 and 0 <= doc["accuracy"] <= 1
    assert doc["validation"]["n"] == 64 and doc["accuracy_split"] == "validation"
    assert [r["lr"] for r in doc["history"]] == pytest.approx([1e-3, 0.0005])
    assert "initial loss" in err and "epoch 2/2" in err  # progress goes to stderr
    meta = ckpt.read_checkpoint(out_dir)[0]
    assert meta["cli"]["optimizer"] == "adam" and meta["cli"]["augment"] is True
    assert meta["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert meta["optimizer"]["name"] == "adam" and meta["schedule"]["name"] == "cosine"
    assert {"checkpoint.npz", "metrics.csv", "metrics.json", "config.json"} <= {p.name for p in out_dir.iterdir()}


def test_train_resume_continues_and_refuses_changed_settings(tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "lenet5", "--epochs", "1", "--out", out_dir, *FAST)[0] == 0
    code, out, err = run_cli(capsys, "train", "--resume", out_dir, "--epochs", "2", "--json", "--no-plot")
    assert code == 0, err
    assert "resuming from" in err and len(json.loads(out)["history"]) == 2
    assert ckpt.read_checkpoint(out_dir)[0]["epoch"] == 2
    assert_one_line_error(*run_cli(capsys, "train", "--resume", out_dir, "--epochs", "3", "--lr", "0.5"),
                          "--lr 0.5", "stored settings")
    assert_one_line_error(*run_cli(capsys, "train", "lenet5", "--out", out_dir, *FAST), "already exists")


def test_train_and_data_errors(tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, "train", "resnet"), "unknown model 'resnet'", "lenet5, lenet, cnn")
    assert_one_line_error(*run_cli(capsys, "train", "--dataset", "imagenet"), "unknown dataset", "mnist")
    assert_one_line_error(*run_cli(capsys, "train", "--optimizer", "rmsprop"), "valid names: sgd, adam, adamw")
    assert_one_line_error(*run_cli(capsys, "train", "--schedule", "warm"), "valid names: none, step")
    assert_one_line_error(*run_cli(capsys, "train", "--epochs", "0"), "positive integer")
    assert_one_line_error(*run_cli(capsys, "train", "--lr", "abc"), "expected a number")
    assert_one_line_error(*run_cli(capsys, "train", "--lr", "0"), "expected a number > 0")
    assert_one_line_error(*run_cli(capsys, "train", "vgg-small", "--out", tmp_path / "v", *FAST),
                          "expects 32×32×3 images but sample has 28×28×1")
    assert_one_line_error(*run_cli(capsys, "train", "--dataset", "mnist", "--data", tmp_path / "missing",
                                   "--out", tmp_path / "m"), "missing")
    assert_one_line_error(*run_cli(capsys, "train", "--resume", tmp_path / "nowhere"), "does not exist")
    assert not (tmp_path / "v").exists()


def test_non_finite_loss_exit_code(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise train.NonFiniteLossError(3, 17, 70, float("nan"), tmp_path / "checkpoint.npz", 2)

    monkeypatch.setattr(train, "fit", boom)
    code, out, err = run_cli(capsys, "train", "lenet5", "--out", tmp_path / "r", *FAST)
    assert code == 1
    assert "featuremaps: error: the training loss became nan at epoch 3, step 17 of 70" in err
    assert "Traceback" not in err


def test_evaluate(run_dir, capsys, tmp_path):
    code, out, err = run_cli(capsys, "evaluate", run_dir, "--split", "val", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["n"] == 500 and 0 <= doc["accuracy"] <= 1 and doc["split"] == "val"
    conf = np.array(doc["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 500
    assert doc["accuracy"] == pytest.approx(np.trace(conf) / 500)
    # the same figure as the library computes with the stored normalisation
    model, meta, _ = ckpt.load_checkpoint(run_dir)
    val = data.load("sample", "val")
    ref = train.evaluate(model, val, normalization=meta["normalization"])
    assert doc["accuracy"] == ref["accuracy"] and doc["loss"] == pytest.approx(ref["loss"])
    # rows: true class, columns: predicted (counted here from the logits of the same batches of 256)
    pred = train.predict_logits(model, val.images, batch_size=256, normalization=meta["normalization"]).argmax(1)
    np.testing.assert_array_equal(conf, np.bincount(val.labels * 10 + pred, minlength=100).reshape(10, 10))
    assert doc["per_class_accuracy"] == [float(np.mean(pred[val.labels == k] == k)) for k in range(10)]
    code, out, _ = run_cli(capsys, "evaluate", run_dir / "checkpoint.npz", "--split", "val")
    assert code == 0 and "accuracy" in out
    lines = out.splitlines()
    head = lines.index("confusion matrix (rows: true class, columns: predicted)")
    assert lines[head + 1].split() == [str(k) for k in range(10)] + ["recall"]
    for k, line in enumerate(lines[head + 2:head + 12]):  # "<class>  <10 counts>   <recall>%"
        cells = line.split()
        assert cells[0] == str(k) and [int(v) for v in cells[1:11]] == conf[k].tolist(), line
        assert float(cells[11].rstrip("%")) == pytest.approx(100 * doc["per_class_accuracy"][k], abs=0.05)


@pytest.mark.shared_mnist
def test_evaluate_official_test_split(run_dir, capsys):
    code, out, err = run_cli(capsys, "evaluate", run_dir, "--json", "--limit", "300")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["split"] == "test" and doc["n"] == 300


def test_evaluate_errors(run_dir, tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, "evaluate", tmp_path / "none.npz"), "does not exist")
    bad = tmp_path / "bad.npz"
    bad.write_bytes((run_dir / "checkpoint.npz").read_bytes()[:500])
    assert_one_line_error(*run_cli(capsys, "evaluate", bad), "truncated or corrupt")
    assert_one_line_error(*run_cli(capsys, "evaluate", run_dir, "--split", "dev"), "split")
    big = tmp_path / "big"  # an MNIST-named test set of 32×32 images
    big.mkdir()
    data.write_idx(big / "t10k-images-idx3-ubyte", np.zeros((4, 32, 32), np.uint8))
    data.write_idx(big / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    assert_one_line_error(*run_cli(capsys, "evaluate", run_dir, "--dataset", "mnist", "--data", big),
                          "expects 28×28×1 images but mnist has 32×32×1")


def test_predict_png_and_idx(run_dir, tmp_path, capsys):
    val = data.load("sample", "val")
    png = tmp_path / "digit.png"
    Image.fromarray(val.images[7, :, :, 0]).save(png)
    rgb = tmp_path / "digit_rgb.png"
    Image.fromarray(val.images[7, :, :, 0]).convert("RGB").save(rgb)
    idx = tmp_path / "few-images-idx3-ubyte"
    data.write_idx(idx, val.images[:3, :, :, 0])
    code, out, err = run_cli(capsys, "predict", run_dir, png, rgb, idx, "--top", "2", "--json")
    assert code == 0, err
    preds = json.loads(out)["predictions"]
    assert [p["input"] for p in preds] == [str(png), str(rgb)] + [f"{idx}[{i}]" for i in range(3)]
    model, meta, _ = ckpt.load_checkpoint(run_dir)
    logits = train.predict_logits(model, val.images[[7, 7, 0, 1, 2]], normalization=meta["normalization"])
    assert [p["label"] for p in preds] == logits.argmax(1).tolist()
    for p in preds:
        assert len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"]
        assert p["class"] == str(p["label"]) and 0 < p["probability"] <= 1
    code, out, _ = run_cli(capsys, "predict", run_dir, png)
    assert code == 0 and out.startswith(f"{png}: ")
    raw = tmp_path / "digit.raw"  # an IDX file recognised by its header, not its name
    data.write_idx(raw, val.images[7:8, :, :, 0])
    code, out, _ = run_cli(capsys, "predict", run_dir, raw, "--json")
    assert code == 0 and json.loads(out)["predictions"][0]["label"] == preds[0]["label"]


def test_predict_errors(run_dir, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(big)
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, big), "30×32", "expects 28×28",
                          "not resized silently")
    rgb_idx = tmp_path / "rgb-idx3-ubyte"
    data.write_idx(rgb_idx, np.zeros((2, 28, 28, 3), np.uint8))
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, rgb_idx), "3 channels", "expects 1")
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, tmp_path / "nope.png"), "no such file")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, text), "not a readable image")
    f_idx = tmp_path / "float-idx3-ubyte"
    data.write_idx(f_idx, np.zeros((1, 28, 28), np.float32))
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, f_idx), "uint8")


def test_predict_without_pillow_names_the_extra(run_dir, tmp_path, capsys, monkeypatch):
    png = tmp_path / "d.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    assert_one_line_error(*run_cli(capsys, "predict", run_dir, png), "pip install 'featuremaps[plot]'")


def test_summary(run_dir, capsys):
    code, out, _ = run_cli(capsys, "summary", "lenet", "--json")
    assert code == 0
    doc = json.loads(out)  # exactly one document: the table of 'lenet', checked against a real forward pass
    model = models.get("lenet")
    assert set(doc) >= {"input_shape", "output_shape", "rows", "totals"} and doc.get("error") is None
    assert doc["input_shape"] == [28, 28, 1] and doc["output_shape"] == [10]
    assert [r["name"] for r in doc["rows"]] == model.names()
    h = np.zeros((1, 28, 28, 1), np.float32)
    for row, (name, layer) in zip(doc["rows"], model.named_children()):
        assert row["type"] == type(layer).__name__ and row["input_shape"] == list(h.shape[1:]), name
        out = layer(h)
        h = np.asarray(out.data if isinstance(out, Tensor) else out)
        assert row["output_shape"] == list(h.shape[1:]), name
        assert row["params"] == sum(p.data.size for p in layer.parameters()), name
        if row["type"] == "Conv2D":  # one multiply-add per output value and kernel tap
            kh, kw, cin, _ = layer.weight.shape
            assert row["macs"] == h[0].size * kh * kw * cin and row["kernel"] == list(layer.weight.shape), name
        elif row["type"] == "Dense":
            assert row["macs"] == layer.weight.size, name
    assert doc["totals"]["params"] == model.num_parameters() == 431080
    assert doc["totals"]["macs"] == sum(r["macs"] or 0 for r in doc["rows"]) == 2_293_000
    code, out, _ = run_cli(capsys, "summary", run_dir)
    assert code == 0 and "C3" in out
    assert_one_line_error(*run_cli(capsys, "summary", "alexnet"), "neither a model name")
    code, out, err = run_cli(capsys, "summary", "lenet", "--input-shape", "8,8,1")
    assert code == 2 and "featuremaps: error:" in err and "Traceback" not in err
    assert_one_line_error(*run_cli(capsys, "summary", "lenet", "--input-shape", "a,b"), "H,W,C")


def test_help_and_no_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and all(c in out for c in ("train", "evaluate", "predict", "summary", "models"))
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "--resume RUN_DIR" in out and "--limit" not in out
    code, _, err = run_cli(capsys)
    assert code == 2 and "usage" in err


def _env():
    # FEATUREMAPS_DATA passes through: the child uses the tests' private cache (conftest.py), not ~/.cache
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_real_process_train_one_epoch(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "featuremaps", "train", "lenet5", "--epochs", "1", "--limit", "64",
                           "--out", str(tmp_path / "run")], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "validation accuracy" in proc.stdout and f"run saved to {tmp_path / 'run'}" in proc.stdout
    assert "initial loss" in proc.stderr and "epoch 1/1" in proc.stderr
    assert (tmp_path / "run" / "curves.png").exists()
    bad = subprocess.run([sys.executable, "-m", "featuremaps", "evaluate", str(tmp_path / "missing")],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("featuremaps: error:") and len(bad.stderr.strip().splitlines()) == 1


def _default_sigint():
    """In the child: SIGINT back to its default. A shell without job control starts background
    jobs (e.g. `pytest &`) with SIGINT ignored, their children inherit that, and Python then installs
    no KeyboardInterrupt handler, so the signal this test sends would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_real_sigint_saves_and_exits_130_then_resumes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "featuremaps", "train", "lenet5", "--epochs", "500",
                             "--limit", "64", "--batch-size", "16", "--no-plot", "--out", str(out)],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    lines = []
    try:
        for line in proc.stderr:  # stderr is not a terminal: one line per epoch
            lines.append(line)
            if line.startswith("epoch 1/500"):
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted: saved the state after epoch" in rest and "Traceback" not in rest
    meta = ckpt.read_checkpoint(out)[0]
    assert meta["epoch"] >= 1
    done = meta["epoch"]
    code = cli.main(["train", "--resume", str(out), "--epochs", str(done + 1), "--no-plot"])
    assert code == 0
    assert ckpt.read_checkpoint(out)[0]["epoch"] == done + 1


@pytest.mark.parametrize("extra,decay", [([], 0.01), (["--weight-decay", "0"], 0.0)])
def test_adamw_weight_decay_option(tmp_path, capsys, extra, decay):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "lenet5", "--optimizer", "adamw", "--epochs", "1", "--out", out,
                           *extra, *FAST)
    assert code == 0, err
    assert ckpt.read_checkpoint(out)[0]["optimizer"]["weight_decay"] == decay
