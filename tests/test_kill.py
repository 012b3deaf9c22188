"""Crash safety of a run directory, proved by killing a real `featuremaps train` (issue 14).

A chain of processes trains one run directory: each is SIGKILLed at a point drawn from a seeded
generator, then the next one `--resume`s it, and a last one finishes. The kill points:
- `replace K`: right after the K-th temporary file of the process is written and fsynced, before
  its rename (the moment a non-atomic writer would leave a half-replaced file);
- `write K`: halfway through writing the K-th temporary file (its bytes cut in half, then the kill;
  the copy to checkpoint.prev.npz is a hard link, never written, so there the kill alone);
- `time T`: after T seconds, wherever the process is.
The process counts its writes itself (a wrapper patches `os.replace` / the fsync of `_atomic`), so
the kills land inside the writes of the checkpoint, `checkpoint.prev.npz`, `metrics.csv`,
`metrics.json`, `curves.png` and `config.json`, not only between them.

After every kill: each file of the run directory that exists is whole (the checkpoints read and
pass their CRCs, the JSON parses, the CSV has its header, the PNG verifies), and the newest readable
checkpoint is never older than before the kill. At the end the weights equal an uninterrupted run's
bit for bit (the same code path on the same machine), and no temporary file remains.
FEATUREMAPS_KILL_TRIALS=N draws N kills instead of the default 5 (FEATUREMAPS_KILL_SEED: another draw).
"""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featuremaps import checkpoint as ckpt
from featuremaps.train import RUN_FILES

ARGS = ["lenet5", "--epochs", "3", "--limit", "256", "--batch-size", "64", "--seed", "3"]
WRITES_FRESH = 1 + 4 + 5 + 5  # config.json, then per epoch: (prev,) checkpoint, csv, json, png

KILLER = r"""
import os, signal, sys
mode, k = sys.argv[1], int(sys.argv[2])
count = [0]
import featuremaps._atomic as atomic
if mode == "replace":
    real = os.replace
    def replace(a, b):
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(a, b)
    os.replace = replace
elif mode == "write":
    real_fsync = atomic._fsync_file
    def fsync(path):
        count[0] += 1
        if count[0] == k:
            if os.stat(path).st_nlink == 1:  # not the hard link checkpoint.prev.npz is copied by
                data = open(path, "rb").read()
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_fsync(path)
    atomic._fsync_file = fsync
from featuremaps import cli
sys.exit(cli.main(sys.argv[3:]))
"""


def _env():
    env = dict(os.environ)
    env.pop("FEATUREMAPS_KILL_TRIALS", None)
    return env


def _train(argv, kill=None, timeout=120):
    """One `featuremaps train` process; `kill` = (mode, k) or ('time', seconds). Returns the exit code."""
    if kill is None or kill[0] == "time":
        cmd = [sys.executable, "-m", "featuremaps", "train", *argv]
    else:
        cmd = [sys.executable, "-c", KILLER, kill[0], str(kill[1]), "train", *argv]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill is not None and kill[0] == "time":
        try:
            p.wait(timeout=kill[1])
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
    _, err = p.communicate(timeout=timeout)
    if kill is None:
        assert p.returncode == 0, err
    return p.returncode


def _newest_checkpoint_epoch(run: Path) -> int:
    """The epoch of the newest readable checkpoint of the run (-1: none); asserts that every
    checkpoint file present is whole."""
    epochs = [-1]
    for name in ("checkpoint.npz", "checkpoint.prev.npz"):
        if (run / name).exists():
            assert ckpt.unreadable_reason(run / name) is None, f"{name} was left half-written"
            epochs.append(ckpt.read_checkpoint(run / name).epoch)
    return max(epochs)


def _check_whole(run: Path) -> None:
    if (run / "config.json").exists():
        json.loads((run / "config.json").read_text())
    if (run / "metrics.json").exists():
        assert isinstance(json.loads((run / "metrics.json").read_text())["history"], list)
    if (run / "metrics.csv").exists():
        rows = list(csv.reader((run / "metrics.csv").open()))
        assert rows and rows[0][:2] == ["epoch", "lr"] and all(len(r) == len(rows[0]) for r in rows)
    if (run / "curves.png").exists():
        with Image.open(run / "curves.png") as im:
            im.verify()


def _temporaries(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def _weights(run: Path) -> dict:
    with np.load(run / "checkpoint.npz") as z:
        return {k: z[k] for k in z.files if k.startswith("model.")}


def _kills(rng, n: int) -> list:
    out = []
    for _ in range(n):
        mode = ["replace", "write", "time"][rng.integers(3)]
        out.append((mode, float(rng.uniform(1.0, 4.0))) if mode == "time" else (mode, int(rng.integers(1, 11))))
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("full") / "run"
    _train([*ARGS, "--out", str(run)])
    return run


def test_killed_and_resumed_runs_end_bit_for_bit_equal_and_lose_nothing(uninterrupted, tmp_path):
    rng = np.random.default_rng(int(os.environ.get("FEATUREMAPS_KILL_SEED", "14")))
    kills = _kills(rng, int(os.environ.get("FEATUREMAPS_KILL_TRIALS", "5")))
    run = tmp_path / "run"
    newest, hit = -1, []
    for kill in kills:
        started = run / "checkpoint.npz"
        argv = ["--resume", str(run)] if started.exists() else [*ARGS, "--out", str(run)]
        code = _train(argv, kill)
        hit.append((kill, code))
        if not run.exists():
            continue
        _check_whole(run)
        epoch = _newest_checkpoint_epoch(run)
        assert epoch >= newest, f"after {kill} the newest checkpoint is epoch {epoch}, before it {newest}"
        newest = epoch
        if code == 0 and epoch == 3:
            break
    argv = ["--resume", str(run)] if (run / "checkpoint.npz").exists() else [*ARGS, "--out", str(run)]
    _train(argv)
    assert any(code == -signal.SIGKILL for _, code in hit), f"no kill landed: {hit}"
    _check_whole(run)
    assert _temporaries(run) == [], "a killed run's temporary files were not cleaned up on resume"
    want, got = _weights(uninterrupted), _weights(run)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} after the kills {hit}")
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3


def test_the_checkpoint_and_config_writes_killed_mid_way_keep_the_run_resumable(tmp_path):
    """Writes of a fresh two-epoch run killed halfway: config.json (1), the first checkpoint (2), the
    copy to checkpoint.prev.npz (6) and the second checkpoint (7). The files are whole, resuming (or
    restarting, before the first checkpoint) finishes, and no temporary is left."""
    for k in (1, 2, 6, 7):
        run = tmp_path / f"k{k}"
        assert _train([*ARGS, "--epochs", "2", "--out", str(run)], ("write", k)) == -signal.SIGKILL
        _check_whole(run)
        leftovers = _temporaries(run)
        assert leftovers, "the kill must land while a temporary file exists"
        has = (run / "checkpoint.npz").exists() or (run / "checkpoint.prev.npz").exists()
        _train(["--resume", str(run)] if has else [*ARGS, "--epochs", "2", "--out", str(run)])
        assert _temporaries(run) == [] and _newest_checkpoint_epoch(run) == 2


def test_remove_stale_touches_only_atomic_write_temporaries(tmp_path):
    from featuremaps._atomic import remove_stale
    keep = [".metrics.csv.notes", "metrics.csv", ".other.json.abcdefgh.tmp", ".metrics.csv.abc.tmp"]
    gone = [".metrics.csv.abcd1234.tmp", ".curves.png.zz_9y8x7.tmp.png"]
    for name in keep + gone:
        (tmp_path / name).write_text("x")
    removed = remove_stale(tmp_path, RUN_FILES)
    assert sorted(p.name for p in removed) == sorted(gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
