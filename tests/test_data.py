"""featuremaps.data: IDX reader/writer, dataset lookup, CIFAR-10 reader, the embedded sample, the shared MNIST files."""
from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremaps import data
from featuremaps.data import datasets as ds_mod
from featuremaps.data.cifar import extract_cifar_archive
from featuremaps.data.dataset import split_indices
from featuremaps.data.sample import SAMPLE_FILE, SAMPLE_SOURCE_MD5, build_sample_npz

README_MD5 = {  # ../shared/data/README.md
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte.gz": "661a00f6834ea504a083abb6156444cc",
    "train-labels-idx1-ubyte.gz": "7dc3f26514f21131b416ebaacae5ffb3",
}


def md5_of(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def write_mnist_dir(d: Path, n_train=6, n_test=4, *, gz=True, seed=0, h=28, w=28):
    """Fake MNIST-layout folder; returns {split: (images (n, h, w), labels (n,))}."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        sfx = ".gz" if gz else ""
        data.write_idx(d / f"{prefix}-images-idx3-ubyte{sfx}", x)
        data.write_idx(d / f"{prefix}-labels-idx1-ubyte{sfx}", y)
        out[split] = (x, y)
    return out


# ---- IDX -------------------------------------------------------------------------------------------

def test_read_idx_hand_built_bytes(tmp_path):
    # Independent of write_idx: bytes assembled by hand from the format description.
    a = np.arange(6, dtype=np.int32).reshape(2, 3) - 2
    raw = b"\x00\x00\x0c\x02" + struct.pack(">II", 2, 3) + struct.pack(">6i", *a.ravel().tolist())
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    for name in ("a.idx", "a.idx.gz"):
        got = data.read_idx(tmp_path / name)
        assert got.dtype == np.int32 and got.dtype.isnative and got.flags.writeable
        np.testing.assert_array_equal(got, a)
    # ...and write_idx produces exactly those bytes.
    assert data.write_idx(tmp_path / "b.idx", a).read_bytes() == raw
    assert gzip.decompress(data.write_idx(tmp_path / "b.idx.gz", a).read_bytes()) == raw


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(["u1", "i1", "i2", "i4", "f4", "f8"]),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_idx_round_trip(tmp_path_factory, dtype, shape, gz, seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * 100).astype(dtype)
    p = tmp_path_factory.mktemp("idx") / ("x.idx.gz" if gz else "x.idx")
    data.write_idx(p, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = data.read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.shape == tuple(shape)
    np.testing.assert_array_equal(b, a)


def test_write_idx_rejects_unsupported(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        data.write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        data.write_idx(tmp_path / "x", np.zeros((), np.uint8))


def _good_idx_bytes():
    return b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + bytes(range(24))


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"\x01\x00\x08\x03" + _good_idx_bytes()[4:], "wrong magic"),
        (b"\x00\x00\x07\x03" + _good_idx_bytes()[4:], "unknown dtype code 0x07"),
        (_good_idx_bytes()[:-1], "short payload"),
        (_good_idx_bytes() + b"\x00", "extra bytes"),
        (_good_idx_bytes()[:10], "truncated header"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00", "too short"),
        (b"", "empty"),
    ],
    ids=["magic", "dtype", "short", "extra", "header", "ndim0", "tiny", "empty"],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_corruptions(tmp_path, blob, message, gz):
    p = tmp_path / ("f.gz" if gz else "f")
    p.write_bytes(gzip.compress(blob) if gz and blob else blob)
    with pytest.raises(data.DataError, match=message) as e:
        data.read_idx(p)
    assert str(p) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_read_idx_truncated_and_corrupted_gzip(tmp_path):
    gz = gzip.compress(_good_idx_bytes() * 50)
    (tmp_path / "trunc.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(data.DataError, match="truncated or corrupted gzip") as e:
        data.read_idx(tmp_path / "trunc.gz")
    assert "trunc.gz" in str(e.value)
    bad = bytearray(gz)
    bad[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    (tmp_path / "crc.gz").write_bytes(bytes(bad))
    with pytest.raises(data.DataError, match="corrupted gzip"):
        data.read_idx(tmp_path / "crc.gz")
    bad = bytearray(gz)
    bad[12:40] = b"\xff" * 28  # garbage in the deflate stream
    (tmp_path / "garbage.gz").write_bytes(bytes(bad))
    with pytest.raises(data.DataError, match="corrupted gzip"):
        data.read_idx(tmp_path / "garbage.gz")


def test_read_idx_missing_file_and_directories(tmp_path):
    with pytest.raises(data.DataError, match="no such file") as e:
        data.read_idx(tmp_path / "nope.gz")
    assert "nope.gz" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="empty directory"):
        data.read_idx(tmp_path / "empty")


# ---- load(): names, lookup order, errors -----------------------------------------------------------

def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10, sample"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="'train', 'test'"):
        data.load("mnist", "val")


def test_load_from_data_dir_gz_and_raw(tmp_path, no_cache):
    for gz in (True, False):
        d = tmp_path / f"gz{gz}"
        arrays = write_mnist_dir(d, gz=gz)
        for split in ("train", "test"):
            ds = data.load("mnist", split, data_dir=d, download=False)
            x, y = arrays[split]
            assert ds.images.shape == x.shape + (1,) and ds.images.dtype == np.uint8
            assert ds.labels.dtype == np.int64
            np.testing.assert_array_equal(ds.images[..., 0], x)
            np.testing.assert_array_equal(ds.labels, y)
            assert (ds.name, ds.split, ds.classes) == ("mnist", split, [str(i) for i in range(10)])


def test_load_dot_spelling_and_subfolder(tmp_path, no_cache):
    d = tmp_path / "root" / "fashion-mnist"
    arrays = write_mnist_dir(d, gz=False)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / stem).rename(d / stem.replace("-idx", ".idx"))
    ds = data.load("Fashion_MNIST", "test", data_dir=tmp_path / "root", download=False)
    np.testing.assert_array_equal(ds.labels, arrays["test"][1])
    assert ds.classes[9] == "Ankle boot" and ds.name == "fashion-mnist"


def test_data_dir_comes_before_cache(tmp_path, no_cache):
    write_mnist_dir(no_cache / "mnist", n_train=3, seed=1)
    local = write_mnist_dir(tmp_path / "local", n_train=5, seed=2)
    ds = data.load("mnist", "train", data_dir=tmp_path / "local", download=False)
    np.testing.assert_array_equal(ds.images[..., 0], local["train"][0])
    ds = data.load("mnist", "train", download=False)
    assert len(ds) == 3  # then the cache


def test_cache_root_from_env_and_argument(tmp_path, no_cache):
    write_mnist_dir(tmp_path / "elsewhere" / "mnist", n_test=7)
    assert data.default_cache_dir() == no_cache
    assert len(data.load("mnist", "test", cache_dir=tmp_path / "elsewhere", download=False)) == 7


def test_count_mismatch_names_both_files(tmp_path, no_cache):
    d = tmp_path / "d"
    d.mkdir()
    data.write_idx(d / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    data.write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(data.DataError) as e:
        data.load("mnist", "train", data_dir=d, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz has 5 images" in msg and "train-labels-idx1-ubyte.gz has 4 labels" in msg


def test_bad_label_values_and_shapes(tmp_path, no_cache):
    d = tmp_path / "d"
    d.mkdir()
    data.write_idx(d / "t10k-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    data.write_idx(d / "t10k-labels-idx1-ubyte", np.array([3, 10], np.uint8))
    with pytest.raises(data.DataError, match="0..9"):
        data.load("mnist", "test", data_dir=d, download=False)
    data.write_idx(d / "t10k-images-idx3-ubyte", np.zeros((2, 16), np.uint8))
    with pytest.raises(data.DataError, match=r"\(N, H, W\)"):
        data.load("mnist", "test", data_dir=d, download=False)


def test_empty_missing_and_partial_data_dir(tmp_path, no_cache):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError) as e:
        data.load("mnist", "train", data_dir=empty, download=False)
    msg = str(e.value)
    assert f"{empty} (data_dir): empty directory" in msg
    assert f"{no_cache / 'mnist'} (cache): does not exist" in msg
    assert "--data DIR" in msg and "download=False" in msg and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg
    with pytest.raises(data.DataError, match="does not exist"):
        data.load("mnist", "train", data_dir=tmp_path / "typo", download=False)
    part = tmp_path / "part"
    part.mkdir()
    data.write_idx(part / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(data.DataError, match="only some of the files: missing train-labels-idx1-ubyte"):
        data.load("mnist", "train", data_dir=part, download=False)


def test_corrupt_file_in_data_dir_is_reported(tmp_path, no_cache):
    d = tmp_path / "d"
    write_mnist_dir(d)
    p = d / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz is a truncated or corrupted gzip"):
        data.load("mnist", "test", data_dir=d, download=False)


# ---- split_validation ------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 30), min_size=2, max_size=6), fraction=st.floats(0.05, 0.95),
       seed=st.integers(0, 1000), shuffled=st.booleans())
def test_split_validation_stratified(counts, fraction, seed, shuffled):
    labels = np.repeat(np.arange(len(counts)), counts)
    if shuffled:
        labels = np.random.default_rng(seed + 1).permutation(labels)
    n = len(labels)
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    d = data.Dataset(images, labels, [str(i) for i in range(len(counts))], "toy", "train")
    want_val = [int(np.floor(fraction * c + 0.5)) for c in counts]
    if sum(want_val) in (0, n):
        with pytest.raises(ValueError, match="non-empty"):
            data.split_validation(d, fraction, np.random.default_rng(seed))
        return
    tr, va = data.split_validation(d, fraction, np.random.default_rng(seed))
    assert va.class_counts().tolist() == want_val
    assert (tr.split, va.split) == ("train", "val")
    tr_idx, va_idx = split_indices(labels, fraction, np.random.default_rng(seed))
    assert set(tr_idx).isdisjoint(va_idx) and len(tr_idx) + len(va_idx) == n
    assert np.all(np.diff(tr_idx) > 0) and np.all(np.diff(va_idx) > 0)  # original order kept
    np.testing.assert_array_equal(tr.labels, labels[tr_idx])
    tr2, va2 = data.split_validation(d, fraction, np.random.default_rng(seed))
    np.testing.assert_array_equal(va2.labels, va.labels)
    np.testing.assert_array_equal(va2.images, va.images)


def test_split_validation_arguments():
    d = data.Dataset(np.zeros((10, 1, 1, 1), np.uint8), np.arange(10) % 2, ["a", "b"], "toy", "train")
    with pytest.raises(ValueError, match="fraction"):
        data.split_validation(d, 1.0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        data.split_validation(d, 0.2, 0)
    tr, va = data.split_validation(d, 0.3, np.random.default_rng(0), stratify=False)
    assert (len(tr), len(va)) == (7, 3)


def test_dataset_validates():
    with pytest.raises(ValueError, match="NHWC"):
        data.Dataset(np.zeros((3, 28, 28), np.uint8), np.zeros(3, int), ["a"], "x", "train")
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        data.Dataset(np.zeros((3, 2, 2, 1), np.uint8), np.zeros(2, int), ["a"], "x", "train")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        data.Dataset(np.zeros((2, 2, 2, 1), np.uint8), np.array([0, 1]), ["a"], "x", "train")


# ---- CIFAR-10 --------------------------------------------------------------------------------------

def test_read_cifar_batch_layout(tmp_path):
    # Hand-built records: byte 0 is the label, then R, G, B planes of 32x32, row-major.
    rng = np.random.default_rng(0)
    recs = rng.integers(0, 256, (3, 3073), dtype=np.uint8)
    recs[:, 0] = [3, 0, 9]
    (tmp_path / "b.bin").write_bytes(recs.tobytes())
    x, y = data.read_cifar_batch(tmp_path / "b.bin")
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [3, 0, 9]
    for n, i, j, c in [(0, 0, 0, 0), (1, 5, 7, 1), (2, 31, 30, 2), (0, 17, 2, 2)]:
        assert x[n, i, j, c] == recs[n, 1 + c * 1024 + i * 32 + j]
    data.write_cifar_batch(tmp_path / "c.bin", x, y)
    assert (tmp_path / "c.bin").read_bytes() == recs.tobytes()


def test_read_cifar_batch_errors(tmp_path):
    (tmp_path / "short.bin").write_bytes(bytes(3073 * 2 - 1))
    with pytest.raises(data.DataError, match="3073-byte record") as e:
        data.read_cifar_batch(tmp_path / "short.bin")
    assert "short.bin" in str(e.value)
    rec = np.zeros(3073, np.uint8)
    rec[0] = 10
    (tmp_path / "label.bin").write_bytes(rec.tobytes())
    with pytest.raises(data.DataError, match="label 10"):
        data.read_cifar_batch(tmp_path / "label.bin")
    with pytest.raises(data.DataError, match="no such file"):
        data.read_cifar_batch(tmp_path / "nope.bin")


def write_cifar_dir(d: Path, per_batch=2, seed=0):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        data.write_cifar_batch(d / f, x, y)
        out[f] = (x, y)
    return out


def test_load_cifar10_from_data_dir(tmp_path, no_cache):
    arrays = write_cifar_dir(tmp_path / "c" / "cifar-10-batches-bin")
    for root in (tmp_path / "c", tmp_path / "c" / "cifar-10-batches-bin"):
        tr = data.load("cifar10", "train", data_dir=root, download=False)
        assert tr.images.shape == (10, 32, 32, 3) and tr.classes[0] == "airplane"
        np.testing.assert_array_equal(tr.images[2:4], arrays["data_batch_2.bin"][0])
        np.testing.assert_array_equal(tr.labels[8:], arrays["data_batch_5.bin"][1])
        te = data.load("CIFAR-10", "test", data_dir=root, download=False)
        np.testing.assert_array_equal(te.images, arrays["test_batch.bin"][0])


def test_load_cifar10_missing_and_partial(tmp_path, no_cache):
    d = tmp_path / "c"
    write_cifar_dir(d)
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(data.DataError, match="missing data_batch_3.bin"):
        data.load("cifar10", "train", data_dir=d, download=False)
    assert len(data.load("cifar10", "test", data_dir=d, download=False)) == 2
    (tmp_path / "e").mkdir()
    with pytest.raises(data.DataError, match="cifar-10-binary.tar.gz") as e:
        data.load("cifar10", "test", data_dir=tmp_path / "e", download=False)
    assert "empty directory" in str(e.value) and "--data DIR" in str(e.value)


def make_cifar_tar(path: Path, src: Path, extra: dict[str, bytes] | None = None, skip=()):
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(src.iterdir()):
            if f.name not in skip:
                tar.add(f, arcname=f"cifar-10-batches-bin/{f.name}")
        for name, blob in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar_archive_in_data_dir_is_extracted_into_cache(tmp_path, no_cache):
    arrays = write_cifar_dir(tmp_path / "src")
    d = tmp_path / "d"
    d.mkdir()
    make_cifar_tar(d / "cifar-10-binary.tar.gz", tmp_path / "src")
    te = data.load("cifar10", "test", data_dir=d, download=False)
    np.testing.assert_array_equal(te.labels, arrays["test_batch.bin"][1])
    assert (no_cache / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert (d / "cifar-10-binary.tar.gz").is_file()  # the user's archive is left alone
    assert sorted(p.name for p in d.iterdir()) == ["cifar-10-binary.tar.gz"]
    assert len(data.load("cifar10", "train", download=False)) == 10  # now from the cache


def test_cifar_extraction_ignores_hostile_members(tmp_path):
    write_cifar_dir(tmp_path / "src")
    evil = {
        "../evil.bin": b"x",
        "/tmp/abs_evil.bin": b"x",
        "cifar-10-batches-bin/../../evil2.bin": b"x",
        "cifar-10-batches-bin/batches.meta.txt": b"airplane\n",
    }
    arc = tmp_path / "a.tar.gz"
    make_cifar_tar(arc, tmp_path / "src", evil)
    # a symlink posing as a batch file
    with tarfile.open(tmp_path / "link.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    out = extract_cifar_archive(arc, tmp_path / "out" / "x")
    expected = sorted(f"data_batch_{i}.bin" for i in range(1, 6)) + ["test_batch.bin"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert not (tmp_path / "out" / "evil.bin").exists() and not (tmp_path / "evil2.bin").exists()
    assert not Path("/tmp/abs_evil.bin").exists()
    with pytest.raises(data.DataError, match="lacks"):
        extract_cifar_archive(tmp_path / "link.tar.gz", tmp_path / "out2")
    assert not (tmp_path / "out2" / "cifar-10-batches-bin" / "test_batch.bin").exists()
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(data.DataError, match="not a readable"):
        extract_cifar_archive(tmp_path / "junk.tar.gz", tmp_path / "out3")


# ---- the embedded sample ---------------------------------------------------------------------------

def test_sample_train_val_shapes_balance_disjoint():
    tr, va = data.load("sample", "train"), data.load("sample", "val")
    assert tr.images.shape == (4500, 28, 28, 1) and va.images.shape == (500, 28, 28, 1)
    assert tr.images.dtype == va.images.dtype == np.uint8
    assert tr.labels.dtype == va.labels.dtype == np.int64
    assert tr.class_counts().tolist() == [450] * 10 and va.class_counts().tolist() == [50] * 10
    assert (tr.name, tr.split, va.split) == ("sample", "train", "val")
    with np.load(SAMPLE_FILE, allow_pickle=False) as z:
        val_index = z["val_index"]
        full_x, full_y = z["images"], z["labels"]
    assert len(np.unique(val_index)) == 500 and val_index.min() >= 0 and val_index.max() < 5000
    # train and val partition the 5,000 images: rebuild the whole from the two parts.
    is_val = np.zeros(5000, bool)
    is_val[val_index] = True
    np.testing.assert_array_equal(full_x[is_val], va.images[..., 0])
    np.testing.assert_array_equal(full_x[~is_val], tr.images[..., 0])
    np.testing.assert_array_equal(full_y[~is_val], tr.labels)
    # disjoint as images, not just as indices (no image of val appears in train)
    tr_keys = {row.tobytes() for row in tr.images.reshape(4500, -1)}
    assert not any(row.tobytes() in tr_keys for row in va.images.reshape(500, -1))
    # deterministic
    np.testing.assert_array_equal(data.load("sample", "val").images, va.images)


def test_sample_file_small_and_pixel_statistics():
    assert SAMPLE_FILE.stat().st_size < 2_000_000
    x = data.load("sample", "train").images / 255.0
    (mean,), (std,) = data.NORMALIZATION["sample"]
    assert abs(x.mean() - mean) < 0.01 and abs(x.std() - std) < 0.01


def test_sample_equals_shared_training_files(shared_mnist, tmp_path):
    for name, want in SAMPLE_SOURCE_MD5.items():
        assert md5_of(shared_mnist / name) == want == README_MD5[name]
    src_x = data.read_idx(shared_mnist / "train-images-idx3-ubyte.gz")
    src_y = data.read_idx(shared_mnist / "train-labels-idx1-ubyte.gz")
    with np.load(SAMPLE_FILE, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["images"], src_x)
        np.testing.assert_array_equal(z["labels"], src_y)
        assert z["source_images_md5"].item() == README_MD5["train-images-idx3-ubyte.gz"]
    # the maintainer tool's builder reproduces the embedded arrays
    rebuilt = build_sample_npz(src_x, src_y, tmp_path / "s.npz", source_md5=SAMPLE_SOURCE_MD5)
    with np.load(rebuilt, allow_pickle=False) as a, np.load(SAMPLE_FILE, allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    # the shared training files load through the generic reader too, labels sorted by class
    tr = data.load("mnist", "train", data_dir=shared_mnist, download=False)
    assert len(tr) == 5000 and np.all(np.diff(tr.labels) >= 0)


def test_sample_test_split_error_says_where(tmp_path, no_cache):
    with pytest.raises(data.DataError) as e:
        data.load("sample", "test", download=False)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte" in msg and "--data DIR" in msg and str(no_cache / "mnist") in msg
    d = tmp_path / "d"
    arrays = write_mnist_dir(d)
    te = data.load("sample", "test", data_dir=d, download=False)
    assert (te.name, te.split) == ("sample", "test")
    np.testing.assert_array_equal(te.labels, arrays["test"][1])


# ---- the official test set in ../shared/data/mnist -------------------------------------------------

def test_shared_t10k_md5_and_contents(shared_mnist):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert md5_of(shared_mnist / name) == README_MD5[name]
        assert README_MD5[name] == data.download.MD5["mnist"][name]  # the official md5 the downloader checks
    te = data.load("mnist", "test", data_dir=shared_mnist, download=False)
    assert te.images.shape == (10000, 28, 28, 1) and te.images.dtype == np.uint8
    assert te.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
    assert te.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_shared_t10k_found_without_data_dir(shared_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREMAPS_DATA", str(tmp_path / "empty_cache"))
    assert ds_mod.SHARED_MNIST_DIR is not None and ds_mod.SHARED_MNIST_DIR.resolve() == shared_mnist.resolve()
    te = data.load("sample", "test", download=False)
    assert len(te) == 10000 and te.labels[:3].tolist() == [7, 2, 1]
    assert len(data.load("mnist", "test", download=False)) == 10000
    with pytest.raises(data.DataError):  # but never the 5k sample in place of the full training set
        data.load("mnist", "train", download=False)
