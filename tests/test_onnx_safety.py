"""featuremaps.onnx.run on crafted bad files: each gives one clear error naming the node or file,
before anything is executed or allocated."""
from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper as oh, numpy_helper  # noqa: E402

from featuremaps.onnx import ONNXError, prepare, run, supported_ops  # noqa: E402

X = np.zeros((1, 2, 4, 4), np.float32)


def model(nodes, inits=(), outputs=("y",), opset=17, inputs=None):
    ins = [oh.make_tensor_value_info("x", TensorProto.FLOAT, X.shape)] if inputs is None else inputs
    outs = [oh.make_empty_tensor_value_info(o) for o in outputs]
    return oh.make_model(oh.make_graph(nodes, "g", ins, outs, list(inits)),
                         opset_imports=[oh.make_opsetid("", opset)])


def bare_tensor(name, dims):
    """A TensorProto with dims and no data (onnx.helper.make_tensor insists on the values)."""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(dims)
    return t


def relu_model():
    return model([oh.make_node("Relu", ["x"], ["y"], name="r")])


def external_weight_model(location: str, data: bytes = b"\0" * 16 * 4):
    w = bare_tensor("w", [2, 2, 2, 2])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return model([oh.make_node("Conv", ["x", "w"], ["y"], name="conv")], [w])


def test_unsupported_ops_are_listed_together_before_running():
    nodes = [oh.make_node("Relu", ["x"], ["a"], name="r"),
             oh.make_node("Erf", ["a"], ["b"], name="erf1"),
             oh.make_node("Erf", ["b"], ["c"], name="erf2"),
             oh.make_node("TopK", ["c", "k"], ["y", "i"], name="top"),
             oh.make_node("MyOp", ["y"], ["z"], name="custom", domain="com.example")]
    m = model(nodes, [numpy_helper.from_array(np.array([1], np.int64), "k")], outputs=("z",))
    with pytest.raises(ONNXError) as e:
        prepare(m)
    msg = str(e.value)
    assert "Erf: nodes 'erf1', 'erf2'" in msg and "TopK: nodes 'top'" in msg
    assert "com.example.MyOp: nodes 'custom'" in msg
    assert "Supported ops" in msg and ", ".join(supported_ops()) in msg
    assert "Relu: nodes" not in msg


def test_an_old_opset_is_refused():
    with pytest.raises(ONNXError, match="opset 6; featuremaps.onnx supports opsets 7"):
        run(model([oh.make_node("Relu", ["x"], ["y"])], opset=6), {"x": X})


def test_truncated_and_malformed_files(tmp_path):
    data = model([oh.make_node("Conv", ["x", "w"], ["y"])],
                 [numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")]).SerializeToString()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) - 40])
    with pytest.raises(ONNXError, match=r"truncated\.onnx.*(not a valid ONNX file|holds \d+ bytes)"):
        run(bad, {"x": X})
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe not protobuf at all \x00\x01")
    with pytest.raises(ONNXError, match=r"junk\.onnx' is not a valid ONNX file"):
        run(junk, {"x": X})
    with pytest.raises(ONNXError, match="not found"):
        run(tmp_path / "missing.onnx", {"x": X})


def test_a_truncated_raw_tensor_names_the_initializer():
    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    w.raw_data = w.raw_data[:-8]
    with pytest.raises(ONNXError, match=r"initializer 'w': holds 136 bytes .* need 144"):
        run(model([oh.make_node("Conv", ["x", "w"], ["y"])], [w]), {"x": X})


def test_a_cycle_names_its_nodes():
    nodes = [oh.make_node("Relu", ["x"], ["a"], name="start"),
             oh.make_node("Add", ["a", "c"], ["b"], name="loop_add"),
             oh.make_node("Relu", ["b"], ["c"], name="loop_relu"),
             oh.make_node("Identity", ["c"], ["y"], name="out")]
    with pytest.raises(ONNXError, match=r"not a DAG.*'loop_add' \(Add\), node 'loop_relu' \(Relu\), node 'out'"):
        run(model(nodes), {"x": X})


def test_a_missing_initializer_names_the_node_and_tensor():
    with pytest.raises(ONNXError, match=r"node 'conv' \(Conv\) reads tensor 'weights'.*missing initializer"):
        run(model([oh.make_node("Conv", ["x", "weights"], ["y"], name="conv")]), {"x": X})


def test_mismatched_shapes_name_the_node():
    nodes = [oh.make_node("Relu", ["x"], ["a"]), oh.make_node("Reshape", ["a", "s"], ["y"], name="reshape")]
    m = model(nodes, [numpy_helper.from_array(np.array([3, -1], np.int64), "s")])
    with pytest.raises(ONNXError, match=r"node 'reshape' \(Reshape\) failed.*cannot reshape .* \(1, 2, 4, 4\)"):
        run(m, {"x": X})
    m = model([oh.make_node("Add", ["x", "k"], ["y"], name="add")],
              [numpy_helper.from_array(np.ones(3, np.float32), "k")])
    with pytest.raises(ONNXError, match=r"node 'add' \(Add\) failed on inputs of shape \(1, 2, 4, 4\), \(3,\)"):
        run(m, {"x": X})


@pytest.mark.parametrize("location,reason", [
    ("../outside.bin", "contains '..'"),
    ("sub/../../outside.bin", "contains '..'"),
    ("/etc/passwd", "is an absolute path"),
])
def test_external_data_outside_the_directory_is_refused(tmp_path, location, reason):
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    path = d / "m.onnx"
    path.write_bytes(external_weight_model(location).SerializeToString())
    with pytest.raises(ONNXError, match=rf"initializer 'w': external data location .*{reason}"):
        run(path, {"x": X})


def test_external_data_through_a_symlink_leaving_the_directory_is_refused(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    os.symlink(tmp_path / "secret.bin", d / "w.bin")
    path = d / "m.onnx"
    path.write_bytes(external_weight_model("w.bin").SerializeToString())
    with pytest.raises(ONNXError, match=r"initializer 'w': .*'w.bin' resolves to .*secret.bin.*outside"):
        run(path, {"x": X})


def test_external_data_inside_the_directory_is_read(tmp_path):
    w = np.random.default_rng(0).standard_normal((2, 2, 2, 2)).astype(np.float32)
    path = tmp_path / "m.onnx"
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    path.write_bytes(external_weight_model("w.bin", w.tobytes()).SerializeToString())
    inline = model([oh.make_node("Conv", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")])
    x = np.random.default_rng(1).standard_normal(X.shape).astype(np.float32)
    np.testing.assert_array_equal(run(path, {"x": x})[0], run(inline, {"x": x})[0])  # same path, same bytes
    with pytest.raises(ONNXError, match="given as an object, not a path"):
        run(external_weight_model("w.bin", w.tobytes()), {"x": x})


def test_external_data_length_mismatch_is_refused(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    path = tmp_path / "m.onnx"
    path.write_bytes(external_weight_model("w.bin").SerializeToString())
    with pytest.raises(ONNXError, match=r"initializer 'w': external data needs 64 bytes .* file has 8 bytes"):
        run(path, {"x": X})


def test_huge_initializer_dims_are_refused_before_allocating():
    w = bare_tensor("big", [1 << 20, 1 << 20])  # 4 TiB declared, no data
    with pytest.raises(ONNXError, match=r"initializer 'big' would need 4.1e\+03 GiB, more than the memory budget "
                                        r"of 4 GiB"):
        run(model([oh.make_node("Add", ["x", "big"], ["y"])], [w]), {"x": X})


def test_huge_constant_of_shape_is_refused_before_allocating():
    shape = numpy_helper.from_array(np.array([1 << 16, 1 << 16, 1 << 4], np.int64), "s")
    nodes = [oh.make_node("ConstantOfShape", ["s"], ["y"], name="fill")]
    with pytest.raises(ONNXError, match=r"ConstantOfShape node 'fill' with shape \[65536, 65536, 16\] would need "
                                        r"256 GiB, more than the memory budget of 4 GiB"):
        run(model(nodes, [shape]), {"x": X})
    small = numpy_helper.from_array(np.array([64, 64], np.int64), "s")  # 16 KiB: over a 1 KiB budget
    with pytest.raises(ONNXError, match=r"fill.*16,384 bytes, more than the memory budget of 1,024 bytes"):
        run(model(nodes, [small]), {"x": X}, max_bytes=1024)
    assert run(model(nodes, [small]), {"x": X}, max_bytes=1 << 14)[0].shape == (64, 64)


def test_the_initializers_together_must_fit_the_budget():
    inits = [numpy_helper.from_array(np.ones(200, np.float32), n) for n in ("a", "b")]
    nodes = [oh.make_node("Sum", ["a", "b"], ["y"])]
    with pytest.raises(ONNXError, match=r"initializers need more than the memory budget of 1,000 bytes .*'b'"):
        run(model(nodes, inits), {"x": X}, max_bytes=1000)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_bytes must be a positive number of bytes; received 0"):
        run(relu_model(), {"x": X}, max_bytes=0)
    with pytest.raises(TypeError, match="feeds must be a dict"):
        run(relu_model(), [X])
    with pytest.raises(TypeError, match="model_or_path must be a path, bytes or an onnx.ModelProto; received int"):
        run(3, {"x": X})


def test_subgraph_attributes_are_refused():
    branch = oh.make_graph([oh.make_node("Identity", ["x"], ["z"])], "b", [], [oh.make_empty_tensor_value_info("z")])
    node = oh.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch, name="if")
    with pytest.raises(ONNXError, match=r"If: nodes 'if'"):
        prepare(model([node], [numpy_helper.from_array(np.array(True), "c")]))


def test_nothing_is_unpickled():
    """A model's bytes go to protobuf only: a pickle payload is just a malformed file."""
    import pickle
    with pytest.raises(ONNXError, match="not a valid ONNX file"):
        run(pickle.dumps({"payload": 1}), {"x": X})


@pytest.mark.parametrize("node,inits", [
    (oh.make_node("Resize", ["x", "", "", "sz"], ["y"], name="grow"),
     {"sz": np.array([1, 2, 1 << 18, 1 << 18], np.int64)}),  # 512 GiB of float32
    (oh.make_node("Pad", ["x", "p"], ["y"], name="grow"),
     {"p": np.array([0, 0, 1 << 18, 1 << 18, 0, 0, 0, 0], np.int64)}),
])
def test_sizes_read_from_the_graph_are_checked_against_the_budget(node, inits):
    inits = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    with pytest.raises(ONNXError, match=rf"{node.op_type} node 'grow' with output .* more than the memory budget"):
        run(model([node], inits), {"x": X})


def test_every_truncation_of_a_file_gives_a_clear_error(tmp_path):
    """Cut a small model at every byte: each prefix fails with ONNXError, never a deep traceback."""
    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    data = model([oh.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                  oh.make_node("Relu", ["c"], ["y"], name="relu")], [w]).SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(ONNXError):
            run(path, {"x": X})
    path.write_bytes(data)
    assert run(path, {"x": X})[0].shape == (1, 2, 2, 2)
