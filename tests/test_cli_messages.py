"""What a user reads: every CLI message names the argument, what was expected and what was received,
in the CLI's own words (no `None`, no `build_report: select:`, no `[Errno 20]`, no Python call first);
`show`'s pictures each have their own help; default output paths are never overwritten silently;
`predict` hints at `--invert`, picks images of an IDX file and reports each bad file on its own.

Everything runs in-process through `featuremaps.cli.main([...])` on a lenet5 checkpoint saved here
(untrained weights: the messages do not depend on them)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from featuremaps import data, models, nn, train
from featuremaps.checkpoint import save_checkpoint
from tests.clirun import one_error, run_cli
from featuremaps.data.images import bright_border
from featuremaps.functional import conv2d, conv_transpose2d

NORM = {"mean": [0.1307], "std": [0.3081]}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("msg") / "run"
    save_checkpoint(d, models.get("lenet5", rng=0), epoch=1, meta={"dataset": "sample", "normalization": NORM})
    return d


@pytest.fixture(scope="module")
def val():
    return data.load("sample", "val", progress=False)


@pytest.fixture(scope="module")
def digit(run_dir, val):
    """A light-on-dark MNIST digit as an IDX file (readable without Pillow)."""
    return data.write_idx(run_dir.parent / "digit-idx3-ubyte", val.images[7:8, :, :, 0])


def explain(capsys, run_dir, digit, *argv):
    return run_cli(capsys, "explain", run_dir, "--image", digit, *argv)


# --- §4: messages that leak Python -----------------------------------------------------------------

def test_conv_layer_without_at_says_what_to_pass(run_dir, digit, capsys):
    line = one_error(*explain(capsys, run_dir, digit, "--layer", "C3", "--map", "0")[::2])
    assert "explain: layer 'C3' outputs 10×10 maps" in line
    assert "pass --at ROW,COL with row in [0, 9] and col in [0, 9]" in line
    assert "received" not in line


def test_dense_layer_with_at_says_to_omit_it(run_dir, digit, capsys):
    line = one_error(*explain(capsys, run_dir, digit, "--layer", "F6", "--map", "2", "--at", "1,1")[::2])
    assert "explain: layer 'F6' outputs a vector of 84 values, so it takes no --at; omit --at 1,1" in line
    assert "position must be" not in line


@pytest.mark.parametrize("at", ["-1,0", "0,-3", "10,0"])
def test_at_takes_negative_values_and_gives_the_range_error(run_dir, digit, capsys, at):
    code, _, err = explain(capsys, run_dir, digit, "--layer", "C3", "--map", "0", "--at", at)
    line = one_error(code, err)
    assert "expected one argument" not in line
    assert f"explain: --at {at} is outside the 10×10 maps of layer 'C3': row must be in [0, 9] and col must be " \
           "in [0, 9]" in line


def test_map_out_of_range_names_the_flag(run_dir, digit, capsys):
    line = one_error(*explain(capsys, run_dir, digit, "--layer", "C3", "--map", "16", "--at", "0,0")[::2])
    assert "explain: --map must be in [0, 15] (layer 'C3' has 16 output maps); received 16" in line
    assert "out_map" not in line


def test_report_selection_errors_have_no_library_prefix(run_dir, tmp_path, capsys):
    base = ["report", run_dir, "--split", "val", "-o", tmp_path / "r.html"]
    line = one_error(*run_cli(capsys, *base, "--layer", "nope")[::2])
    assert "report: no layer named 'nope'; valid names: pad, C1," in line and "build_report" not in line
    line = one_error(*run_cli(capsys, *base, "--layer", "C3", "--map", "3", "--position", "-1,2")[::2])
    assert "report: --position -1,2 is outside the 10×10 maps of layer 'C3'" in line and "select" not in line
    line = one_error(*run_cli(capsys, *base, "--layer", "F6", "--map", "3", "--position", "0,0")[::2])
    assert "report: layer 'F6' outputs a vector of 84 values, so it takes no --position; omit --position 0,0" in line
    assert not (tmp_path / "r.html").exists()


def test_interrupt_message_gives_the_command_line_first(tmp_path):
    class Stop:
        def on_epoch_end(self, epoch, record):
            raise KeyboardInterrupt

    from featuremaps import optim
    ds = data.load("sample", "train", progress=False).subset(np.arange(32))
    model = models.get("lenet5", rng=0)
    with pytest.raises(train.TrainingInterrupted) as e:
        train.fit(model, ds, epochs=3, batch_size=16, optimizer=optim.get("sgd", model.parameters(), 0.01),
                  out_dir=tmp_path / "r", callbacks=[Stop()], plot=False)
    msg = e.value.message
    cli_form = f"continue with: featuremaps train --resume {tmp_path / 'r'}"
    assert cli_form in msg
    assert "resume=" not in msg or msg.index(cli_form) < msg.index("resume=")


def test_out_that_is_a_file_is_named_not_errno(run_dir, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    fast = ["--limit", "16", "--batch-size", "16", "--epochs", "1", "--no-plot"]
    line = one_error(*run_cli(capsys, "train", "lenet5", "--out", f, *fast)[::2])
    assert f"--out {f} is a file; --out names a run directory" in line and "Errno" not in line
    line = one_error(*run_cli(capsys, "train", "lenet5", "--out", f / "run", *fast)[::2])
    assert f"--out {f / 'run'}: {f} is a file, not a directory" in line and "Errno" not in line
    line = one_error(*run_cli(capsys, "report", run_dir, "--split", "val", "-o", f / "r.html")[::2])
    assert f"-o {f / 'r.html'}: {f} is a file, not a directory" in line
    line = one_error(*run_cli(capsys, "show", "kernels", run_dir, "-o", f / "k.png")[::2])
    assert f"-o {f / 'k.png'}: {f} is a file, not a directory" in line


def test_lr_zero_and_negative_get_the_same_message(capsys):
    values = ("0", "-1", "-0.5")
    lines = [one_error(*run_cli(capsys, "train", "--lr", v)[::2]) for v in values]
    assert len({ln.replace(f"'{v}'", "'V'") for ln, v in zip(lines, values)}) == 1  # one message, but the value
    assert all("argument --lr: expected a number > 0; received" in ln for ln in lines)
    assert "argument --lr: expected a finite number > 0; received 'nan'" in one_error(
        *run_cli(capsys, "train", "--lr", "nan")[::2])
    assert "argument --momentum: expected a number >= 0; received '-1'" in one_error(
        *run_cli(capsys, "train", "--momentum", "-1")[::2])



def test_nesterov_needs_sgd_with_momentum(tmp_path, capsys):
    base = ("train", "lenet5", "--limit", "16", "--epochs", "1", "--no-plot")
    line = one_error(*run_cli(capsys, *base, "--momentum", "0", "--nesterov", "--out", tmp_path / "a")[::2])
    assert line == "featuremaps: error: --nesterov needs --momentum > 0; received --momentum 0"
    line = one_error(*run_cli(capsys, *base, "--optimizer", "adam", "--nesterov", "--out", tmp_path / "b")[::2])
    assert line == "featuremaps: error: --nesterov is an option of --optimizer sgd; received --optimizer adam"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any run directory

def test_batch_size_larger_than_the_training_set_warns(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "lenet5", "--limit", "16", "--batch-size", "64", "--epochs", "1",
                           "--no-plot", "--out", tmp_path / "r")
    assert code == 0, err
    assert "warning: --batch-size 64 is larger than the 16 training images; each epoch is one batch of 16" in err
    code, _, err = run_cli(capsys, "train", "lenet5", "--limit", "16", "--batch-size", "16", "--epochs", "1",
                           "--no-plot", "--out", tmp_path / "r2")
    assert code == 0 and "--batch-size" not in err


def test_nchw_input_gets_a_layout_hint():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 5, 1, 6)).astype(np.float32)
    with pytest.raises(ValueError) as e:
        conv2d(np.zeros((2, 1, 28, 28), np.float32), w)
    assert "conv2d: input has 28 channels but the weight expects 1" in str(e.value)
    assert "the input (2, 1, 28, 28) looks like NCHW (N, C, H, W), but featuremaps expects NHWC (N, H, W, C): " \
           "pass x.transpose(0, 2, 3, 1)" in str(e.value)
    with pytest.raises(ValueError) as e:  # a plain channel mismatch: no layout hint
        conv2d(np.zeros((2, 28, 28, 3), np.float32), w)
    assert "input has 3 channels" in str(e.value) and "NCHW" not in str(e.value)
    wt = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)  # (KH, KW, C_out, C_in)
    with pytest.raises(ValueError, match=r"looks like NCHW .* pass x\.transpose\(0, 2, 3, 1\)"):
        conv_transpose2d(np.zeros((1, 4, 7, 7), np.float32), wt)
    with pytest.raises(ValueError, match=r"looks like NCHW"):  # through a layer, as a user meets it
        nn.Conv2D(3, 8, 3, rng=np.random.default_rng(0))(np.zeros((2, 3, 32, 32), np.float32))


def _json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


def test_explain_and_evaluate_name_the_dataset_alike_offline(run_dir, capsys, no_cache):
    """Without the official test set both read the embedded sample's val split, and both call it so."""
    e = _json(capsys, "explain", run_dir, "--layer", "F6", "--map", "0", "--index", "0", "--json")["input"]
    v = _json(capsys, "evaluate", run_dir, "--split", "val", "--json")
    assert (e["dataset"], e["split"]) == (v["dataset"], v["split"]) == ("sample", "val")


def test_explain_and_evaluate_name_the_official_test_set_alike(run_dir, capsys, shared_mnist):
    e = _json(capsys, "explain", run_dir, "--layer", "F6", "--map", "0", "--index", "0", "--data", shared_mnist,
              "--json")["input"]
    v = _json(capsys, "evaluate", run_dir, "--data", shared_mnist, "--json", "--limit", "50")
    assert (e["dataset"], e["split"]) == (v["dataset"], v["split"]) == ("mnist", "test")
    assert v["trained_on"] == "sample"


# --- §6: show's own help per picture; default paths are not overwritten -----------------------------

@pytest.mark.parametrize("what, has, lacks", [
    ("kernels", ["--layer NAME", "--normalize"], ["--image", "--index", "--at", "--max-maps"]),
    ("maps", ["--image FILE", "--index N", "--max-maps"], ["--layer", "--normalize", "--at"]),
    ("connections", ["--layer NAME"], ["--image", "--normalize", "--at"]),
    ("receptive", ["--layer NAME", "--image FILE", "--at ROW,COL"], ["--normalize", "--max-maps"]),
    ("curves", ["RUN_DIR"], ["--layer", "--image", "--at", "--normalize"]),
])
def test_each_show_picture_has_its_own_help(capsys, what, has, lacks):
    code, out, _ = run_cli(capsys, "show", what, "--help")
    assert code == 0 and out.startswith(f"usage: featuremaps show {what} ")
    for flag in has + ["-o OUT.png"]:
        assert flag in out, (what, flag)
    for flag in lacks:
        assert flag not in out, (what, flag)
    code, out, _ = run_cli(capsys, "show", "--help")
    assert code == 0 and all(w in out for w in ("kernels", "maps", "connections", "receptive", "curves"))


def test_show_options_of_another_picture_get_a_reason(run_dir, tmp_path, capsys):
    png = tmp_path / "x.png"
    assert "show maps takes no --normalize" in one_error(
        *run_cli(capsys, "show", "maps", run_dir, "--index", "0", "--normalize", "global", "-o", png)[::2])
    assert "show kernels draws the weights only; it takes no --image/--index" in one_error(
        *run_cli(capsys, "show", "kernels", run_dir, "--index", "0", "-o", png)[::2])
    assert "show receptive: --at 20,1 is outside the 10×10 maps of layer 'C3'" in one_error(
        *run_cli(capsys, "show", "receptive", run_dir, "--index", "0", "--layer", "C3", "--at", "20,1", "-o", png)[::2])
    assert not png.exists()


def test_report_refuses_to_overwrite_its_default_file(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["report", run_dir, "--split", "val"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    page = tmp_path / "report.html"
    page.write_text("keep me")
    line = one_error(*run_cli(capsys, *argv)[::2])
    assert "report.html already exists; pass -o FILE to write elsewhere, or --force to overwrite it" in line
    assert page.read_text() == "keep me"
    code, _, err = run_cli(capsys, *argv, "--force")
    assert code == 0, err
    assert page.read_text() != "keep me"
    page.write_text("named")  # a path the user names with -o is theirs to replace
    assert run_cli(capsys, *argv, "-o", page)[0] == 0 and page.read_text() != "named"


# --- §7: predict ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pngs(run_dir, val):
    from PIL import Image
    d = run_dir.parent
    Image.fromarray(val.images[7, :, :, 0]).save(d / "light_on_dark.png")
    Image.fromarray(255 - val.images[7, :, :, 0]).save(d / "dark_on_light.png")
    return d / "light_on_dark.png", d / "dark_on_light.png"


def test_bright_border_matches_a_loop():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)
    images[:10] = 255
    images[10:20] = 0
    for img, got in zip(images, bright_border(images)):
        grey = img.astype(np.float64).mean(axis=-1)
        ring = [grey[i, j] for i in range(6) for j in range(5) if i in (0, 5) or j in (0, 4)]
        assert got == (sum(v >= 128 for v in ring) > len(ring) / 2)
    assert bright_border(images[:10]).all() and not bright_border(images[10:20]).any()


def test_predict_hints_at_invert_for_a_dark_on_light_drawing(run_dir, pngs, capsys):
    light_on_dark, dark_on_light = pngs
    code, out, err = run_cli(capsys, "predict", run_dir, dark_on_light)
    assert code == 0 and out.startswith(f"{dark_on_light}: ")
    assert f"note: {dark_on_light}: the border is mostly bright, but the model was trained on light digits on a " \
           "dark background (sample); if this is a dark drawing on a light background, pass --invert" in err
    code, _, err = run_cli(capsys, "predict", run_dir, dark_on_light, "--invert")
    assert code == 0 and "note" not in err
    code, _, err = run_cli(capsys, "predict", run_dir, light_on_dark)
    assert code == 0 and "note" not in err
    code, _, err = run_cli(capsys, "predict", run_dir, light_on_dark, "--invert")
    assert code == 0 and "after --invert the border is mostly bright" in err and "drop --invert" in err


def test_predict_limit_and_index_on_an_idx_file(run_dir, val, tmp_path, capsys):
    idx = data.write_idx(tmp_path / "many-idx3-ubyte", val.images[:120, :, :, 0])
    code, out, err = run_cli(capsys, "predict", run_dir, idx)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 120
    assert f"note: {idx} holds 120 images; --limit N or --index N predicts fewer" in err
    full = _json(capsys, "predict", run_dir, idx, "--top", "10", "--json")["predictions"]
    code, out, err = run_cli(capsys, "predict", run_dir, idx, "--limit", "3")
    assert code == 0 and [ln.split(": ")[0] for ln in out.splitlines()] == [f"{idx}[{i}]" for i in range(3)]
    assert "note" not in err
    for argv, want in ((["--limit", "3"], full[:3]), (["--index", "57"], full[57:58])):
        got = _json(capsys, "predict", run_dir, idx, "--top", "10", "--json", *argv)["predictions"]
        assert [p["input"] for p in got] == [p["input"] for p in want]
        for g, w in zip(got, want):  # a batch of 1 or 3 against one of 120: BLAS may round differently, so
            # the probabilities (from float32 logits, each ≤ 1) agree to 1e-5, about 100 float32 ulps of 1
            np.testing.assert_allclose(_probabilities(g), _probabilities(w), rtol=0, atol=1e-5)

    line = one_error(*run_cli(capsys, "predict", run_dir, idx, "--index", "120")[::2])
    assert f"--index 120 is outside {idx}, which holds 120 images (indices 0 to 119)" in line
    line = one_error(*run_cli(capsys, "predict", run_dir, idx, "--index", "1", "--limit", "2")[::2])
    assert "argument --limit: not allowed with argument --index" in line
    assert "expected an integer >= 0; received '-1'" in one_error(
        *run_cli(capsys, "predict", run_dir, idx, "--index", "-1")[::2])


def _probabilities(pred: dict) -> list[float]:
    """One prediction's class probabilities in label order (from `--top 10 --json`)."""
    return [t["probability"] for t in sorted(pred["top"], key=lambda t: t["label"])]


def test_predict_reports_each_bad_file_and_goes_on(run_dir, pngs, tmp_path, capsys):
    from PIL import Image
    good, other = pngs
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(big)
    missing = tmp_path / "missing.png"
    code, out, err = run_cli(capsys, "predict", run_dir, good, missing, big, other)
    assert code == 2
    assert [ln.split(":")[0] for ln in out.splitlines()] == [str(good), str(other)]
    errors = [ln for ln in err.splitlines() if ln.startswith("featuremaps: error: ")]
    assert errors == [f"featuremaps: error: {missing}: no such file",
                      f"featuremaps: error: {big}: the image is 30×32 pixels (width×height) but the model expects "
                      "28×28; resize it first (it is not resized silently)"]
    code, out, _ = run_cli(capsys, "predict", run_dir, good, missing, "--json")
    doc = json.loads(out)
    assert code == 2 and [p["input"] for p in doc["predictions"]] == [str(good)]
    assert doc["errors"] == [{"input": str(missing), "error": f"{missing}: no such file"}]


def test_readme_states_what_was_measured():
    first = (REPO / "README.md").read_text(encoding="utf-8").split("<!-- main-command -->")[0]
    assert "about 30 s" not in first
    # measured figures (re-measured when the command changes), not a vague estimate
    assert re.search(r"measured \d+ s for this line including the install, and \d+ s for `featuremaps train` run"
                     r" again,\s+\d{4}-\d\d-\d\d\)", first), first
