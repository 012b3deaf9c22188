"""Training loop: exact resume (2+2 epochs == 4, also mid-epoch after Ctrl-C), non-finite loss,
run-directory files, evaluate() against torch, and the progress reporter."""
import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from featuremaps import checkpoint as ckpt, data, nn, optim, schedules, train
from featuremaps.progress import ProgressBar, Reporter
from tests.oracles import sum_rtol


def tiny_data(n=160, seed=0):
    """n sample images cropped to 12×12 (fast), with their labels; a Dataset named 'sample'."""
    full = data.load("sample", "train")
    idx = np.random.default_rng(seed).choice(len(full), n, replace=False)
    return data.Dataset(full.images[idx, 8:20, 8:20], full.labels[idx], full.classes, "sample", "train")


def tiny_model(seed=0, dropout=0.25):
    rng = np.random.default_rng(seed)
    return nn.Sequential([("conv", nn.Conv2D(1, 4, 3, stride=2, rng=rng)), ("bn", nn.BatchNorm2D(4)),
                          ("act", nn.Tanh()), ("flatten", nn.Flatten()), ("drop", nn.Dropout(dropout)),
                          ("fc", nn.Dense(4 * 5 * 5, 10, rng=rng))], input_shape=(12, 12, 1))


class Recorder(Reporter):
    def __init__(self):
        self.messages, self.records = [], []

    def message(self, text):
        self.messages.append(text)

    def end_epoch(self, record):
        self.records.append(record)


def run(out_dir=None, epochs=4, resume=None, callbacks=(), opt="sgd", reporter=None, seed=3, **kw):
    model = tiny_model()
    if opt == "sgd":
        o = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        o = optim.Adam(model.parameters(), lr=0.01)
    sched = schedules.get("step", o.lr, epochs=4)
    result = train.fit(model, tiny_data(), tiny_data(48, seed=1), epochs=epochs, batch_size=32, optimizer=o,
                       schedule=sched, seed=seed, out_dir=out_dir, resume=resume, augment=True,
                       callbacks=callbacks, reporter=reporter, plot=False, **kw)
    return model, o, result


def same_records(a, b):
    """Epoch records equal except for the timings."""
    drop = ("time_s", "images_per_s")
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == \
        [{k: v for k, v in r.items() if k not in drop} for r in b]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.fixture(scope="module")
def uninterrupted():
    return run(epochs=4)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_resume_after_two_epochs_is_exact(tmp_path, opt, uninterrupted):
    full_model, full_opt, full = uninterrupted if opt == "sgd" else run(epochs=4, opt=opt)
    run(tmp_path, epochs=2, opt=opt)
    assert ckpt.read_checkpoint(tmp_path)[0]["epoch"] == 2
    model, o, resumed = run(tmp_path, epochs=4, resume=tmp_path, opt=opt)
    assert_same_weights(model, full_model)
    for k, v in full_opt.state_dict().items():
        np.testing.assert_array_equal(o.state_dict()[k], v)
    assert same_records(resumed.history, full.history)
    base = 0.05 if opt == "sgd" else 0.01
    assert [r["lr"] for r in resumed.history] == pytest.approx([base, base, base / 10, base / 10])


class InterruptAt:
    def __init__(self, epoch, step):
        self.at = (epoch, step)

    def on_batch_end(self, epoch, step, logs):
        if (epoch, step) == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_mid_epoch_saves_last_step_and_resume_is_exact(tmp_path, uninterrupted):
    full_model, _, full = uninterrupted
    rec = Recorder()
    with pytest.raises(train.TrainingInterrupted) as e:
        run(tmp_path, epochs=4, callbacks=[InterruptAt(2, 3)], reporter=rec)
    assert (e.value.epoch, e.value.step) == (1, 3)
    assert isinstance(e.value, KeyboardInterrupt)
    meta = ckpt.read_checkpoint(tmp_path)[0]
    assert (meta["epoch"], meta["step"]) == (1, 3)
    assert ckpt.read_checkpoint(tmp_path / "checkpoint.prev.npz")[0]["epoch"] == 1  # the epoch-end one
    assert "interrupted: saved the state after epoch 1, step 3" in rec.messages[-1]
    model, _, resumed = run(tmp_path, epochs=4, resume=tmp_path)
    assert_same_weights(model, full_model)
    assert same_records(resumed.history, full.history)


def test_ctrl_c_at_epoch_end_resumes_exactly(tmp_path, uninterrupted):
    class InterruptAfterEpoch:
        def on_epoch_end(self, epoch, logs):
            if epoch == 3:
                raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted) as e:
        run(tmp_path, epochs=4, callbacks=[InterruptAfterEpoch()])
    assert (e.value.epoch, e.value.step) == (3, 0)
    # the epoch-end checkpoint is the state; it is not saved a second time
    assert ckpt.read_checkpoint(tmp_path / "checkpoint.prev.npz")[0]["epoch"] == 2
    model, _, _ = run(tmp_path, epochs=4, resume=tmp_path)
    assert_same_weights(model, uninterrupted[0])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    class Poison:
        def on_batch_end(self, epoch, step, logs):
            if (epoch, step) == (2, 2):
                self.model["fc"].bias.data[:] = np.nan

    poison = Poison()
    model = tiny_model()
    poison.model = model
    o = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with pytest.raises(train.NonFiniteLossError) as e:
        train.fit(model, tiny_data(), None, epochs=3, batch_size=32, optimizer=o, seed=0, out_dir=tmp_path,
                  callbacks=[poison], plot=False)
    assert (e.value.epoch, e.value.step) == (2, 3)
    msg = str(e.value)
    assert "epoch 2, step 3 of 5" in msg and "after epoch 1" in msg and "checkpoint.npz" in msg
    loaded, meta, _ = ckpt.load_checkpoint(tmp_path)
    assert meta["epoch"] == 1 and meta["step"] == 0
    assert all(np.isfinite(v).all() for v in loaded.state_dict().values())
    assert len(json.loads((tmp_path / "metrics.json").read_text())["history"]) == 1


def test_run_directory_files_and_sanity_line(tmp_path):
    rec = Recorder()
    model = tiny_model()
    o = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    res = train.fit(model, tiny_data(), tiny_data(48, seed=1), epochs=2, batch_size=32, optimizer=o, seed=0,
                    out_dir=tmp_path, reporter=rec, meta={"dataset": "sample"})
    assert {"checkpoint.npz", "checkpoint.prev.npz", "metrics.csv", "metrics.json", "curves.png",
            "config.json"} <= {p.name for p in tmp_path.iterdir()}
    assert rec.messages[0].startswith("initial loss ") and f"ln(10) = {math.log(10):.4f}" in rec.messages[0]
    init = float(rec.messages[0].split()[2])
    assert abs(init - math.log(10)) < 0.5
    rows = list(csv.DictReader(io.StringIO((tmp_path / "metrics.csv").read_text())))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_accuracy"]) == pytest.approx(res.history[1]["val_accuracy"])
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["history"] == json.loads(json.dumps(res.history))
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["run"]["seed"] == 0 and cfg["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert cfg["dataset"] == "sample" and cfg["optimizer"]["name"] == "sgd"
    meta = ckpt.read_checkpoint(tmp_path)[0]
    assert meta["classes"] == [str(d) for d in range(10)] and meta["history"] == doc["history"]
    for r in res.history:
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1 and r["images_per_s"] > 0
    # resuming a finished run does nothing
    model2 = tiny_model()
    again = train.fit(model2, tiny_data(), None, epochs=2, batch_size=32,
                      optimizer=optim.SGD(model2.parameters(), lr=0.05, momentum=0.9), seed=0,
                      resume=tmp_path, reporter=rec, plot=False)
    assert "nothing to do" in rec.messages[-1] and len(again.history) == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    run(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="seed: checkpoint 3, now 4"):
        run(tmp_path, epochs=2, resume=tmp_path, seed=4)
    model = tiny_model()
    before = model.state_dict()
    with pytest.raises(ValueError, match="batch_size: checkpoint 32, now 16"):
        train.fit(model, tiny_data(), None, epochs=2, batch_size=16, seed=3, resume=tmp_path, augment=True,
                  optimizer=optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    for k, v in model.state_dict().items():  # refused before anything was loaded
        np.testing.assert_array_equal(v, before[k])


def test_fit_argument_errors():
    model = tiny_model()
    o = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        train.fit(model, tiny_data(), None, epochs=0, optimizer=o)
    with pytest.raises(TypeError, match="train_data must be"):
        train.fit(model, "mnist", None, epochs=1, optimizer=o)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.fit(model, tiny_data(), None, epochs=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="exactly this model's parameters"):
        train.fit(model, tiny_data(), None, epochs=1, optimizer=optim.SGD(tiny_model().parameters(), lr=0.1))


def test_evaluate_matches_torch_and_counts():
    """The loss against torch's cross-entropy on the same logits (the other figures: tests below)."""
    model = tiny_model(dropout=0.5)
    ds = tiny_data(100, seed=2)
    res = train.evaluate(model, ds, batch_size=32)
    # the logits of evaluate's own batches of 32: one code path, so the same float32 numbers (batches of
    # another size may round differently in BLAS); evaluate and torch both take it from there in float64
    logits = train.predict_logits(model, ds.images, batch_size=32, normalization=train.normalization_for(ds))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(ds.labels))
    # per image a 10-term sum of exps, its log and − z_y (3 roundings), then the mean of 100: each term
    # at most max|z| + ln 10 (the log-sum-exp) + |z_y|
    n_terms = 10 + 3 + 100
    z_y = logits[np.arange(100), ds.labels]
    scale = float(np.mean(np.abs(logits).max(axis=1) + math.log(10) + np.abs(z_y)))
    assert abs(res["loss"] - ref.item()) <= sum_rtol(np.float64, n_terms) * scale


@pytest.fixture(scope="module")
def evaluated():
    """evaluate() of an untrained model on 100 images, with the predictions of the same batches
    (predict_logits with evaluate's batch size: one code path, so the argmax is the same)."""
    model = tiny_model(dropout=0.5)
    ds = tiny_data(100, seed=2)
    res = train.evaluate(model, ds, batch_size=32)
    logits = train.predict_logits(model, ds.images, batch_size=32, normalization=train.normalization_for(ds))
    return res, logits.argmax(1), ds.labels


def test_evaluate_accuracy_and_n(evaluated):
    res, pred, labels = evaluated
    assert res["n"] == 100
    assert res["accuracy"] == np.count_nonzero(pred == labels) / 100  # a ratio of counts: exact


def test_evaluate_confusion_rows_are_true_classes_columns_predictions(evaluated):
    res, pred, labels = evaluated
    conf = np.array(res["confusion"])
    expected = np.zeros((10, 10), np.int64)
    for t, p in zip(labels, pred):  # evaluate's docstring: rows true class, columns predicted
        expected[t, p] += 1
    assert not np.array_equal(expected, expected.T)  # so a transposed matrix cannot pass
    np.testing.assert_array_equal(conf, expected)
    by_torch = torch.bincount(torch.tensor(labels * 10 + pred), minlength=100).reshape(10, 10)
    np.testing.assert_array_equal(conf, by_torch.numpy())


def test_evaluate_per_class_accuracy_is_recall_per_true_class(evaluated):
    res, pred, labels = evaluated
    want = [np.count_nonzero(pred[labels == k] == k) / max(np.count_nonzero(labels == k), 1) for k in range(10)]
    assert len({round(w, 6) for w in want}) > 1  # not all equal, so a wrong axis shows
    assert res["per_class_accuracy"] == want  # ratios of counts: exact


def test_evaluate_runs_in_eval_mode_and_restores_the_mode():
    model = tiny_model(dropout=0.5)
    ds = tiny_data(100, seed=2)
    res = train.evaluate(model, ds, batch_size=32)
    assert model.training  # evaluate restores the mode
    # eval mode is deterministic despite dropout (one code path run twice: bit for bit)
    assert train.evaluate(model, ds, batch_size=32)["loss"] == res["loss"]
    model.eval()
    assert train.evaluate(model, ds, batch_size=32)["loss"] == res["loss"] and not model.training


def test_progress_bar_modes():
    rec = {"epoch": 1, "lr": 0.1, "train_loss": 0.5, "train_accuracy": 0.9, "val_loss": 0.4,
           "val_accuracy": 0.91, "time_s": 1.0, "images_per_s": 1000.0}
    s = io.StringIO()
    bar = ProgressBar(s, tty=False)
    bar.start_epoch(1, 2, 10)
    for i in range(1, 11):
        bar.update(i, loss=0.5, accuracy=0.9, images_per_s=1000, ms_per_step=2.0)
    bar.end_epoch(rec)
    assert s.getvalue().count("\n") == 1 and "\r" not in s.getvalue()
    assert "val loss 0.4000 acc 91.00%" in s.getvalue()
    s = io.StringIO()
    bar = ProgressBar(s, tty=True, interval=0)
    bar.start_epoch(1, 2, 10)
    bar.update(5, loss=0.5, accuracy=0.9, images_per_s=1234, ms_per_step=2.0)
    assert "\r" in s.getvalue() and "5/10" in s.getvalue() and "1,234 img/s" in s.getvalue()
    bar.end_epoch(rec)
    assert s.getvalue().endswith("1.0 s\n")


def test_missing_matplotlib_skips_curves_with_one_note(tmp_path, monkeypatch):
    import sys
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... now raises ImportError
    monkeypatch.setattr(train, "_plot_note_shown", False)
    rec = Recorder()
    history = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1,
                "val_accuracy": 0.4, "time_s": 1.0, "images_per_s": 10.0}]
    train.write_metrics(tmp_path, history, rec)
    train.write_metrics(tmp_path, history, rec)
    assert not (tmp_path / "curves.png").exists() and (tmp_path / "metrics.csv").exists()
    assert rec.messages == ["note: matplotlib is not installed, so curves.png was not written "
                            "(pip install 'featuremaps[plot]')"]
