"""`explain` on graph models: the explained layer reads its node's input, the walk after it stops at
forks and merges, and Add/Average/Concatenate are decomposed. Checked against the engine (within
the explanation's derived tolerance) and against the same network written in torch (float64)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from featuremaps import nn
from featuremaps.inspect import explain
from featuremaps.tensor import as_array
from tests.oracles import assert_sum_close, hwio_to_oihw, nhwc_to_nchw


def _randomise(model, seed=0):
    """Random biases and BatchNorm statistics, so that every term of a sum matters."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data[...] = rng.uniform(-0.5, 0.5, p.data.shape)
    for _, m in model.named_modules():
        if "running_var" in m._buffers:
            m.running_mean = rng.uniform(-0.5, 0.5, m.running_mean.shape)
            m.running_var = rng.uniform(0.5, 2.0, m.running_var.shape)
    return model


def residual_block(dtype=np.float64):
    """x → c1 → bn1 → r1 → c2 ┐
       x → sc (1×1) ─────────┴ add → r2 → mp → gap → fc"""
    rng = np.random.default_rng(1)
    g = nn.Graph({"x": (8, 8, 3)}, [
        ("c1", nn.Conv2D(3, 4, 3, padding=1, rng=rng), "x"),
        ("bn1", nn.BatchNorm2D(4), "c1"),
        ("r1", nn.ReLU(), "bn1"),
        ("c2", nn.Conv2D(4, 4, 3, padding=1, rng=rng), "r1"),
        ("sc", nn.Conv2D(3, 4, 1, rng=rng), "x"),
        ("add", nn.Add(), ["c2", "sc"]),
        ("r2", nn.ReLU(), "add"),
        ("mp", nn.MaxPool2D(2), "r2"),
        ("gap", nn.GlobalAvgPool2D(), "mp"),
        ("fc", nn.Dense(4, 3, rng=rng), "gap")], "fc")
    return _randomise(g).astype(dtype)


def torch_values(g, x) -> dict:
    """The residual block's values recomputed in torch float64, NHWC per example."""
    t = {"x": nhwc_to_nchw(x[None].astype(np.float64)).detach()}

    def conv(name, inp, pad):
        lay = g[name]
        return tF.conv2d(inp, hwio_to_oihw(lay.weight.data.astype(np.float64)).detach(),
                         torch.from_numpy(lay.bias.data.astype(np.float64)), padding=pad)

    bn = g["bn1"]
    t["c1"] = conv("c1", t["x"], 1)
    t["bn1"] = tF.batch_norm(t["c1"], torch.from_numpy(bn.running_mean.astype(np.float64)),
                             torch.from_numpy(bn.running_var.astype(np.float64)),
                             torch.from_numpy(bn.weight.data.astype(np.float64)),
                             torch.from_numpy(bn.bias.data.astype(np.float64)), training=False, eps=bn.eps)
    t["r1"] = torch.relu(t["bn1"])
    t["c2"] = conv("c2", t["r1"], 1)
    t["sc"] = conv("sc", t["x"], 0)
    t["add"] = t["c2"] + t["sc"]
    t["r2"] = torch.relu(t["add"])
    t["mp"] = tF.max_pool2d(t["r2"], 2)
    return {k: v.detach().numpy()[0].transpose(1, 2, 0) for k, v in t.items()}  # (h, w, c)


def _abs_sum(e) -> float:
    return sum(abs(t.partial_sum) for t in e.terms) + abs(e.bias or 0.0)


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((8, 8, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shortcut_conv_reads_the_block_input_and_stops_at_the_add(dtype):
    g, x = residual_block(dtype), _x().astype(dtype)
    e = explain(g, x, "sc", 2, (3, 5))
    assert e.input_layer == "x" and e.input_shape == (8, 8, 3) and len(e.terms) == 3
    assert [t.window[0, 0] for t in e.terms] == [x[3, 5, c] for c in range(3)]  # the block input itself
    assert e.agrees and e.difference <= e.tolerance
    ref = torch_values(g, x)
    assert_sum_close(e.pre_activation, ref["sc"][3, 5, 2], _abs_sum(e), dtype, n_terms=4, safety=4)
    assert e.after == [] and e.stopped == "'sc' enters the merge 'add' (Add) with 'c2'"
    assert "followed no further: 'sc' enters the merge 'add'" in e.to_text()
    assert e.to_dict()["stopped"] == e.stopped


def test_second_conv_reads_its_own_input_not_the_node_listed_before_it():
    g, x = residual_block(), _x(1)
    e = explain(g, x, "c2", 1, (0, 7))
    assert e.input_layer == "r1" and len(e.terms) == 4
    ref = torch_values(g, x)
    for t in e.terms:  # each window holds r1's map (0 on the padding)
        r1 = np.pad(ref["r1"][:, :, t.input_map], 1)[t.rows + 1][:, t.cols + 1]
        assert_sum_close(t.window, r1, np.abs(r1) + 1, np.float64, n_terms=40, safety=4)
    assert_sum_close(e.pre_activation, ref["c2"][0, 7, 1], _abs_sum(e), np.float64, n_terms=80, safety=4)
    assert e.agrees


def test_add_is_the_sum_of_its_inputs_and_is_followed_through_relu_and_the_pool():
    g, x = residual_block(), _x(2)
    ref = torch_values(g, x)
    # a unit whose add value is positive, so the ReLU passes it
    r, c, o = next((r, c, o) for r in range(8) for c in range(8) for o in range(4) if ref["add"][r, c, o] > 0.1)
    e = explain(g, x, "add", o, (r, c))
    assert e.role == "merge" and e.decomposition == "sum" and e.input_layer == "c2, sc"
    assert [t.label for t in e.terms] == [f"c2 map {o}", f"sc map {o}"]
    assert_sum_close([t.value for t in e.terms], [ref["c2"][r, c, o], ref["sc"][r, c, o]], 10.0, np.float64, 100)
    assert_sum_close(e.pre_activation, ref["add"][r, c, o], _abs_sum(e), np.float64, n_terms=100, safety=4)
    assert e.agrees
    relu, pool = e.after
    assert relu.layer == "r2" and relu.role == "activation"
    assert_sum_close(relu.value, ref["r2"][r, c, o], abs(relu.value), np.float64, 100)
    assert pool.layer == "mp" and pool.unit == (r // 2, c // 2, o)
    assert_sum_close(pool.value, ref["mp"][r // 2, c // 2, o], abs(pool.value), np.float64, 100)
    assert e.stopped is None  # the pool is the one pool; the global pool after it is not followed
    assert "Σ_k x_k" in e.formula() and e.to_text().count("map") >= 2
    json.dumps(e.to_dict(), allow_nan=False)
    assert 'data-input-map="1"' in e._repr_html_()


def _dense_block():
    rng = np.random.default_rng(3)
    g = nn.Graph({"x": (5, 5, 2)}, [
        ("a", nn.Conv2D(2, 3, 3, padding=1, rng=rng), "x"),
        ("b", nn.Conv2D(3, 2, 3, padding=1, rng=rng), "a"),
        ("cat", nn.Concatenate(), ["a", "b"]),
        ("avg", nn.Average(), ["a", "a2"]),
        ("a2", nn.Tanh(), "a"),
        ("mul", nn.Multiply(), ["a", "a2"]),
        ("mx", nn.Maximum(), ["a", "a2"])], ["cat", "avg", "mul", "mx"])
    return _randomise(g).astype(np.float64)


def test_concatenate_names_the_input_and_the_map():
    g = _dense_block()
    x = np.random.default_rng(0).standard_normal((5, 5, 2))
    env = {k: np.asarray(as_array(v))[0] for k, v in g.trace(x[None]).items()}
    for o, (src, m) in enumerate([("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]):
        e = explain(g, x, "cat", o, (1, 4))
        assert e.decomposition == "select" and len(e.terms) == 1
        assert e.terms[0].label == f"{src} map {m}" and e.terms[0].input_map == ["a", "b"].index(src)
        assert_sum_close(e.pre_activation, env[src][1, 4, m], abs(env[src][1, 4, m]), np.float64, 1)
        assert e.agrees and e.formula().endswith(f"= {src} map {m} = {e.terms[0].value:.6g}")


def test_average_is_the_mean_and_other_merges_are_refused_with_the_kinds_named():
    g = _dense_block()
    x = np.random.default_rng(4).standard_normal((5, 5, 2))
    env = {k: np.asarray(as_array(v))[0] for k, v in g.trace(x[None]).items()}
    e = explain(g, x, "avg", 2, (3, 3))
    assert e.decomposition == "mean" and [t.weight for t in e.terms] == [0.5, 0.5]
    want = (env["a"][3, 3, 2] + env["a2"][3, 3, 2]) / 2
    assert_sum_close(e.pre_activation, want, abs(env["a"][3, 3, 2]) + abs(env["a2"][3, 3, 2]), np.float64, 2)
    assert e.agrees and "(1/2) Σ_k x_k" in e.formula()
    for name, kind in [("mul", "Multiply"), ("mx", "Maximum")]:
        with pytest.raises(ValueError) as info:
            explain(g, x, name, 0, (0, 0))
        msg = str(info.value)
        assert f"cannot explain layer {name!r} of kind {kind}" in msg
        assert "Conv2D" in msg and "(Add, Average, Concatenate)" in msg


def test_a_fork_stops_the_walk_and_says_so():
    g = _dense_block()
    x = np.random.default_rng(5).standard_normal((5, 5, 2))
    e = explain(g, x, "a", 0, (2, 2))
    assert e.stopped == "'a' feeds 6 nodes (b, cat, a2, avg, mul, mx)" and e.after == []
    with pytest.raises(ValueError, match="'a2' is element-wise: explain the layer before it \\('a'\\)"):
        explain(g, x, "a2", 0, (2, 2))


def test_a_chain_graph_explains_exactly_as_the_sequential():
    rng = np.random.default_rng(6)
    layers = [("c1", nn.Conv2D(1, 3, 3, rng=rng)), ("t1", nn.Tanh()), ("p1", nn.AvgPool2D(2)),
              ("fl", nn.Flatten()), ("fc", nn.Dense(27, 4, rng=rng))]
    seq = _randomise(nn.Sequential(layers, input_shape=(8, 8, 1)))
    graph = nn.Graph({"input": (8, 8, 1)}, [(n, lay, prev) for (n, lay), prev in
                                            zip(layers, ["input", "c1", "t1", "p1", "fl"])], "fc")
    x = np.random.default_rng(7).random((8, 8, 1), dtype=np.float32)
    for name, o, pos in [("c1", 2, (3, 4)), ("p1", 1, (1, 2)), ("fc", 3, None)]:
        a, b = explain(seq, x, name, o, pos).to_dict(), explain(graph, x, name, o, pos).to_dict()
        assert json.dumps(a) == json.dumps(b)  # one code path, the same numbers bit for bit
    assert explain(seq, x, "c1", 2, (3, 4)).stopped is None
    assert explain(seq, x, "fc", 3).terms[0].label == "(0, 0, 0)"  # the flatten's (h, w, c) labels


def test_a_graph_with_two_inputs_takes_a_dict():
    rng = np.random.default_rng(8)
    g = nn.Graph({"a": (4, 4, 2), "b": (4, 4, 2)}, [
        ("ca", nn.Conv2D(2, 2, 1, rng=rng), "a"), ("s", nn.Add(), ["ca", "b"])], "s").astype(np.float64)
    xa, xb = rng.standard_normal((4, 4, 2)), rng.standard_normal((4, 4, 2))
    e = explain(g, {"a": xa, "b": xb}, "s", 1, (2, 3))
    assert e.terms[1].value == xb[2, 3, 1] and e.agrees  # graph input b, by name
    e = explain(g, {"a": xa, "b": xb}, "ca", 0, (0, 0))
    assert e.input_layer == "a" and [t.window[0, 0] for t in e.terms] == list(xa[0, 0])
    with pytest.raises(ValueError, match="this graph has inputs \\['a', 'b'\\]"):
        explain(g, xa, "ca", 0, (0, 0))
