"""`featuremaps._atomic.atomic_write`, the one temp-file-then-replace helper: a write that fails at
any point (in the block, at the fsync, at the rename; an error or Ctrl-C) leaves the old file
byte for byte and no temporary file; and its callers in train.py and data/cifar.py keep that."""
import io
import os
import stat
import tarfile

import numpy as np
import pytest

from featuremaps import _atomic, train
from featuremaps.data.cifar import CIFAR10_DIR, extract_cifar_archive, write_cifar_batch
from featuremaps.data.idx import DataError

OLD, NEW = b"the old contents\n", b"the new contents, longer than the old\n"


def listing(d):
    return sorted(os.listdir(d))


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(OLD)
    with _atomic.atomic_write(target) as tmp:
        # a temporary file beside the target, empty; the target unchanged until the block ends
        assert tmp.parent == tmp_path and tmp.exists() and tmp.read_bytes() == b"" and tmp != target
        tmp.write_bytes(NEW)
        assert target.read_bytes() == OLD
    assert target.read_bytes() == NEW and listing(tmp_path) == ["f.bin"]
    with _atomic.atomic_write(tmp_path / "new.png", suffix=".tmp.png") as tmp:  # a target that did not exist
        assert tmp.name.startswith(".new.png.") and tmp.name.endswith(".tmp.png")
        tmp.write_bytes(NEW)
    assert (tmp_path / "new.png").read_bytes() == NEW and listing(tmp_path) == ["f.bin", "new.png"]


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom("disk full (simulated)"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("where", ["block", "fsync", "replace"])
@pytest.mark.parametrize("existed", [True, False], ids=["replacing", "creating"])
def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch, exc, where, existed):
    target = tmp_path / "f.bin"
    if existed:
        target.write_bytes(OLD)
    before = listing(tmp_path)
    if where != "block":  # os.fsync or os.replace fails
        def broken(*args):
            raise exc
        monkeypatch.setattr(_atomic.os, where, broken)
    with pytest.raises(type(exc)):
        with _atomic.atomic_write(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(NEW[:10])  # part of the new contents are on disk when it fails
            if where == "block":
                raise exc
    monkeypatch.undo()
    assert listing(tmp_path) == before  # no temporary file, nothing renamed
    if existed:
        assert target.read_bytes() == OLD


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "fsync", fsync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    with _atomic.atomic_write(tmp_path / "f.bin") as tmp:
        tmp.write_bytes(NEW)
    monkeypatch.undo()
    assert events == [("fsync", "file"), ("replace", "f.bin"), ("fsync", "dir")]


HISTORY = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1,
            "val_accuracy": 0.4, "time_s": 1.0, "images_per_s": 10.0}]


def test_run_directory_files_survive_a_failed_rewrite(tmp_path, monkeypatch):
    (tmp_path / "metrics.csv").write_bytes(OLD)
    (tmp_path / "curves.png").write_bytes(OLD)
    import featuremaps.pictures as pictures

    def half_a_png(history, path):
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n")
        raise Boom("the plot failed half way")

    monkeypatch.setattr(pictures, "curves", half_a_png)
    with pytest.raises(Boom):
        train.write_metrics(tmp_path, HISTORY)
    assert (tmp_path / "curves.png").read_bytes() == OLD  # the old picture stays whole
    assert (tmp_path / "metrics.csv").read_bytes() != OLD  # written before the plot, completely
    assert listing(tmp_path) == ["curves.png", "metrics.csv", "metrics.json"]


def test_missing_matplotlib_leaves_no_temporary_picture(tmp_path, monkeypatch):
    import featuremaps.pictures as pictures

    def no_matplotlib(history, path):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(pictures, "curves", no_matplotlib)
    train.write_metrics(tmp_path, HISTORY)
    assert listing(tmp_path) == ["metrics.csv", "metrics.json"]


def test_cifar_extraction_cut_short_leaves_whole_files_only(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        write_cifar_batch(src / name, rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                          rng.integers(0, 10, 40))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=0) as tar:  # stored: the cut lands mid-member
        for name in names:
            tar.add(src / name, arcname=f"{CIFAR10_DIR}/{name}")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(buf.getvalue()[:len(buf.getvalue()) * 3 // 5])  # inside the fourth of six members
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        extract_cifar_archive(cut, tmp_path / "out")
    out = tmp_path / "out" / CIFAR10_DIR
    left = listing(out)
    assert left == sorted(names[:3])  # the three complete members, and no temporary file
    for name in left:
        assert (out / name).read_bytes() == (src / name).read_bytes()


def test_a_copy_onto_a_name_already_linked_to_the_same_file_leaves_no_temporary(tmp_path):
    """A run killed between linking checkpoint.prev.npz to checkpoint.npz and replacing checkpoint.npz
    leaves both names on one file; the next copy by link renames a third name of that file onto one of
    them, which POSIX rename does as a no-op. atomic_write must still leave no temporary behind."""
    src, dest = tmp_path / "checkpoint.npz", tmp_path / "checkpoint.prev.npz"
    src.write_bytes(b"epoch 1")
    os.link(src, dest)
    with _atomic.atomic_write(dest) as tmp:
        tmp.unlink()
        os.link(src, tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "checkpoint.prev.npz"]
    assert dest.read_bytes() == b"epoch 1"
