"""Paths inside files stay inside the file's directory, and cache names stay inside the cache (issue 14 §4).

- ONNX external data: `location` with '..', an absolute or drive path, a backslash '..', a NUL byte, or a
  symlink (of the file or of a directory on the way) that leads out of the model's directory is refused;
  a symlink that stays inside is read.
- zip archives (.keras, checkpoints) and the CIFAR tar: member names are never used as paths; loading an
  archive whose members are named '../x', '/abs' or are links writes nothing anywhere.
- the cache: `download.safe_join`/`fetch` refuse a file name that is not one plain component or whose
  cache entry is a symlink leading out, and `datasets.load` refuses a dataset name it does not know.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import featuremaps as fm
from featuremaps.data import DataError, datasets, download
from featuremaps.data.cifar import CIFAR10_DIR, extract_cifar_archive, write_cifar_batch

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper as oh  # noqa: E402

from featuremaps.onnx import ONNXError, run  # noqa: E402

X = np.zeros((1, 2, 4, 4), np.float32)
W = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)


def external_model(location: str) -> bytes:
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend(W.shape)
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(W.nbytes))):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = oh.make_graph([oh.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                      [oh.make_tensor_value_info("x", TensorProto.FLOAT, X.shape)],
                      [oh.make_empty_tensor_value_info("y")], [w])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def layout(tmp_path):
    """tmp/secret.bin (outside), tmp/model/ (the model's directory) with model/inside/w.bin."""
    (tmp_path / "secret.bin").write_bytes(W.tobytes())
    d = tmp_path / "model"
    (d / "inside").mkdir(parents=True)
    (d / "inside" / "w.bin").write_bytes(W.tobytes())
    return tmp_path, d


@pytest.mark.parametrize("location,reason", [
    ("../secret.bin", "contains '..'"),
    ("inside/../../secret.bin", "contains '..'"),
    ("..\\secret.bin", "contains '..'"),
    ("/etc/passwd", "is an absolute path"),
    ("\\\\server\\share\\w.bin", "is an absolute path"),
    ("C:\\w.bin", "is an absolute path"),
    ("inside/w.bin\0.txt", "NUL byte"),
    ("", "has no 'location'"),
])
def test_onnx_external_locations_that_leave_the_directory_are_refused(layout, location, reason):
    _, d = layout
    (d / "m.onnx").write_bytes(external_model(location))
    with pytest.raises(ONNXError, match=reason):
        run(d / "m.onnx", {"x": X})


def test_onnx_external_data_through_a_symlinked_file_or_directory_leaving_is_refused(layout):
    root, d = layout
    os.symlink(root / "secret.bin", d / "link.bin")
    os.symlink(root, d / "up")  # a directory link: up/secret.bin has no '..' but leaves
    for location in ("link.bin", "up/secret.bin"):
        (d / "m.onnx").write_bytes(external_model(location))
        with pytest.raises(ONNXError, match=r"resolves to .*secret.bin.*outside the model's directory"):
            run(d / "m.onnx", {"x": X})


def test_onnx_external_data_through_a_symlink_that_stays_inside_is_read(layout):
    _, d = layout
    os.symlink(d / "inside" / "w.bin", d / "alias.bin")
    (d / "m.onnx").write_bytes(external_model("alias.bin"))
    got = run(d / "m.onnx", {"x": X})[0]
    (d / "m2.onnx").write_bytes(external_model("inside/w.bin"))
    np.testing.assert_array_equal(got, run(d / "m2.onnx", {"x": X})[0])  # one path, the same bytes


def test_an_onnx_model_reached_through_a_symlink_reads_beside_the_link_only(layout, tmp_path):
    root, d = layout
    (d / "m.onnx").write_bytes(external_model("inside/w.bin"))
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.symlink(d / "m.onnx", other / "m.onnx")  # elsewhere/inside/w.bin does not exist
    with pytest.raises(ONNXError, match="not found"):
        run(other / "m.onnx", {"x": X})


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_zip_member_names_are_never_paths(tmp_path):
    """A .keras archive and a checkpoint with members named '../x', '/abs/x' and 'a/../../x': loading
    reads members by their exact names into memory and writes no file at all."""
    work = tmp_path / "work"
    work.mkdir()
    evil = {"../escaped.txt": b"x", "/abs-escaped.txt": b"x", "a/../../escaped2.txt": b"x"}
    keras = work / "m.keras"
    with zipfile.ZipFile(keras, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        zf.writestr("model.weights.h5", b"not hdf5")
        for name, data in evil.items():
            zf.writestr(name, data)
    npz = work / "c.npz"
    with zipfile.ZipFile(npz, "w") as zf:
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(b"{}", np.uint8))
        zf.writestr("meta.npy", buf.getvalue())
        for name, data in evil.items():
            zf.writestr(name + ".npy", data)
    before = _tree(tmp_path)
    for f in (keras, npz):
        with pytest.raises(ValueError, match=f.name):
            fm.load_model(f)
    assert _tree(tmp_path) == before
    assert not Path("/abs-escaped.txt").exists()


def test_cifar_extraction_writes_only_the_known_files_where_it_chooses(tmp_path):
    batch = write_cifar_batch(tmp_path / "b.bin", np.zeros((2, 32, 32, 3), np.uint8), np.array([1, 2]))
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batch, f"../{CIFAR10_DIR}/data_batch_1.bin")  # traversal
        absolute = tarfile.TarInfo(f"/{CIFAR10_DIR}/data_batch_2.bin")  # tar.add would strip the '/'
        absolute.size = batch.stat().st_size
        with open(batch, "rb") as f:
            tar.addfile(absolute, f)
        link = tarfile.TarInfo(f"{CIFAR10_DIR}/data_batch_3.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        for name in ("data_batch_1.bin", "data_batch_4.bin"):
            tar.add(batch, f"{CIFAR10_DIR}/{name}")
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="lacks .*data_batch_2.bin, data_batch_3.bin, data_batch_5.bin, test_batch.bin"):
        extract_cifar_archive(archive, dest)
    assert _tree(dest) == {CIFAR10_DIR, f"{CIFAR10_DIR}/data_batch_1.bin", f"{CIFAR10_DIR}/data_batch_4.bin"}
    assert not (tmp_path / CIFAR10_DIR).exists()
    assert not os.path.islink(dest / CIFAR10_DIR / "data_batch_3.bin")


@pytest.mark.parametrize("name", ["../x.gz", "a/b.gz", "/etc/passwd", "..", ".", "", "a\\b", "x\0y", "C:x",
                                  " x.gz", 7, None])
def test_fetch_refuses_a_file_name_that_is_not_one_plain_name(tmp_path, name):
    with pytest.raises(DataError, match="must be one plain file or folder name"):
        download.fetch(name, tmp_path / "cache", mirrors=["http://127.0.0.1:9/"], md5=None, progress=False)
    assert not (tmp_path / "cache").exists()  # refused before anything was created


def test_a_cache_entry_that_is_a_symlink_leaving_the_cache_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "outside.gz").write_bytes(b"secret")
    os.symlink(tmp_path / "outside.gz", cache / "train-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="outside .*cache.*symlink"):
        download.fetch("train-images-idx3-ubyte.gz", cache, mirrors=["http://127.0.0.1:9/"], md5=None,
                       progress=False)
    assert download.safe_join(cache, "ok.gz", "name") == cache / "ok.gz"


@pytest.mark.parametrize("name", ["../../etc", "mnist/../../x", "/tmp", "..", "mnist/"])
def test_load_refuses_a_dataset_name_that_is_not_a_known_one(tmp_path, name):
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load(name, cache_dir=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []
