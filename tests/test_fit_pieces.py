"""`fit` in pieces (issue 9 §4): a resume reads its checkpoint once (from Python, from an already
read `Checkpoint`, and through `featuremaps train --resume`); a real Ctrl-C finishes the step and
saves, a second one during an update saves nothing; no out_dir saves nothing; the initial-loss
line against torch; and every function of the training modules fits on a screen."""
import ast
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from featuremaps import checkpoint as ckpt, cli, optim, train
from tests.oracles import sum_rtol
from tests.test_train import Recorder, assert_same_weights, run, same_records, tiny_data, tiny_model


@pytest.fixture
def reads(monkeypatch):
    """Every look at a checkpoint file's bytes, as (kind, file name, inside a save): `read` is the
    full read of its arrays (`_read_arrays`), `check` the CRC check a save makes of the file it
    is about to rotate into .prev (`_inspect`)."""
    log, saving = [], []
    real_read, real_inspect, real_save = ckpt._read_arrays, ckpt._inspect, ckpt.save_checkpoint

    def read(p):
        log.append(("read", Path(p).name, bool(saving)))
        return real_read(p)

    def inspect(p):
        log.append(("check", Path(p).name, bool(saving)))
        return real_inspect(p)

    def save(*args, **kwargs):
        saving.append(True)
        try:
            return real_save(*args, **kwargs)
        finally:
            saving.pop()

    monkeypatch.setattr(ckpt, "_read_arrays", read)
    monkeypatch.setattr(ckpt, "_inspect", inspect)
    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    return log


def outside_saves(log):
    return [(kind, name) for kind, name, in_save in log if not in_save]


def test_a_resumed_fit_reads_its_checkpoint_once(tmp_path, reads):
    run(tmp_path, epochs=1)
    reads.clear()
    _, _, result = run(tmp_path, epochs=3, resume=tmp_path)
    assert len(result.history) == 3
    assert outside_saves(reads) == [("read", "checkpoint.npz")]
    # each of the two saves checks the file it rotates into .prev; nothing else is read
    assert [r for r in reads if r[2]] == [("check", "checkpoint.npz", True)] * 2


def test_resuming_from_a_checkpoint_already_read_reads_nothing_more(tmp_path, reads, uninterrupted):
    run(tmp_path, epochs=2)
    state = ckpt.read_checkpoint(tmp_path)
    assert (state.epoch, state.step, state.path) == (2, 0, tmp_path / "checkpoint.npz")
    meta, model_state, optim_state = state  # still unpacks as the tuple it always was
    assert meta is state.meta and "conv.weight" in model_state and "step" in optim_state
    reads.clear()
    model, _, resumed = run(tmp_path, epochs=4, resume=state)
    assert outside_saves(reads) == []
    assert_same_weights(model, uninterrupted[0])  # the same run as from the path
    assert same_records(resumed.history, uninterrupted[2].history)
    # restore and load_checkpoint take it too, without reading
    fresh = tiny_model(seed=9)
    assert ckpt.restore(state, fresh) is state.meta
    loaded, meta, _ = ckpt.load_checkpoint(state)
    for k, v in model_state.items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    assert outside_saves(reads) == []


@pytest.fixture(scope="module")
def uninterrupted():
    return run(epochs=4)


FAST = ["--limit", "64", "--batch-size", "32", "--no-plot"]


def test_cli_resume_reads_the_checkpoint_once(tmp_path, reads, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "lenet5", "--epochs", "1", "--out", str(out), *FAST]) == 0
    reads.clear()
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--no-plot"]) == 0
    assert outside_saves(reads) == [("read", "checkpoint.npz")]  # the settings and the state: one read
    assert ckpt.read_checkpoint(out).epoch == 2
    reads.clear()  # a finished run: nothing to train, still one read
    assert cli.main(["train", "--resume", str(out), "--epochs", "2", "--no-plot"]) == 0
    assert reads == [("read", "checkpoint.npz", False)]
    assert "nothing to do" in capsys.readouterr().err


@pytest.fixture
def sigint_default():
    """The guard in `fit` takes over SIGINT only from Python's default handler."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_real_ctrl_c_finishes_the_step_then_saves_and_resumes_exactly(tmp_path, sigint_default, uninterrupted):
    class CtrlC:
        def on_batch_end(self, epoch, step, logs):
            if (epoch, step) == (2, 2):
                signal.raise_signal(signal.SIGINT)  # the handler runs here; the loop goes on to the step's end

    rec = Recorder()
    with pytest.raises(train.TrainingInterrupted) as e:
        run(tmp_path, epochs=4, callbacks=[CtrlC()], reporter=rec)
    assert (e.value.epoch, e.value.step) == (1, 2) and e.value.checkpoint == tmp_path / "checkpoint.npz"
    assert rec.messages[-2] == "stopping after the current step (press Ctrl-C again to stop at once)"
    assert rec.messages[-1].startswith("interrupted: saved the state after epoch 1, step 2 to ")
    state = ckpt.read_checkpoint(tmp_path)
    assert (state.epoch, state.step) == (1, 2) and state.meta["partial_epoch"]["seen"] == 64
    model, _, resumed = run(tmp_path, epochs=4, resume=tmp_path)
    assert_same_weights(model, uninterrupted[0])
    assert same_records(resumed.history, uninterrupted[2].history)


def test_a_real_ctrl_c_at_the_end_of_an_epoch_stops_before_the_next(tmp_path, sigint_default):
    class CtrlC:
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                signal.raise_signal(signal.SIGINT)

    rec = Recorder()
    with pytest.raises(train.TrainingInterrupted) as e:
        run(tmp_path, epochs=4, callbacks=[CtrlC()], reporter=rec)
    assert (e.value.epoch, e.value.step) == (2, 0) and len(rec.records) == 2
    assert rec.messages[-1].startswith("interrupted: saved the state after epoch 2 to ")
    assert ckpt.read_checkpoint(tmp_path / "checkpoint.prev.npz").epoch == 1  # the epoch-end save, not a second


def test_a_second_ctrl_c_during_an_update_saves_nothing(tmp_path, sigint_default):
    model = tiny_model()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    real_step, calls = opt.step, []

    def step():
        calls.append(1)
        if len(calls) == 7:  # epoch 2, step 2 (5 steps an epoch)
            signal.raise_signal(signal.SIGINT)  # the first: stop after this step
            signal.raise_signal(signal.SIGINT)  # the second: stop at once, mid-update
        real_step()

    opt.step = step
    rec = Recorder()
    with pytest.raises(train.TrainingInterrupted) as e:
        train.fit(model, tiny_data(), None, epochs=3, batch_size=32, optimizer=opt, seed=0, out_dir=tmp_path,
                  reporter=rec, plot=False)
    path = tmp_path / "checkpoint.npz"
    assert e.value.checkpoint is None and (e.value.epoch, e.value.step) == (1, 1)
    assert rec.messages[-1] == f"interrupted during a weight update; nothing new was saved (the last checkpoint, " \
                               f"{path}, is kept)"
    state = ckpt.read_checkpoint(tmp_path)
    assert (state.epoch, state.step) == (1, 0)  # the epoch-end checkpoint, untouched


def test_ctrl_c_without_out_dir_saves_nothing():
    class Stop:
        def on_batch_end(self, epoch, step, logs):
            if (epoch, step) == (1, 3):
                raise KeyboardInterrupt

    rec = Recorder()
    with pytest.raises(train.TrainingInterrupted) as e:
        run(None, epochs=2, callbacks=[Stop()], reporter=rec)
    assert e.value.checkpoint is None and (e.value.epoch, e.value.step) == (0, 3)
    assert rec.messages[-1] == "interrupted after epoch 0, step 3; no out_dir, so nothing was saved"


def test_initial_loss_line_matches_torch():
    """The sanity line's loss (F.log_softmax in float64) against torch's cross-entropy on the same
    logits: those of the first batch of epoch 0, from the same forward pass that leaves the model
    untouched."""
    from featuremaps.data import Loader
    model, ds, rec = tiny_model(), tiny_data(), Recorder()
    first = Loader(ds.images, ds.labels, 32, seed=0, shuffle=True).order(0)[:32]
    x = train.normalize_images(ds.images[first], train.normalization_for(ds))
    logits = np.asarray(train._forward_untouched(model, x, 0).data)
    train.fit(model, ds, None, epochs=1, batch_size=32, optimizer=optim.SGD(model.parameters(), lr=0.05), seed=0,
              reporter=rec, plot=False)
    shown = float(rec.messages[0].split()[2])
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64),
                                            torch.tensor(ds.labels[first])).item()
    # shown to 4 decimals (half a unit in the last place), plus the float64 rounding of each image's
    # 10-term log-sum-exp, its log and − z_y, and the 32-term mean, relative to the terms' size
    scale = float(2 * np.abs(logits).max() + math.log(10))
    assert abs(shown - ref) <= 0.5e-4 + sum_rtol(np.float64, 10 + 3 + 32) * scale


MODULES = ["featuremaps/train.py", "featuremaps/checkpoint.py", "featuremaps/_atomic.py",
           "featuremaps/data/cifar.py", "featuremaps/data/download.py", "featuremaps/commands/train.py"]


@pytest.mark.parametrize("module", MODULES)
def test_every_function_fits_on_a_screen(module):
    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / module).read_text(encoding="utf-8"))
    sizes = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree)
             if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert sizes and not {name: n for name, n in sizes.items() if n > 80}
