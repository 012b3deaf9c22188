"""Each command-line option does what its help says, checked through `featuremaps.cli.main([...])`
against an independent oracle: the SGD options against `torch.optim.SGD` replaying the run's own
gradients, --seed against the model zoo's seeded initialisation, --val-fraction against the
stratified split sizes, --invert against the inverted image, --windows and --format against
windows, kernels and dot products computed here, --title, --max-maps, --traceback and --version
against what they promise."""
import html
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featuremaps
from featuremaps import checkpoint as ckpt, cli, data, models, optim, train
from featuremaps.inspect import activations
from featuremaps.pictures import feature_maps
from tests.clirun import one_error, run_cli

REPO = Path(__file__).resolve().parents[1]
NORM = {"mean": [0.1307], "std": [0.3081]}
EPS32 = 2.0 ** -24  # unit roundoff of float32
TINY = ["--epochs", "1", "--batch-size", "32", "--schedule", "none", "--no-plot"]


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A lenet5 checkpoint with seeded random weights and the MNIST normalisation, plus a light-on-dark
    digit PNG (asymmetric, so inverting it changes every layer) and its inverted copy."""
    d = tmp_path_factory.mktemp("options") / "run"
    ckpt.save_checkpoint(d, models.get("lenet5", rng=0), epoch=1, meta={"dataset": "sample", "normalization": NORM})
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    digit[6:9, 8:20] = 180
    digit[20:23, 14:21] = 90
    Image.fromarray(digit).save(d / "digit.png")
    Image.fromarray(255 - digit).save(d / "inverted.png")
    return d, digit


def prepared(image_u8):
    """The model input for a (28, 28) uint8 image, by the documented formula, in float64."""
    return ((image_u8.astype(np.float64) / 255 - NORM["mean"][0]) / NORM["std"][0])[:, :, None]  # (28, 28, 1)


# --- --momentum, --nesterov ----------------------------------------------------------------------

class StepRecorder:
    """Wraps `optim.SGD.step`: keeps the weights before the first step and every step's gradients."""

    def __init__(self, monkeypatch):
        self.initial, self.grads = None, []
        original = optim.SGD.step

        def step(opt):
            if self.initial is None:
                self.initial = [p.data.copy() for p in opt.params]
            self.grads.append([np.array(p.grad, copy=True) for p in opt.params])
            return original(opt)

        monkeypatch.setattr(optim.SGD, "step", step)


def torch_replay(initial, grads, *, lr, momentum, nesterov):
    """The weights torch.optim.SGD reaches from `initial` with the recorded gradients (float32)."""
    ps = [torch.tensor(a, requires_grad=True) for a in initial]
    opt = torch.optim.SGD(ps, lr=lr, momentum=momentum, nesterov=nesterov)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in ps]


def train_recorded(tmp_path, capsys, monkeypatch, *options, limit=64):
    rec = StepRecorder(monkeypatch)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "lenet5", "--out", out, "--limit", limit, *TINY, *options)
    assert code == 0, err
    model, meta, _ = ckpt.load_checkpoint(out)
    return rec, [p.data for p in model.parameters()], meta, out


@pytest.mark.parametrize("options, momentum, nesterov", [
    ([], 0.9, False),  # the default
    (["--momentum", "0.5"], 0.5, False),
    (["--momentum", "0.5", "--nesterov"], 0.5, True),
    (["--momentum", "0"], 0.0, False),
])
def test_sgd_options_give_torch_sgd_updates(tmp_path, capsys, monkeypatch, options, momentum, nesterov):
    rec, final, meta, _ = train_recorded(tmp_path, capsys, monkeypatch, *options)
    assert meta["optimizer"] == {"name": "sgd", "lr": 0.05, "momentum": momentum, "nesterov": nesterov,
                                 "weight_decay": 0.0}
    assert (meta["cli"]["momentum"], meta["cli"]["nesterov"]) == (momentum, nesterov)
    steps = len(rec.grads)
    assert steps == 2  # 64 images, batch 32: momentum and Nesterov differ from the second step on too
    ref = torch_replay(rec.initial, rec.grads, lr=0.05, momentum=momentum, nesterov=nesterov)
    # Replaying fixed gradients: each step rounds a few float32 operations on values no larger than
    # the weights, so the two agree to a few ulps of the weights per step.
    tols = [4 * steps * EPS32 * float(np.abs(r).max()) for r in ref]
    for ours, theirs, tol in zip(final, ref, tols):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol)
    # ... and the other rule is far outside that: Nesterov against plain momentum, or momentum 0
    # against the default 0.9.
    other = (dict(momentum=momentum, nesterov=not nesterov) if momentum else dict(momentum=0.9, nesterov=False))
    wrong = torch_replay(rec.initial, rec.grads, lr=0.05, **other)
    assert max(float(np.abs(o - w).max()) / t for o, w, t in zip(final, wrong, tols)) > 100


def test_nesterov_without_momentum_is_refused(tmp_path, capsys):
    line = one_error(*run_cli(capsys, "train", "lenet5", "--out", tmp_path / "r", "--limit", 32, *TINY,
                                   "--momentum", "0", "--nesterov")[::2])
    assert "nesterov" in line.lower() and "momentum" in line
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


# --- --seed --------------------------------------------------------------------------------------

def test_seed_sets_initial_weights_and_reproduces_the_run(tmp_path, capsys, monkeypatch):
    runs = {}
    for key, seed in (("a", 5), ("b", 5), ("c", 6)):
        rec, final, meta, out = train_recorded(tmp_path / key, capsys, monkeypatch, "--seed", seed, limit=32)
        assert meta["cli"]["seed"] == seed
        assert json.loads((out / "config.json").read_text())["run"]["seed"] == seed
        # the initial weights are the zoo's lenet5 for np.random.default_rng(seed)
        zoo = models.get("lenet5", rng=np.random.default_rng(seed)).parameters()
        for p0, z in zip(rec.initial, zoo):
            np.testing.assert_array_equal(p0, z.data)
        runs[key] = final
    for a, b in zip(runs["a"], runs["b"]):  # the same run twice on one machine: bit for bit
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, c) for a, c in zip(runs["a"], runs["c"]))


# --- --val-fraction ------------------------------------------------------------------------------

@pytest.fixture
def tiny_mnist(tmp_path):
    """A 100-image MNIST training set (10 per class) and an 8-image test set, as IDX files."""
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    data.write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (100, 28, 28), dtype=np.uint8))
    data.write_idx(d / "train-labels-idx1-ubyte", np.repeat(np.arange(10, dtype=np.uint8), 10))
    data.write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (8, 28, 28), dtype=np.uint8))
    data.write_idx(d / "t10k-labels-idx1-ubyte", np.arange(8, dtype=np.uint8))
    return d


@pytest.mark.parametrize("options, n_val", [([], 10), (["--val-fraction", "0.3"], 30),
                                            (["--val-fraction", "0.55"], 60)])
def test_val_fraction_sets_the_split_sizes(tmp_path, capsys, tiny_mnist, options, n_val):
    # stratified: each of the 10 classes (10 images each) gives floor(fraction * 10 + 0.5) to val
    code, out, err = run_cli(capsys, "train", "lenet5", "--dataset", "mnist", "--data", tiny_mnist,
                             "--out", tmp_path / "run", "--json", *TINY, *options)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["validation"]["n"] == n_val and doc["test"]["n"] == 8
    assert f"{100 - n_val:,} training / {n_val:,} validation images" in err
    stored = 0.1 if not options else float(options[1])
    assert ckpt.read_checkpoint(tmp_path / "run")[0]["cli"]["val_fraction"] == stored


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_val_fraction_out_of_range_is_one_line(tmp_path, capsys, tiny_mnist, value):
    line = one_error(*run_cli(capsys, "train", "lenet5", "--dataset", "mnist", "--data", tiny_mnist,
                                   "--out", tmp_path / "run", *TINY, "--val-fraction", value)[::2])
    assert "--val-fraction" in line and value in line
    assert not (tmp_path / "run").exists()


# --- --invert ------------------------------------------------------------------------------------

def softmax64(logits):
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_predict_invert_classifies_the_inverted_image(ck, capsys):
    d, digit = ck

    def probabilities(*argv):
        code, out, err = run_cli(capsys, "predict", d, *argv, "--top", "10", "--json")
        assert code == 0, err
        top = json.loads(out)["predictions"][0]["top"]
        return np.array([t["probability"] for t in sorted(top, key=lambda t: t["label"])])

    inverted = probabilities(d / "digit.png", "--invert")
    plain = probabilities(d / "digit.png")
    np.testing.assert_array_equal(inverted, probabilities(d / "inverted.png"))  # one path, same input
    model, meta, _ = ckpt.load_checkpoint(d)
    for image, got in ((255 - digit, inverted), (digit, plain)):
        logits = train.predict_logits(model, image[None, :, :, None], normalization=meta["normalization"])
        np.testing.assert_allclose(got, softmax64(logits)[0], rtol=1e-12, atol=1e-15)  # float64, 10 terms
    assert np.abs(inverted - plain).max() > 1e-3


def c1_window(x, r, c):
    """The 5×5 window C1 sees at (r, c) behind lenet5's 2-pixel zero border; True where it is border."""
    padded = np.pad(x[:, :, 0], 2)  # (32, 32)
    border = np.pad(np.zeros((28, 28), bool), 2, constant_values=True)
    return padded[r:r + 5, c:c + 5], border[r:r + 5, c:c + 5]


def test_explain_invert_reads_the_inverted_image(ck, capsys):
    d, digit = ck
    windows = {}
    for flag in ([], ["--invert"]):
        code, out, err = run_cli(capsys, "explain", d, "--image", d / "digit.png", "--layer", "C1", "--map", "0",
                                 "--at", "10,10", "--json", *flag)
        assert code == 0, err
        (term,) = json.loads(out)["explanation"]["terms"]
        windows[bool(flag)] = np.array(term["window"], dtype=np.float64)
    for invert, image in ((False, digit), (True, 255 - digit)):
        want, _ = c1_window(prepared(image), 10, 10)
        np.testing.assert_allclose(windows[invert], want, rtol=4 * EPS32, atol=4 * EPS32)  # float32 normalise
    assert np.abs(windows[True] - windows[False]).max() > 1


def test_show_maps_invert_draws_the_inverted_image(ck, capsys, tmp_path):
    d, digit = ck
    model, meta, _ = ckpt.load_checkpoint(d)
    pngs = {}
    for key, argv in (("cli", ["--invert"]), ("plain", [])):
        out = tmp_path / f"{key}.png"
        code, _, err = run_cli(capsys, "show", "maps", d, "--image", d / "digit.png", "-o", out, *argv)
        assert code == 0, err
        pngs[key] = np.asarray(Image.open(out).convert("RGB"))
    x = train.normalize_images((255 - digit)[None, :, :, None], meta["normalization"])[0]
    ref = np.asarray(Image.open(feature_maps(model, x, tmp_path / "ref.png")).convert("RGB"))
    np.testing.assert_array_equal(pngs["cli"], ref)
    assert pngs["cli"].shape == pngs["plain"].shape and not np.array_equal(pngs["cli"], pngs["plain"])


def test_report_invert_reports_the_inverted_image(ck, capsys, tmp_path):
    d, _ = ck
    pages = {}
    for key, image, flag in (("invert", "digit.png", ["--invert"]), ("inverted", "inverted.png", []),
                             ("plain", "digit.png", [])):
        out = tmp_path / f"{key}.html"
        code, _, err = run_cli(capsys, "report", d, "--image", d / image, "-o", out, "--title", "T", *flag)
        assert code == 0, err
        pages[key] = out.read_bytes()
    assert pages["invert"] == pages["inverted"] and pages["invert"] != pages["plain"]


# --- explain --windows, --format -----------------------------------------------------------------

def _numbers(cells):
    return [None if v == "·" else float(v) for v in cells]


def test_explain_windows_prints_each_window_and_kernel(ck, capsys):
    d, digit = ck
    model, _, _ = ckpt.load_checkpoint(d)
    kernel = model["C1"].weight.data[:, :, 0, 0].astype(np.float64)
    for r, c in ((10, 10), (0, 0)):
        argv = ["explain", d, "--image", d / "digit.png", "--layer", "C1", "--map", "0", "--at", f"{r},{c}"]
        code, out, err = run_cli(capsys, *argv, "--windows")
        assert code == 0, err
        lines = out.splitlines()
        head = lines.index("input map 0: window (· = padding) | kernel")
        rows = [ln.split("|") for ln in lines[head + 1:head + 6]]
        window = np.array([_numbers(left.split()) for left, _ in rows], dtype=object)
        printed_kernel = np.array([_numbers(right.split()) for _, right in rows], dtype=np.float64)
        want, border = c1_window(prepared(digit), r, c)
        np.testing.assert_array_equal(window == None, border)  # noqa: E711  (· exactly on the border)
        # printed with 4 significant digits: within 5e-4 relative of the true value
        np.testing.assert_allclose(window[~border].astype(np.float64), want[~border], rtol=5e-4, atol=1e-12)
        np.testing.assert_allclose(printed_kernel, kernel, rtol=5e-4, atol=1e-12)
        assert border.any() == ((r, c) == (0, 0))
        code, plain, _ = run_cli(capsys, *argv)
        assert code == 0 and "window (· = padding) | kernel" not in plain
        assert plain.splitlines() == lines[:head]  # --windows only appends


def c3_terms(ck, r=4, c=5, out_map=12):
    """{input map: <window, kernel>} for lenet5's C3 at (r, c), in float64 from S2_act and the weights."""
    d, digit = ck
    model, _, _ = ckpt.load_checkpoint(d)
    s2 = next(a.array for a in activations(model, prepared(digit).astype(np.float32)) if a.name == "S2_act")
    w = model["C3"].weight.data.astype(np.float64)  # (5, 5, 6, 16)
    conn = np.flatnonzero(model["C3"].connections[:, out_map])
    return {int(i): float(np.sum(s2[r:r + 5, c:c + 5, i].astype(np.float64) * w[:, :, i, out_map])) for i in conn}


# Partial sums are printed with 6 significant digits: at most 5e-6 relative off the true value.
PRINTED_6 = 5e-6 * (1 + 1e-9)


def _check_rows(rows, terms):
    assert [int(r[0]) for r in rows] == sorted(terms) == [0, 1, 3, 4]  # Table I, column 12
    for r in rows:
        assert r[1:4] == ["4..8", "5..9", "0/25"]
        assert float(r[4]) == pytest.approx(terms[int(r[0])], rel=PRINTED_6)


def test_explain_format_markdown_and_latex(ck, capsys):
    d, _ = ck
    terms = c3_terms(ck)
    argv = ["explain", d, "--image", d / "digit.png", "--layer", "C3", "--map", "12", "--at", "4,5"]
    outputs = {}
    for fmt in ("text", "markdown", "latex"):
        code, out, err = run_cli(capsys, *argv, "--format", fmt)
        assert code == 0, err
        outputs[fmt] = out.splitlines()[1:]  # after "input: ..."
    # bias 0 in a fresh lenet5. The printed y is the model's float32 output: its sum of 4 maps × 25
    # terms may round differently from these terms' float64 sum, by up to about 4·eps·√100·Σ|terms|
    # (the terms cancel here, so that bound is not small against the total).
    rounding = 4 * float(np.finfo(np.float32).eps) * np.sqrt(100) * sum(abs(v) for v in terms.values())
    total = pytest.approx(sum(terms.values()), rel=PRINTED_6, abs=rounding)

    md = outputs["markdown"]
    head = md.index("| input map | rows | cols | padded | ⟨window, kernel⟩ |")
    assert md[head + 1] == "|---:|---:|---:|---:|---:|"
    body = md[head + 2:md.index("", head)]
    assert all(ln.startswith("| ") and ln.endswith(" |") for ln in body)
    _check_rows([ln[2:-2].split(" | ") for ln in body], terms)
    formula = next(ln for ln in md if ln.startswith("`y[C3, map 12, (4, 5)] = "))
    assert formula.endswith("`") and float(formula[:-1].rsplit("= ", 1)[1]) == total
    assert md[0].startswith("**y[C3, map 12, (4, 5)]") and "S2\\_act" in md[0]  # bold, Markdown-escaped

    tex = outputs["latex"]
    start, end = tex.index("\\begin{tabular}{rrrrr}"), tex.index("\\end{tabular}")
    assert tex[start + 1] == tex[start + 3] == tex[end - 1] == "\\hline"
    assert tex[start + 2] == "input map & rows & cols & padded & $\\langle$window, kernel$\\rangle$ \\\\"
    body = tex[start + 4:end - 1]
    assert all(ln.endswith(" \\\\") for ln in body)
    _check_rows([ln[:-3].split(" & ") for ln in body], terms)
    eq = tex[tex.index("\\[") + 1]
    assert tex[tex.index("\\[") + 2] == "\\]"
    assert eq.startswith("y^{\\text{C3}}_{12,\\,(4,5)} = b_{12} + \\sum_{i \\in C(12)}")
    assert float(eq.rsplit("= ", 1)[1]) == total

    text = outputs["text"]
    rule = next(k for k, ln in enumerate(text) if set(ln) == {"-", " "})
    _check_rows([ln.split() for ln in text[rule + 1:rule + 5]], terms)
    assert text[rule + 5] == "bias b[12] = 0"
    assert not any(ln.startswith("|") or "\\hline" in ln for ln in text)
    assert len({tuple(v) for v in outputs.values()}) == 3


# --- report --title ------------------------------------------------------------------------------

def test_report_title_names_the_page(ck, capsys, tmp_path):
    d, _ = ck
    title = 'C3 of "my" net <draft> & notes'
    for argv, want in ((["--title", title], title), ([], None)):
        out = tmp_path / f"r{len(argv)}.html"
        code, _, err = run_cli(capsys, "report", d, "--image", d / "digit.png", "-o", out, *argv)
        assert code == 0, err
        page = out.read_text(encoding="utf-8")
        shown = html.unescape(re.search(r"<title>(.*?)</title>", page, re.S).group(1))
        if want is None:
            assert shown.endswith(f": feature maps of image {d / 'digit.png'}")
        else:
            assert shown == want
            assert f'id="title">{html.escape(title)}<' in page  # the heading, escaped
            assert "<draft>" not in page  # never as markup


# --- show maps --max-maps ------------------------------------------------------------------------

def test_show_maps_max_maps_limits_the_maps_drawn(ck, capsys, tmp_path):
    d, digit = ck
    model, meta, _ = ckpt.load_checkpoint(d)
    x = train.normalize_images(digit[None, :, :, None], meta["normalization"])[0]
    pngs = {}
    for k in (2, 5, None):
        out = tmp_path / f"maps{k}.png"
        code, _, err = run_cli(capsys, "show", "maps", d, "--image", d / "digit.png", "-o", out,
                               *(["--max-maps", k] if k else []))
        assert code == 0, err
        ref = feature_maps(model, x, tmp_path / f"ref{k}.png", max_maps=k or 16)  # 16: the documented default
        pngs[k] = np.asarray(Image.open(out).convert("RGB"))
        np.testing.assert_array_equal(pngs[k], np.asarray(Image.open(ref).convert("RGB")))
    assert not np.array_equal(pngs[2], pngs[5]) and not np.array_equal(pngs[5], pngs[None])
    # the row labels say how many maps each row shows
    labels = [t.get_text() for t in feature_maps(model, x, max_maps=2).texts if t.get_gid() == "row-label"]
    assert "first 2 of 6 maps" in labels[2] and "first 2 of 16 maps" in labels[6]


# --- --traceback, --version ----------------------------------------------------------------------

def test_traceback_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "none.npz"
    one_error(*run_cli(capsys, "evaluate", missing)[::2])
    with pytest.raises(Exception, match="does not exist"):  # raised, not turned into a line
        cli.main(["--traceback", "evaluate", str(missing)])
    proc = subprocess.run([sys.executable, "-m", "featuremaps", "--traceback", "evaluate", str(missing)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, FEATUREMAPS_DATA=str(tmp_path / "cache"), PYTHONPATH=str(REPO)))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Traceback (most recent call last):")
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"featuremaps\.[\w.]+Error: .*{re.escape(str(missing))} does not exist", last), last


def test_version_prints_the_package_version(capsys):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert featuremaps.__version__ == version
    code, out, err = run_cli(capsys, "--version")
    assert code == 0 and out == f"featuremaps {version}\n" and err == ""


def test_seed_makes_the_generated_dataset_and_evaluate_reads_the_same_images(tmp_path, capsys):
    """`train --dataset corners --seed S` trains on `data.load('corners', 'train', seed=S)`; `evaluate`
    of the run and `predict --index` read the seed-S test split, not seed 0's."""
    code, out, _ = run_cli(capsys, "train", "lenet", "--dataset", "corners", "--seed", "3", "--epochs", "1",
                           "--limit", "200", "--no-plot", "--json", "--out", tmp_path / "r3")
    assert code == 0
    model, meta, _ = ckpt.load_checkpoint(tmp_path / "r3")
    assert meta["dataset"] == "corners" and meta["cli"]["seed"] == 3
    seed0, seed3 = data.load("corners", "test", seed=0), data.load("corners", "test", seed=3)
    assert not np.array_equal(seed0.images, seed3.images)
    code, out, _ = run_cli(capsys, "evaluate", tmp_path / "r3", "--json")
    got = json.loads(out)
    assert code == 0 and got["dataset"] == "corners" and got["n"] == len(seed3)
    assert got["accuracy"] == train.evaluate(model, seed3, normalization=meta["normalization"])["accuracy"]
    for k in range(6):  # the labels of the two seeds' splits differ among these
        code, out, _ = run_cli(capsys, "explain", tmp_path / "r3", "--index", k, "--layer", "conv1", "--map", 0,
                               "--at", "3,3", "--json")
        source = json.loads(out)["input"]
        assert code == 0 and source["label"] == int(seed3.labels[k]), (k, source)
        assert source["description"].startswith("generated corners test set (seed 3)"), source
    assert any(seed0.labels[k] != seed3.labels[k] for k in range(6))
