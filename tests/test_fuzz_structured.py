"""Structure-aware fuzzing of the file loaders with hypothesis (issue 14 §1), and one test per resource limit.

Random bytes (the atheris targets in `fuzz/`) rarely get past a magic number or a zip directory; these
tests build files that are well formed on the outside and wrong on the inside:
- IDX headers with any dtype byte, any number of dimensions and any dims, with a payload that fits or not;
- npz checkpoints with members missing, extra, mistyped or oversized, and a JSON meta with wrong types;
- ONNX graphs (onnx.helper) with cycles, dangling inputs and absurd attributes;
- Keras configs with unknown classes, Lambda layers, foreign modules and deep nesting.

Every file goes through `fuzz.targets.check_file`, the same contract check the atheris targets use: the
load returns, or raises a ValueError/TypeError/OSError subclass whose message names the file; anything
else fails the test. Where the file is known to be bad (a cycle, a Lambda, a missing weight) the test also
asserts that it was refused, and where it is known to be good, that it loaded, so no test passes by
accepting everything. The limit tests check that each limit's error names the limit and both ways to
raise it, and that raising it lets the same file through.
"""
from __future__ import annotations

import functools
import gzip
import io
import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featuremaps import limits
from fuzz import targets

pytestmark = pytest.mark.filterwarnings("ignore")  # damaged files make h5py/numpy warn; only errors matter
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class _Seeds(dict):
    """The valid seed files of `fuzz.targets`, each built on first use (the legacy .h5 needs Keras)."""

    def __missing__(self, name: str) -> list:
        build = {"checkpoint": targets._checkpoint_bytes, "keras": targets._keras_bytes}[name]
        self[name] = [build()]
        return self[name]


_seeds = functools.lru_cache(maxsize=None)(_Seeds)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("structured")


def _outcome(name: str, data: bytes, work: Path) -> tuple[str, str]:
    """(outcome, message) of target `name` on `data`: "ok" or the error type; ContractViolation escapes."""
    path = work / f"case{targets.TARGETS[name].suffix}"
    path.write_bytes(data)
    return targets.outcome(name, path)  # the contract: a ContractViolation fails the test here


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple, payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


# --- IDX ----------------------------------------------------------------------------------------------
_dims = st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), min_size=0, max_size=12)


def _idx_reference(raw: bytes):
    """An independent reading of IDX bytes: the array, "limit" (over FUZZ_LIMITS) or None (malformed)."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_CODES or raw[3] == 0 or len(raw) < 4 + 4 * raw[3]:
        return None
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
    dtype, count, nonzero = np.dtype(IDX_CODES[raw[2]]), 1, 1
    for d in dims:
        count, nonzero = count * d, nonzero * max(d, 1)
    if max(count, nonzero) > targets.FUZZ_LIMITS["max_tensor_elements"] or \
            count * dtype.itemsize > targets.FUZZ_LIMITS["max_tensor_bytes"]:
        return "limit"
    if len(raw) - 4 - 4 * raw[3] != count * dtype.itemsize:
        return None
    return np.frombuffer(raw[4 + 4 * raw[3]:], dtype).reshape(dims)


@FAST
@given(code=st.one_of(st.sampled_from(sorted(IDX_CODES)), st.integers(0, 255)), dims=_dims,
       ndim_delta=st.sampled_from([0, 0, 0, 1, -1, 200]), slack=st.sampled_from([0, 0, 0, 1, -1, -7, 64]),
       gz=st.booleans(), data=st.data())
def test_idx_headers_with_any_dims_and_dtypes(work, code, dims, ndim_delta, slack, gz, data):
    ndim = max(0, min(255, len(dims) + ndim_delta))
    raw = bytes([0, 0, code, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    n = int(np.prod(dims, dtype=object)) if dims else 0
    need = n * np.dtype(IDX_CODES.get(code, "u1")).itemsize
    size = need if need <= 1 << 16 else data.draw(st.integers(0, 64))  # the payload fits the header, or not
    raw += bytes((i * 7) % 256 for i in range(max(0, size + slack)))
    result, msg = _outcome("idx", gzip.compress(raw, mtime=0) if gz else raw, work)
    want = _idx_reference(raw)
    if isinstance(want, np.ndarray):
        assert result == "ok", msg
        got = targets.TARGETS["idx"].call(work / "case.idx")
        assert got.dtype == want.dtype.newbyteorder("=") and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        assert result == "DataError", f"IDX bytes {raw[:24].hex()}... were accepted"
        assert (want == "limit") == ("over the limit max_tensor" in msg), msg


# --- npz checkpoints --------------------------------------------------------------------------------------
def _ckpt_members() -> dict[str, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(_seeds()["checkpoint"][0]))
    return {i.filename: zf.read(i) for i in zf.infolist()}


def _meta() -> dict:
    return json.loads(np.load(io.BytesIO(_ckpt_members()["meta.npy"]), allow_pickle=False).tobytes())


_json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
_MISTYPED = [np.zeros((3, 3, 2, 1), np.float32), np.zeros((2,), np.int64), np.zeros((), np.float64),
             np.array(["a"]), np.zeros((2, 2), np.complex64), np.zeros((4, 4, 4, 4), np.float32)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["missing", "extra", "mistyped", "oversized", "meta", "meta-key", "not-npy"]),
       data=st.data())
def test_npz_checkpoints_with_broken_members(work, kind, data):
    members = _ckpt_members()
    weights = sorted(k for k in members if k.startswith("model."))
    must_fail = True
    if kind == "missing":
        del members[data.draw(st.sampled_from(["meta.npy", *weights]))]
    elif kind == "extra":
        name = data.draw(st.sampled_from(["model.9.weight.npy", "optim.x.npy", "../evil.npy", "x/y.npy",
                                          "/abs.npy", "notes.txt"]))
        members[name] = _npy(np.zeros(2, np.float32)) if name.endswith(".npy") else b"hello"
        must_fail = name.startswith("model.")  # a weight the model does not have
    elif kind == "mistyped":
        target = data.draw(st.sampled_from(weights))
        bad = data.draw(st.sampled_from(_MISTYPED))
        was = np.load(io.BytesIO(members[target]), allow_pickle=False)
        members[target] = _npy(bad) if bad.dtype.kind != "U" else _npy_header("|O", (1,), b"\x80\x04N.")
        must_fail = bad.shape != was.shape or bad.dtype.kind in "cU"  # a cast of the same shape may load
    elif kind == "oversized":
        target = data.draw(st.sampled_from(["meta.npy", *weights]))
        shape = data.draw(st.sampled_from([(2**40,), (0, 2**40, 2**40), (2**31, 2**31), (1 << 25,)]))
        members[target] = _npy_header("<f4", shape, bytes(data.draw(st.integers(0, 64))))
    elif kind == "not-npy":
        members[data.draw(st.sampled_from(["meta.npy", *weights]))] = data.draw(st.binary(max_size=64))
    else:  # the meta document: a required key with a value of the wrong type, or not a dict at all
        meta = _meta()
        if kind == "meta":
            doc = data.draw(st.one_of(_json_value.filter(lambda v: not isinstance(v, dict)),
                                      st.just([[[[[[]]]]]] * 3)))
        else:
            key = data.draw(st.sampled_from(["format", "epoch", "step", "model", "format_version"]))
            value = data.draw(_json_value.filter(lambda v, k=key: type(v) is not type(meta[k]) and
                                                 not (isinstance(v, int) and isinstance(meta[k], int)) and
                                                 not (isinstance(v, dict) and "class" in v)))
            meta[key] = value
            doc = meta
        members["meta.npy"] = _npy(np.frombuffer(json.dumps(doc).encode(), np.uint8))
    result, msg = _outcome("checkpoint", _zip(members), work)
    if must_fail:
        assert result != "ok", f"a checkpoint with a {kind} member was accepted"
    assert result == "ok" or "case.npz" in msg


# --- ONNX graphs ------------------------------------------------------------------------------------------
_OPS = ["Relu", "Add", "Conv", "MaxPool", "Reshape", "Flatten", "Gemm", "Identity", "Concat", "Transpose",
        "Softmax", "Mul", "Frobnicate"]
_absurd_ints = st.lists(st.one_of(st.integers(-3, 4), st.sampled_from([0, -1, 2**31 - 1, -2**63, 2**40])),
                        min_size=1, max_size=5)
_ATTRS = {"kernel_shape": _absurd_ints, "strides": _absurd_ints, "pads": _absurd_ints, "dilations": _absurd_ints,
          "perm": _absurd_ints, "axis": st.integers(-2**40, 2**40), "group": st.integers(-2, 2**40),
          "auto_pad": st.sampled_from([b"VALID", b"SAME_UPPER", b"NOTSET", b"\xff\xfe"]),
          "alpha": st.floats(allow_nan=True), "transB": st.integers(-1, 3)}


@st.composite
def _graphs(draw):
    """(ModelProto bytes, why it must fail or None): a chain of nodes (node i reads t{i-1}, and maybe x, w or
    an earlier t), with a back edge from the last node to the first (a cycle) or an input nothing produces
    (dangling), and attributes drawn from absurd values."""
    from onnx import TensorProto, helper as oh, numpy_helper
    n = draw(st.integers(1, 6))
    cycle, dangling = draw(st.booleans()), draw(st.booleans())
    nodes = []
    for i in range(n):
        op = draw(st.sampled_from(_OPS))
        k = 2 if op in ("Add", "Conv", "Gemm", "Concat", "Mul", "Reshape") else 1
        pool = ["x", "w"] + [f"t{j}" for j in range(i)]
        ins = ["x" if i == 0 else f"t{i - 1}"] + [draw(st.sampled_from(pool)) for _ in range(k - 1)]  # a chain
        attrs = {a: draw(_ATTRS[a]) for a in draw(st.sets(st.sampled_from(sorted(_ATTRS)), max_size=3))}
        nodes.append(oh.make_node(op, ins, [f"t{i}"], name=f"n{i}", **attrs))
    why = None
    if cycle:  # node 0 also reads the last node's output: 0 → … → n-1 → 0
        nodes[0].input.append(f"t{n - 1}")
        why = "cycle"
    if dangling:
        nodes[draw(st.integers(0, n - 1))].input.append("nowhere")
        why = why or "dangling"
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    g = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                      [oh.make_tensor_value_info(f"t{n - 1}", TensorProto.FLOAT, None)], [w])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", draw(st.sampled_from([7, 13, 17, 21])))])
    return model.SerializeToString(), why


@FAST
@given(graph=_graphs())
def test_onnx_graphs_with_cycles_dangling_inputs_and_absurd_attributes(work, graph):
    data, why = graph
    result, msg = _outcome("onnx", data, work)
    if why is not None:
        assert result != "ok", f"a graph with a {why} input was accepted"
        assert "case.onnx" in msg


def test_onnx_cycle_and_dangling_input_are_named(work):
    """The two graph defects on an otherwise valid graph: each refused with its own message."""
    from onnx import TensorProto, helper as oh
    x = [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])]
    y = [oh.make_tensor_value_info("b", TensorProto.FLOAT, None)]
    for nodes, expect in [
        ([oh.make_node("Add", ["x", "b"], ["a"], name="p"), oh.make_node("Relu", ["a"], ["b"], name="q")],
         r"not a DAG.*'p' \(Add\).*'q' \(Relu\)"),
        ([oh.make_node("Add", ["x", "ghost"], ["a"], name="p"), oh.make_node("Relu", ["a"], ["b"], name="q")],
         r"node 'p' \(Add\) reads tensor 'ghost'"),
    ]:
        model = oh.make_model(oh.make_graph(nodes, "g", x, y), opset_imports=[oh.make_opsetid("", 17)])
        result, msg = _outcome("onnx", model.SerializeToString(), work)
        assert result == "ModelFileError" and re.search(expect, msg), msg


# --- Keras configs ----------------------------------------------------------------------------------------
def _keras_parts() -> tuple[dict, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(_seeds()["keras"][0]))
    return json.loads(zf.read("config.json")), zf.read("model.weights.h5")


def _keras_file(config, weights: bytes) -> bytes:
    return _zip({"metadata.json": b'{"keras_version": "3.15.1"}', "config.json": json.dumps(config).encode(),
                 "model.weights.h5": weights})


def _layer(class_name: str, module: str = "keras.layers", **config) -> dict:
    return {"module": module, "class_name": class_name, "config": {"name": f"x_{class_name}", **config},
            "registered_name": None}


# Ints stay small (≤ 2**16) or impossible to allocate (2**63): no example may make the test machine
# allocate gigabytes for a layer size drawn in between.
_keras_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**16, 2**16), st.just(2**63),
                                      st.floats(), st.text(max_size=8), st.just("same\0")),
                            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                            max_leaves=8)
_LAMBDA = _layer("Lambda", function={"class_name": "__lambda__", "config": {
    "code": "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXhyAgAAAHICAAAA+gE8bGFtYmRhPg==",
    "defaults": None, "closure": None}})
_BAD_LAYERS = {
    "unknown": st.builds(lambda c: _layer(c), st.sampled_from(["Frobnicate", "Conv9D", "", "__init__", "Dense2"])),
    "lambda": st.just(_LAMBDA),
    "foreign": st.builds(lambda m, c: _layer(c, module=m), st.sampled_from(["os", "builtins", "subprocess",
                                                                           "keras.src.utils", "evil"]),
                         st.sampled_from(["system", "eval", "Dense", "Popen"])),
    "registered": st.just({**_layer("Dense", units=2), "registered_name": "my_package>MyDense"}),
}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["unknown", "lambda", "foreign", "registered", "nested", "absurd"]), data=st.data())
def test_keras_configs_with_unknown_classes_lambdas_and_deep_nesting(work, kind, data):
    config, weights = _keras_parts()
    layers = config["config"]["layers"]
    if kind in _BAD_LAYERS:
        layers.insert(data.draw(st.integers(1, len(layers))), data.draw(_BAD_LAYERS[kind]))
    elif kind == "nested":  # the model inside `depth` Sequentials, or a config nested past max_nesting_depth
        depth = data.draw(st.integers(1, 40))
        for i in range(depth):
            config = {"module": "keras", "class_name": "Sequential",
                      "config": {"name": f"s{i}", "layers": [layers[0], config]}}
    else:  # an absurd value in a layer's config
        i = data.draw(st.integers(1, len(layers) - 1))
        key = data.draw(st.sampled_from(sorted(layers[i]["config"]) + ["kernel_size", "units", "padding"]))
        layers[i]["config"][key] = data.draw(_keras_value)
    result, msg = _outcome("keras", _keras_file(config, weights), work)
    if kind == "nested":  # refused: too deep, or the weights are filed under the inner model's path
        assert result != "ok"
        too_deep = limits.json_depth(json.dumps(config)) > targets.FUZZ_LIMITS["max_nesting_depth"]
        assert too_deep == ("max_nesting_depth" in msg), msg
    elif kind != "absurd":
        assert result != "ok", f"a Keras config with a {kind} layer was accepted"
        if kind == "lambda":
            assert "Lambda" in msg, msg


@pytest.mark.parametrize("layer, key, value", [  # found by the test above
    ("Conv2D", "activation", ["a", "b"]), ("Conv2D", "activation", []), ("Conv2D", "groups", ""),
    ("Conv2D", "groups", None), ("Conv2D", "groups", 0), ("Conv2D", "groups", [-1, -1]),
    ("Conv2D", "strides", 0), ("Conv2D", "kernel_size", True), ("Conv2D", "kernel_size", 2**63),
    ("InputLayer", "batch_shape", float("nan")), ("InputLayer", "batch_shape", "same"),
])
def test_keras_layer_configs_with_wrong_types_are_refused_naming_the_file(work, layer, key, value):
    config, weights = _keras_parts()
    next(lay for lay in config["config"]["layers"] if lay["class_name"] == layer)["config"][key] = value
    result, msg = _outcome("keras", _keras_file(config, weights), work)
    assert result != "ok" and "case.keras" in msg


def test_the_keras_seed_loads(work):
    """The unmutated file loads: the refusals above are the mutations', not every file's."""
    config, weights = _keras_parts()
    assert _outcome("keras", _keras_file(config, weights), work) == ("ok", "")


# --- each limit: which one was hit, and how to raise it ------------------------------------------------
def _says_how(msg: str, name: str) -> None:
    assert name in msg, msg
    assert f"featuremaps.limits.override({name}=...)" in msg, msg
    assert f"FEATUREMAPS_{name.upper()}" in msg, msg


def _raises(call, name: str):
    with pytest.raises(ValueError) as info:
        call()
    _says_how(str(info.value), name)
    return str(info.value)


def _idx_file(tmp_path: Path, shape: tuple, dtype="u1", compress=False) -> Path:
    from featuremaps.data import write_idx
    return write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), np.ones(shape, dtype), compress=compress)


def test_max_tensor_bytes(tmp_path, monkeypatch):
    from featuremaps.data import read_idx
    p = _idx_file(tmp_path, (10, 10), "f8")  # 800 bytes
    with limits.override(max_tensor_bytes=799):
        assert "a.idx" in _raises(lambda: read_idx(p), "max_tensor_bytes")
    with limits.override(max_tensor_bytes=800):
        assert read_idx(p).shape == (10, 10)
    monkeypatch.setenv("FEATUREMAPS_MAX_TENSOR_BYTES", "799")
    _raises(lambda: read_idx(p), "max_tensor_bytes")
    monkeypatch.setenv("FEATUREMAPS_MAX_TENSOR_BYTES", "800")
    assert read_idx(p).shape == (10, 10)


def test_max_tensor_bytes_in_a_checkpoint_and_a_keras_file(tmp_path):
    import featuremaps
    from featuremaps.checkpoint import read_checkpoint
    ckpt, keras_file = tmp_path / "c.npz", tmp_path / "m.keras"
    ckpt.write_bytes(_seeds()["checkpoint"][0])
    keras_file.write_bytes(_seeds()["keras"][0])
    with limits.override(max_tensor_bytes=100):  # the 384-byte Dense weight, the 19 KB file
        assert "c.npz" in _raises(lambda: read_checkpoint(ckpt), "max_tensor_bytes")
        assert "m.keras" in _raises(lambda: featuremaps.keras.load(keras_file), "max_tensor_bytes")
    assert read_checkpoint(ckpt).epoch == 1


def test_max_tensor_elements(tmp_path):
    from featuremaps.data import read_idx
    p = _idx_file(tmp_path, (4, 5))
    with limits.override(max_tensor_elements=19):
        _raises(lambda: read_idx(p), "max_tensor_elements")
    with limits.override(max_tensor_elements=20):
        assert read_idx(p).shape == (4, 5)
    empty = tmp_path / "e.idx"  # no elements, but dims numpy cannot represent (a fuzzer's find)
    empty.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1))
    _raises(lambda: read_idx(empty), "max_tensor_elements")


def test_max_decompressed_bytes(tmp_path):
    from featuremaps.checkpoint import read_checkpoint
    from featuremaps.data import read_idx
    bomb = _idx_file(tmp_path, (1 << 20,), compress=True)  # 1 MiB of ones, ~1 KiB gzipped
    assert bomb.stat().st_size < 1 << 12
    with limits.override(max_decompressed_bytes=1 << 16):
        _raises(lambda: read_idx(bomb), "max_decompressed_bytes")
    assert read_idx(bomb).size == 1 << 20
    members = _ckpt_members()
    members["model.0.weight.npy"] = _npy(np.zeros((1 << 18,), np.float32))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    (tmp_path / "z.npz").write_bytes(zipped.getvalue())
    with limits.override(max_decompressed_bytes=1 << 16):
        _raises(lambda: read_checkpoint(tmp_path / "z.npz"), "max_decompressed_bytes")


def test_max_graph_nodes(tmp_path):
    import featuremaps
    from onnx import TensorProto, helper as oh
    chain = [oh.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(20)]
    g = oh.make_graph(chain, "g", [oh.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 1, 6, 6])],
                      [oh.make_tensor_value_info("t20", TensorProto.FLOAT, None)])
    p = tmp_path / "chain.onnx"
    p.write_bytes(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)]).SerializeToString())
    with limits.override(max_graph_nodes=19):
        assert "chain.onnx" in _raises(lambda: featuremaps.onnx.run(p, {"t0": np.zeros((1, 1, 6, 6), np.float32)}),
                                       "max_graph_nodes")
    with limits.override(max_graph_nodes=20):
        assert featuremaps.onnx.run(p, {"t0": np.ones((1, 1, 6, 6), np.float32)})[0].shape == (1, 1, 6, 6)
    k = tmp_path / "m.keras"
    k.write_bytes(_seeds()["keras"][0])  # 5 layers
    with limits.override(max_graph_nodes=4):
        assert "m.keras" in _raises(lambda: featuremaps.keras.load(k), "max_graph_nodes")
    with limits.override(max_graph_nodes=5):
        featuremaps.keras.load(k)


def test_max_nesting_depth(tmp_path):
    import featuremaps
    config, weights = _keras_parts()
    deep = _keras_file({**config, "extra": json.loads("[" * 70 + "]" * 70)}, weights)
    (tmp_path / "deep.keras").write_bytes(deep)
    assert "deep.keras" in _raises(lambda: featuremaps.keras.load(tmp_path / "deep.keras"), "max_nesting_depth")
    with limits.override(max_nesting_depth=80):
        featuremaps.keras.load(tmp_path / "deep.keras")
    members = _ckpt_members()
    meta = {**_meta(), "notes": json.loads("[" * 100 + "]" * 100)}
    members["meta.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    (tmp_path / "deep.npz").write_bytes(_zip(members))
    from featuremaps.checkpoint import read_checkpoint
    assert "deep.npz" in _raises(lambda: read_checkpoint(tmp_path / "deep.npz"), "max_nesting_depth")
    with limits.override(max_nesting_depth=200):
        assert read_checkpoint(tmp_path / "deep.npz").meta["notes"] == json.loads("[" * 100 + "]" * 100)


def test_limit_values_are_checked():
    with pytest.raises(TypeError, match="unknown limit.*max_bogus"):
        with limits.override(max_bogus=1):
            pass
    with pytest.raises(ValueError, match="must be a positive integer; received 0"):
        with limits.override(max_graph_nodes=0):
            pass
    with limits.override(max_graph_nodes=7):
        with limits.override(max_nesting_depth=3):
            assert limits.get("max_graph_nodes") == 7 and limits.get("max_nesting_depth") == 3
        assert limits.get("max_nesting_depth") == limits.DEFAULTS["max_nesting_depth"]
