"""`featuremaps.load_model`: a checkpoint, a run directory or an ONNX file, told apart by content.

Each kind loads under its own name and under a wrong one; every other file (text, random bytes,
an empty file, a bare .npy array, an .npz that is no checkpoint, a broken HDF5 or .keras file, a
truncated ONNX file, a directory without a checkpoint) gets one error naming the path and what
was seen (real Keras files load: tests/test_cli_formats.py). An ONNX model's outputs are checked against onnxruntime."""
import shutil
import zipfile

import numpy as np
import pytest

import featuremaps as fm
from featuremaps import checkpoint as ckpt
from featuremaps._load import ModelFileError, sniff

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper, TP = onnx.helper, onnx.TensorProto


def conv_relu_onnx(path, *, free: bool = False, seed: int = 0):
    """A Conv 3→4 (3×3, pad 1) + bias + Relu graph on a 1×3×8×8 input (N, H, W free with `free`)."""
    r = np.random.default_rng(seed)
    w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = r.standard_normal(4).astype(np.float32)
    dims = ["n", 3, "h", "w"] if free else [1, 3, 8, 8]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "conv_relu", [helper.make_tensor_value_info("x", TP.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TP.FLOAT, ["n", 4, "h", "w"] if free else [1, 4, 8, 8])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


RTOL = 1e-4  # float32 against onnxruntime (issue 10): another runtime's kernels, sums of up to ~1e3 terms


def close(got, want, scale=None, rtol: float = RTOL) -> None:
    """|got − want| ≤ rtol · scale element-wise; `scale` defaults to max|want| (so that values near 0,
    where a relative test means nothing, are held to the same absolute bound as the largest)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.abs(want).max()) if scale is None else float(scale)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def forward(model, x) -> np.ndarray:
    """The model's output on `x` as an ndarray."""
    with fm.no_grad():
        y = model(x)
    return np.asarray(getattr(y, "data", y))


def fm_run(model, x_nchw):
    """The featuremaps model on an NCHW input, its output back in NCHW."""
    out = forward(model, np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))  # (n, h, w, c)
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out  # (n, c, h, w)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A lenet checkpoint in a run directory, and the model it holds."""
    run = tmp_path_factory.mktemp("run")
    model = fm.models.get("lenet", rng=np.random.default_rng(1))
    ckpt.save_checkpoint(run, model, epoch=1, meta={"dataset": "sample"})
    return run, model


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:  # the same arrays written and read back: bit-identical
        np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)


# --- checkpoints and run directories -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["checkpoint.npz", "weights.bin", "model.onnx", "noextension"])
def test_a_checkpoint_loads_under_any_name(saved, tmp_path, name):
    run, model = saved
    f = tmp_path / name
    shutil.copy(run / "checkpoint.npz", f)
    assert sniff(f) == "checkpoint"
    got = fm.load_model(f)
    assert not got.training  # eval mode
    _same_weights(got, model)
    x = np.random.default_rng(2).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(forward(got, x), forward(model.eval(), x))  # one code path, twice


def test_a_run_directory_loads(saved):
    run, model = saved
    assert sniff(run) == "run"
    got = fm.load_model(run)
    assert not got.training
    _same_weights(got, model)


def test_a_corrupt_checkpoint_gets_the_checkpoint_readers_message(saved, tmp_path):
    run, _ = saved
    f = tmp_path / "cut.npz"
    f.write_bytes((run / "checkpoint.npz").read_bytes()[:2000])
    with pytest.raises(ckpt.CheckpointError, match="not a readable checkpoint"):
        fm.load_model(f)


# --- ONNX files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["m.onnx", "m.npz", "m.bin"])
def test_an_onnx_file_loads_under_any_name_and_matches_onnxruntime(tmp_path, name):
    path = conv_relu_onnx(tmp_path / name)
    assert sniff(path) == "onnx"
    model = fm.load_model(path)
    assert not model.training
    assert tuple(model.input_shape) == (8, 8, 3)
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    close(fm_run(model, x), ort_run(path, x))


def test_input_shape_passes_through_to_the_onnx_import(tmp_path):
    path = conv_relu_onnx(tmp_path / "free.onnx", free=True)
    model = fm.load_model(path, input_shape=(6, 5, 3))
    assert tuple(model.input_shape) == (6, 5, 3)
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 5)).astype(np.float32)
    close(fm_run(model, x), ort_run(path, x))


@pytest.mark.parametrize("dynamo", [False, True])
def test_a_torch_exported_net_loads_by_content(tmp_path, dynamo):
    """Both exporters; dynamo's file has local functions and its weights in an external-data file."""
    torch = pytest.importorskip("torch")
    from tests.torch_nets import build, export
    module, shape = build("lenet")
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    path = export(module, tmp_path / "lenet.data", x, dynamo=dynamo)  # a misleading name
    assert sniff(path) == "onnx"
    model = fm.load_model(path)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    close(fm_run(model, x), want)


# --- everything else: one error naming the path and what was seen -------------------------------------

def _zip(path, entries: dict):
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in entries.items():
            zf.writestr(k, v)
    return path


@pytest.mark.parametrize("kind", ["text", "binary", "empty", "npy", "npz", "zip", "hdf5", "keras", "truncated",
                                  "no-graph"])
def test_unknown_files_get_an_error_naming_the_path_and_what_was_seen(tmp_path, kind):
    f = tmp_path / f"thing.{'onnx' if kind in ('text', 'truncated', 'no-graph') else 'npz'}"
    if kind == "text":
        f.write_text("just some notes, not a model\n")
        want = ["not a featuremaps checkpoint", "ONNX", "'just some notes"]
    elif kind == "binary":
        f.write_bytes(bytes(range(255, 191, -1)))
        want = ["not a featuremaps checkpoint", "first bytes are ff fe fd"]
    elif kind == "empty":
        f.write_bytes(b"")
        want = ["the file is empty"]
    elif kind == "npy":
        np.save(open(f, "wb"), np.zeros(3))
        want = ["single NumPy array (.npy), not a model"]
    elif kind == "npz":
        np.savez(open(f, "wb"), a=np.zeros(3))
        want = ["zip archive", "no 'meta.npy' entry", "a.npy"]
    elif kind == "zip":
        _zip(f, {"readme.txt": "hello"})
        want = ["zip archive", "readme.txt"]
    elif kind == "hdf5":
        f.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
        want = ["HDF5", "h5py cannot read it", "damaged or truncated"]
    elif kind == "keras":
        _zip(f, {"config.json": "{}", "metadata.json": "{}", "model.weights.h5": b"\x89HDF\r\n\x1a\n"})
        want = ["config.json is not a Keras model config"]
    elif kind == "truncated":
        full = conv_relu_onnx(tmp_path / "full.onnx").read_bytes()
        f.write_bytes(full[: len(full) // 2])
        want = ["starts like an ONNX model but is truncated", f"{len(full) // 2:,} bytes"]
    else:  # a valid ModelProto without a graph
        m = helper.make_model(helper.make_graph([], "g", [], []))
        m.ClearField("graph")
        f.write_bytes(m.SerializeToString())
        want = ["not a featuremaps checkpoint", "ONNX"]
    with pytest.raises(ModelFileError) as e:
        fm.load_model(f)
    msg = str(e.value)
    assert msg.startswith(str(f)), msg
    for w in want:
        assert w in msg, (w, msg)


def test_a_directory_without_a_checkpoint_and_a_missing_path(tmp_path):
    with pytest.raises(ModelFileError, match="directory without a checkpoint.npz"):
        fm.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fm.load_model(tmp_path / "nowhere")


def test_sniff_reads_only_the_top_level_keys_of_a_large_onnx_file(tmp_path, monkeypatch):
    """A 20 MB ONNX file is recognised from under 200 bytes read, never by parsing it whole."""
    w = np.ones((512, 3, 57, 57), dtype=np.float32)  # ~20 MB of weights in the graph field
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, None)], [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(g), str(path))
    read = []
    import builtins
    real_open = builtins.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    assert sniff(path) == "onnx"
    assert sum(read) < 200 and path.stat().st_size > 19e6
