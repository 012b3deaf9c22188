"""Recovering from an unreadable checkpoint (issue 8 §3), on run directories written by real tiny
training runs: a truncated or bit-flipped `checkpoint.npz` is never rotated over the good
`checkpoint.prev.npz`; `--resume RUN` refuses with the exact command that recovers, and that
command continues the run exactly; a conflicting `--lr` names the rate the run actually used."""
import re
import shlex
import shutil
import warnings

import numpy as np
import pytest

from featuremaps import checkpoint as ckpt, cli, nn, optim
from tests.clirun import one_error, run_cli

FAST = ["--limit", "64", "--batch-size", "32", "--no-plot"]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """A lenet5 run trained for one epoch, then resumed for a second: checkpoint.npz holds epoch 2,
    checkpoint.prev.npz epoch 1 (both written by the real CLI)."""
    run = tmp_path_factory.mktemp("recovery") / "run"
    assert cli.main(["train", "lenet5", "--epochs", "1", "--out", str(run), *FAST]) == 0
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--no-plot"]) == 0
    return run


def truncate(data: bytes) -> bytes:
    return data[:len(data) // 2]


def flip_bit(data: bytes, entry: str = "model.C3.weight.npy") -> bytes:
    """One bit flipped inside the stored values of `entry` (the zip structure stays intact): past
    the entry's name, its zip64 extra field (20 bytes) and the 128-byte .npy header."""
    out = bytearray(data)
    at = out.find(entry.encode())
    assert at > 0
    out[at + len(entry) + 20 + 128 + 100] ^= 0x08
    return bytes(out)


CORRUPTIONS = {"truncated": truncate, "bit-flipped": flip_bit}


@pytest.fixture(params=sorted(CORRUPTIONS))
def corrupt_run(request, two_epoch_run, tmp_path):
    """A copy of the two-epoch run whose checkpoint.npz is damaged; also returns the good bytes."""
    run = tmp_path / "run"
    shutil.copytree(two_epoch_run, run)
    current = run / "checkpoint.npz"
    good = current.read_bytes()
    current.write_bytes(CORRUPTIONS[request.param](good))
    return run, good


def files(run):
    return {p.name: p.read_bytes() for p in run.iterdir()}


def test_unreadable_reason_detects_both_corruptions(corrupt_run, two_epoch_run):
    run, _ = corrupt_run
    assert ckpt.unreadable_reason(two_epoch_run / "checkpoint.npz") is None
    assert ckpt.unreadable_reason(two_epoch_run / "checkpoint.prev.npz") is None
    assert ckpt.unreadable_reason(run / "checkpoint.npz")  # a reason, in words
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.read_checkpoint(run)  # the full read agrees


def test_resume_refuses_with_the_recovery_command_and_touches_nothing(corrupt_run, capsys):
    run, _ = corrupt_run
    before = files(run)
    line = one_error(*run_cli(capsys, "train", "--resume", run, "--epochs", "3", "--no-plot")[::2])
    prev = run / "checkpoint.prev.npz"
    assert f"{run / 'checkpoint.npz'} is not a readable checkpoint" in line
    assert f"{prev} (saved after epoch 1), is intact" in line
    assert line.endswith(f"to continue training from it: featuremaps train --resume {shlex.quote(str(prev))}")
    assert files(run) == before  # nothing written, moved or removed


def test_the_recovery_command_continues_exactly_and_keeps_every_file(corrupt_run, capsys):
    run, good_epoch2 = corrupt_run
    corrupt, good_prev = (run / "checkpoint.npz").read_bytes(), (run / "checkpoint.prev.npz").read_bytes()
    line = one_error(*run_cli(capsys, "train", "--resume", run, "--no-plot")[::2])
    command = shlex.split(line.split("to continue training from it: ")[1])
    assert command[:3] == ["featuremaps", "train", "--resume"]
    code, _, err = run_cli(capsys, *command[1:], "--epochs", "2", "--no-plot")
    assert code == 0, err
    # the good backup is untouched, the unreadable file is kept aside byte for byte, and said so
    assert (run / "checkpoint.prev.npz").read_bytes() == good_prev
    aside = [p for p in run.iterdir() if re.fullmatch(r"checkpoint\.corrupt-\d{8}T\d{6}Z\.npz", p.name)]
    assert len(aside) == 1 and aside[0].read_bytes() == corrupt
    assert "was not a readable checkpoint" in err and aside[0].name in err
    # the new checkpoint is epoch 2 again, with the weights the lost one had (resume is exact)
    meta, model_sd, optim_sd = ckpt.read_checkpoint(run)
    assert meta["epoch"] == 2 and meta["step"] == 0
    (run / "lost.npz").write_bytes(good_epoch2)
    _, lost_model, lost_optim = ckpt.read_checkpoint(run / "lost.npz")
    for name in lost_model:  # the same machine and code path twice: bit-identical
        np.testing.assert_array_equal(model_sd[name], lost_model[name], err_msg=name)
    for name in lost_optim:
        np.testing.assert_array_equal(optim_sd[name], lost_optim[name], err_msg=name)
    # and the next save rotates the now readable checkpoint into .prev as usual
    assert run_cli(capsys, "train", "--resume", run, "--epochs", "3", "--no-plot")[0] == 0
    assert ckpt.read_checkpoint(run / "checkpoint.prev.npz")[0]["epoch"] == 2
    assert ckpt.read_checkpoint(run)[0]["epoch"] == 3


def test_when_prev_is_unreadable_too_the_message_says_so(corrupt_run, capsys):
    run, _ = corrupt_run
    prev = run / "checkpoint.prev.npz"
    prev.write_bytes(truncate(prev.read_bytes()))
    line = one_error(*run_cli(capsys, "evaluate", run)[::2])
    assert f"The previous checkpoint, {prev}, is not readable either" in line
    assert "featuremaps train --resume" not in line


def small_model():
    rng = np.random.default_rng(0)
    return nn.Sequential([("conv", nn.Conv2D(1, 2, 3, rng=rng)), ("flatten", nn.Flatten()),
                          ("fc", nn.Dense(2 * 4 * 4, 3, rng=rng))], input_shape=(6, 6, 1))


@pytest.mark.parametrize("damage", sorted(CORRUPTIONS))
def test_save_never_rotates_an_unreadable_file_into_prev(tmp_path, damage):
    model = small_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=2)
    current, prev = tmp_path / "checkpoint.npz", tmp_path / "checkpoint.prev.npz"
    data = current.read_bytes()
    damaged = flip_bit(data, "model.fc.weight.npy") if damage == "bit-flipped" else truncate(data)
    current.write_bytes(damaged)
    assert ckpt.unreadable_reason(current)
    good_prev, notes = prev.read_bytes(), []
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=3, report=notes.append)
    assert prev.read_bytes() == good_prev
    assert ckpt.read_checkpoint(tmp_path)[0]["epoch"] == 3
    (aside,) = tmp_path.glob("checkpoint.corrupt-*.npz")
    assert aside.read_bytes() == damaged
    assert len(notes) == 1 and str(aside) in notes[0] and str(prev) in notes[0]
    # without a report callback the same news is a warning
    current.write_bytes(damaged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckpt.save_checkpoint(tmp_path, model, opt, epoch=4)
    assert [str(w.message) for w in caught if "not a readable checkpoint" in str(w.message)]
    assert prev.read_bytes() == good_prev and len(list(tmp_path.glob("checkpoint.corrupt-*.npz"))) == 2


def test_conflicting_lr_names_the_rate_the_run_used(two_epoch_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_epoch_run, run)
    line = one_error(*run_cli(capsys, "train", "--resume", run, "--epochs", "3", "--lr", "0.1")[::2])
    assert "None" not in line
    # lenet5's run used the sgd default 0.05, on the cosine schedule over 2 epochs: 0.025 in epoch 2
    assert "--lr 0.1 (the run used 0.05 on the cosine schedule, 0.025 in epoch 2)" in line
    # the rate it actually used is not a conflict
    assert run_cli(capsys, "train", "--resume", run, "--epochs", "2", "--lr", "0.05")[0] == 0
