"""nn.Graph: construction errors, forward and gradients against torch (same weights, HWIO → OIHW),
random DAGs against a naive evaluator, config/state/checkpoint round trips, fit and exact resume.

Tolerances against torch are derived from the sums involved (tests/oracles.py): torch runs the same
network on |x| and |weights| with the activations replaced by the identity (|tanh(v)|, |relu(v)| ≤
|v|), which bounds Σ|terms| of every sum along the way, as check_op's scale="sum" does for one op.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings, strategies as st

from featuremaps import Tensor, nn, optim, schedules, train
from featuremaps import checkpoint as ckpt
from featuremaps.nn.graph import input_names, model_nodes
from featuremaps.tensor import as_array, no_grad
from tests.oracles import assert_sum_close, hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, torch_grads
from tests.test_train import Recorder, assert_same_weights, same_records, tiny_data


# --- construction errors ---------------------------------------------------------------------------
def _relu(name, src):
    return (name, nn.ReLU(), src)


@pytest.mark.parametrize("nodes, outputs, error, message", [
    ([_relu("a", "y")], "a", ValueError, r"node 'a' reads \['y'\], which is neither a graph input \(\['x'\]\)"),
    ([_relu("a", "b"), _relu("b", "a")], "a", ValueError, r"cycle a → b → a; a graph model must be acyclic"),
    ([_relu("a", "x"), _relu("a", "x")], "a", ValueError, r"received 'a' \(repeated\)"),
    ([_relu("x", "x")], "x", ValueError, r"received 'x' \(repeated\)"),
    ([_relu("a.b", "x")], "a.b", ValueError, r"received 'a.b' \(contains '.'\)"),
    ([("m", nn.Add(), ["x"])], "m", ValueError, r"node 'm' \(Add\) takes 2 or more inputs \(a merge layer\); "
                                                r"received 1: \['x'\]"),
    ([("c", nn.Conv2D(1, 1, 3), ["x", "x"])], "c", ValueError,
     r"node 'c' \(Conv2D\) takes exactly 1 input; received 2"),
    ([_relu("a", "x")], "zz", ValueError, r"outputs must name distinct nodes or inputs; received 'zz'; "
                                          r"names are \['a', 'x'\]"),
    ([_relu("a", "x")], [], ValueError, r"outputs must name distinct nodes or inputs; received \[\]"),
    ([("f", lambda v: v, "x")], "f", TypeError, r"node 'f': the layer must be a featuremaps Module; "
                                                r"received function"),
    ([("a", "x")], "a", TypeError, r"each node must be \(name, layer, inputs\)"),
])
def test_construction_errors_name_the_problem(nodes, outputs, error, message):
    with pytest.raises(error, match=message):
        nn.Graph({"x": (4, 4, 1)}, nodes, outputs)


def test_one_layer_object_in_two_nodes_is_refused():
    r = nn.ReLU()
    with pytest.raises(ValueError, match="node 'b' uses the same layer object as node 'a'"):
        nn.Graph({"x": (4, 4, 1)}, [("a", r, "x"), ("b", r, "a")], "b")


def test_bad_inputs_and_shapes_are_refused():
    with pytest.raises(ValueError, match=r"per-example shape .* received \(0, 4, 1\)"):
        nn.Graph({"x": (0, 4, 1)}, [_relu("a", "x")], "a")
    with pytest.raises(ValueError, match="inputs must name at least one input"):
        nn.Graph([], [], "a")
    g = nn.Graph({"x": (4, 4, 1)}, [("c", nn.Conv2D(2, 1, 3), "x")], "c")
    with pytest.raises(nn.ShapeError, match=r"layer 'c' \(Conv2D\): got input shape \(4, 4, 1\)"):
        g.node_shapes()
    with pytest.raises(ValueError, match=r"takes 1 input \['x'\] .*; received 2"):
        g(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 4, 4, 1), np.float32))
    two = nn.Graph(["a", "b"], [("s", nn.Add(), ["a", "b"])], "s")
    with pytest.raises(ValueError, match=r"inputs are \['a', 'b'\]; missing \['b'\], unknown \['c'\]"):
        two({"a": np.zeros((1, 2)), "c": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"no shape for inputs \['a', 'b'\]"):
        two.node_shapes()


# --- forward against torch -------------------------------------------------------------------------
def _run(g, *xs):
    """The graph's output(s) as ndarrays (no tape)."""
    with no_grad():
        out = g(*xs)
    return tuple(as_array(o) for o in out) if isinstance(out, tuple) else as_array(out)


def _t(a):
    return torch.tensor(np.asarray(a, np.float64))


def _w(conv, absolute):
    w, b = hwio_to_oihw(np.asarray(conv.weight.data, np.float64)), _t(conv.bias.data)
    return (w.abs(), b.abs()) if absolute else (w, b)


def _tconv(x, conv, absolute=False):
    w, b = _w(conv, absolute)
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
    return tF.conv2d(x, w, b, stride=conv.stride, padding=(ph, pw), dilation=conv.dilation, groups=conv.groups)


def _tbn(x, bn, absolute=False):
    """Eval-mode BatchNorm as the affine map it is: scale·x + shift (|scale|, |shift| for the bound)."""
    scale = _t(bn.weight.data) / torch.sqrt(_t(bn.running_var) + bn.eps)
    shift = _t(bn.bias.data) - _t(bn.running_mean) * scale
    if absolute:
        scale, shift = scale.abs(), shift.abs()
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _act(fn, absolute):
    return (lambda v: v) if absolute else fn


def _seeded(model, seed=0):
    """Random weights, biases and BatchNorm statistics, so that nothing is at its default."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        p.data = rng.uniform(0.5, 1.5, p.shape).astype(p.dtype) if name.endswith("bn.weight") \
            else rng.standard_normal(p.shape).astype(p.dtype) * 0.5
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2D):
            m.running_mean[:] = rng.standard_normal(m.num_features)
            m.running_var[:] = rng.uniform(0.5, 2.0, m.num_features)
    return model


def residual_block(dtype=np.float32):
    """conv3×3 (stride 2) – BN – ReLU – conv3×3, plus a 1×1 stride-2 projection shortcut; Add; ReLU."""
    g = nn.Graph({"image": (9, 9, 3)}, [
        ("conv1", nn.Conv2D(3, 4, 3, stride=2, padding=1), "image"),
        ("bn", nn.BatchNorm2D(4), "conv1"),
        ("relu1", nn.ReLU(), "bn"),
        ("conv2", nn.Conv2D(4, 4, 3, padding=1), "relu1"),
        ("proj", nn.Conv2D(3, 4, 1, stride=2), "image"),
        ("add", nn.Add(), ["conv2", "proj"]),
        ("out", nn.ReLU(), "add"),
    ], "out")
    return _seeded(g).astype(dtype).eval()


def torch_residual(g, x, absolute=False):
    relu = _act(torch.relu, absolute)
    h = relu(_tbn(_tconv(x, g["conv1"], absolute), g["bn"], absolute))
    return relu(_tconv(h, g["conv2"], absolute) + _tconv(x, g["proj"], absolute))


def concat_block(dtype=np.float32):
    """Inception-like: 1×1, 3×3 and a 3×3 max-pool branch, concatenated on the channels."""
    g = nn.Graph({"image": (7, 8, 3)}, [
        ("b1", nn.Conv2D(3, 2, 1), "image"),
        ("b3", nn.Conv2D(3, 3, 3, padding=1), "image"),
        ("pool", nn.MaxPool2D(3, 1, 1), "image"),
        ("cat", nn.Concatenate(), ["b1", "b3", "pool"]),
        ("mix", nn.Conv2D(8, 4, 1), "cat"),
    ], "mix")
    return _seeded(g, 1).astype(dtype).eval()


def torch_concat(g, x, absolute=False):
    branches = [_tconv(x, g["b1"], absolute), _tconv(x, g["b3"], absolute),
                tF.max_pool2d(x.abs() if absolute else x, 3, 1, 1)]
    return _tconv(torch.cat(branches, dim=1), g["mix"], absolute)


def _check_against_torch(g, torch_fn, x, n_terms, dtype):
    out = _run(g, x)
    ref = nchw_to_nhwc(torch_fn(g, nhwc_to_nchw(np.asarray(x, np.float64))))
    bound = nchw_to_nhwc(torch_fn(g, nhwc_to_nchw(np.abs(np.asarray(x, np.float64))), absolute=True))
    assert out.dtype == dtype and out.shape == ref.shape
    assert_sum_close(out, ref, bound, dtype, n_terms)
    return out, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_residual_block_matches_torch(dtype):
    g = residual_block(dtype)
    x = np.random.default_rng(2).standard_normal((2, 9, 9, 3)).astype(dtype)
    out, ref = _check_against_torch(g, torch_residual, x, n_terms=3 * 9 + 1 + 2 + 4 * 9 + 1 + 3 + 1, dtype=dtype)
    assert out.shape == (2, 5, 5, 4) and (ref > 0).mean() > 0.2  # the block is not dead


def test_concat_block_matches_torch():
    g = concat_block()
    x = np.random.default_rng(3).standard_normal((2, 7, 8, 3)).astype(np.float32)
    out, _ = _check_against_torch(g, torch_concat, x, n_terms=3 * 9 + 1 + 8 + 1, dtype=np.float32)
    assert out.shape == (2, 7, 8, 4)


def two_in_two_out(outputs=("sum", "fc")):
    g = nn.Graph({"a": (6, 6, 2), "b": (6, 6, 3)}, [
        ("ca", nn.Conv2D(2, 4, 3, padding=1), "a"),
        ("cb", nn.Conv2D(3, 4, 3, padding=1), "b"),
        ("sum", nn.Add(), ["ca", "cb"]),
        ("gap", nn.GlobalAvgPool2D(), "cb"),
        ("fc", nn.Dense(4, 5), "gap"),
    ], list(outputs))
    return _seeded(g, 4).eval()


def test_two_inputs_two_outputs_match_torch_in_output_order():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 6, 6, 2)).astype(np.float32), rng.standard_normal((3, 6, 6, 3)).astype(np.float32)
    g = two_in_two_out()
    assert g.input_names == ["a", "b"] and g.output_names == ["sum", "fc"] and g.input_shape is None
    s, fc = _run(g, a, b)
    s2, fc2 = _run(g, {"b": b, "a": a})  # dict feeds, any order: the same path, so the same bits
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(fc, fc2)
    fc3, s3 = _run(two_in_two_out(("fc", "sum")), a, b)  # the tuple follows `outputs`
    np.testing.assert_array_equal(s, s3)
    np.testing.assert_array_equal(fc, fc3)

    def ref(absolute):
        ta, tb = (nhwc_to_nchw(np.abs(v.astype(np.float64)) if absolute else v.astype(np.float64)) for v in (a, b))
        cb = _tconv(tb, g["cb"], absolute)
        w, bias = _t(g["fc"].weight.data), _t(g["fc"].bias.data)
        w, bias = (w.abs(), bias.abs()) if absolute else (w, bias)
        return _tconv(ta, g["ca"], absolute) + cb, cb.mean(dim=(2, 3)) @ w + bias

    (rs, rf), (bs, bf) = ref(False), ref(True)
    assert_sum_close(s, nchw_to_nhwc(rs), nchw_to_nhwc(bs), np.float32, 2 * 9 + 3 * 9 + 3)
    assert_sum_close(fc, rf.detach().numpy(), bf.detach().numpy(), np.float32, 3 * 9 + 36 + 4 + 2)


# --- gradients of the whole graph, float64, against torch -------------------------------------------
def merge_graph():
    """Add, Multiply and Concatenate on one path, all parameters used."""
    g = nn.Graph({"x": (6, 5, 2)}, [
        ("a", nn.Conv2D(2, 3, 3, padding=1), "x"),
        ("a_act", nn.Tanh(), "a"),
        ("b", nn.Conv2D(2, 3, 1), "x"),
        ("add", nn.Add(), ["a_act", "b"]),
        ("c", nn.Conv2D(2, 3, 3, padding=1, dilation=1), "x"),
        ("mul", nn.Multiply(), ["add", "c"]),
        ("cat", nn.Concatenate(), ["mul", "a_act", "x"]),
        ("d", nn.Conv2D(8, 2, 3, stride=2), "cat"),
    ], "d")
    return _seeded(g, 6).astype(np.float64)


def torch_merge(g, x, *params, absolute=False):
    """The same graph in torch from the parameter tensors (in `named_parameters` order)."""
    p = dict(zip([n for n, _ in g.named_parameters()], params))

    def conv(v, name, **kw):
        return tF.conv2d(v, p[f"{name}.weight"], p[f"{name}.bias"], **kw)

    a = _act(torch.tanh, absolute)(conv(x, "a", padding=1))
    mul = (a + conv(x, "b")) * conv(x, "c", padding=1)
    return conv(torch.cat([mul, a, x], dim=1), "d", stride=2)


def test_graph_gradients_of_input_and_every_parameter_match_torch():
    g = merge_graph()
    x = np.random.default_rng(7).standard_normal((2, 6, 5, 2))
    names = [n for n, _ in g.named_parameters()]
    assert len(names) == 8
    xt = Tensor(x, requires_grad=True)
    out = g(xt)
    grad = np.random.default_rng(8).standard_normal(out.shape)
    g.zero_grad()
    out.backward(grad)
    arrays = [x] + [p.data for _, p in g.named_parameters()]
    layouts = ["NHWC"] + ["HWIO" if n.endswith("weight") else None for n in names]
    ref_out, ref_grads = torch_grads(lambda *ts: torch_merge(g, *ts), arrays, layouts, grad, "NHWC")
    b_out, b_grads = torch_grads(lambda *ts: torch_merge(g, *ts, absolute=True), [np.abs(a) for a in arrays],
                                 layouts, np.abs(grad), "NHWC")
    n_terms = 2 * (2 * 9 + 2 + 2 * 9 + 8 * 9 + 6)  # forward and backward along the longest path
    assert_sum_close(out.data, ref_out, b_out, np.float64, n_terms, err_msg="output")
    ours = [xt.grad] + [p.grad for _, p in g.named_parameters()]
    for name, got, want, bound in zip(["x"] + names, ours, ref_grads, b_grads):
        assert got is not None and np.abs(want).max() > 0, name
        assert_sum_close(got, want, bound, np.float64, n_terms, err_msg=f"d{name}")


# --- random DAGs against a naive evaluator ---------------------------------------------------------
@st.composite
def _dags(draw):
    """A random DAG over (H, W, C) values: chains, branches from any earlier value, and merges of
    values of matching shape. Returns (inputs, nodes in creation order, outputs, seed)."""
    shapes = {"x": (draw(st.integers(4, 8)), draw(st.integers(4, 8)), draw(st.integers(1, 3)))}
    nodes = []
    for k in range(draw(st.integers(1, 8))):
        names = list(shapes)
        src = draw(st.sampled_from(names))
        h, w, c = shapes[src]
        kind = draw(st.sampled_from(["conv", "conv", "act", "pool", "add", "mul", "concat"]))
        name = f"n{k}"
        if kind in ("add", "mul", "concat"):
            same = [n for n in names if (shapes[n] if kind != "concat" else shapes[n][:2]) ==
                    (shapes[src] if kind != "concat" else shapes[src][:2])]
            other = draw(st.sampled_from(same))  # may be src itself: a value read twice
            layer = {"add": nn.Add(), "mul": nn.Multiply(), "concat": nn.Concatenate()}[kind]
            nodes.append((name, layer, [src, other]))
            shapes[name] = (h, w, c + shapes[other][2]) if kind == "concat" else (h, w, c)
        elif kind == "conv":
            cout, k_, stride = draw(st.integers(1, 3)), draw(st.sampled_from([1, 3])), draw(st.integers(1, 2))
            nodes.append((name, nn.Conv2D(c, cout, k_, stride=stride, padding="same", rng=k), src))
            shapes[name] = (-(-h // stride), -(-w // stride), cout)
        elif kind == "act" or min(h, w) < 2:  # (a 2×2 pool needs 2×2 maps)
            nodes.append((name, draw(st.sampled_from([nn.Tanh, nn.ReLU, nn.Sigmoid]))(), src))
            shapes[name] = (h, w, c)
        else:
            nodes.append((name, nn.MaxPool2D(2, 2, ceil_mode=True), src))
            shapes[name] = (-(-h // 2), -(-w // 2), c)
    outs = draw(st.lists(st.sampled_from([n for n, _, _ in nodes]), min_size=1, max_size=3, unique=True))
    perm = draw(st.permutations(range(len(nodes))))
    return shapes["x"], nodes, [nodes[i] for i in perm], outs


def _naive(nodes, x):
    """Every value, evaluating `nodes` in the order they were made (each reads only earlier ones)."""
    env = {"x": x}
    for name, layer, ins in nodes:
        env[name] = as_array(layer(*[env[i] for i in ([ins] if isinstance(ins, str) else ins)]))
    return env


@settings(max_examples=40, deadline=None)
@given(_dags())
def test_random_dags_match_a_naive_evaluator(case):
    shape, made, shuffled, outs = case
    g = nn.Graph({"x": shape}, shuffled, outs)
    made_order = [n for n, _, _ in made]
    order = g.names()
    for node in g.nodes():  # a topological order: every node after what it reads
        assert all(i == "x" or order.index(i) < order.index(node.name) for i in node.inputs)
    assert sorted(order) == sorted(made_order)
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    with no_grad():
        env = _naive(made, x)
    got = _run(g, x)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(outs)
    for name, value in zip(outs, got):  # the same layers on the same arrays: the same bits
        np.testing.assert_array_equal(value, env[name], err_msg=name)
    shapes = g.node_shapes()
    with no_grad():
        traced = {k: as_array(v) for k, v in g.trace(x).items()}
    assert list(traced) == ["x"] + order
    for name, value in env.items():
        assert shapes[name] == value.shape[1:], name
        np.testing.assert_array_equal(traced[name], value, err_msg=name)


def test_forward_keeps_an_output_that_a_later_node_reads():
    """'mid' is an output and is read by 'last': freeing memory after its last reader must not drop it."""
    g = nn.Graph({"x": (3, 3, 1)}, [("mid", nn.Tanh(), "x"), ("last", nn.Sigmoid(), "mid"),
                                   ("twice", nn.Add(), ["last", "last"])], ["mid", "twice", "x"])
    x = np.random.default_rng(0).standard_normal((1, 3, 3, 1))
    mid, twice, same_x = _run(g, x)
    np.testing.assert_array_equal(mid, np.tanh(x))
    np.testing.assert_allclose(twice, 2 / (1 + np.exp(-np.tanh(x))), rtol=4 * np.finfo(np.float64).eps)
    np.testing.assert_array_equal(same_x, x)


# --- structure helpers -----------------------------------------------------------------------------
def test_structure_consumers_node_trace_and_repr():
    g = residual_block()
    assert g.names() == ["conv1", "bn", "relu1", "conv2", "proj", "add", "out"]
    assert g.consumers("image") == ["conv1", "proj"] and g.consumers("conv2") == ["add"] and g.consumers("out") == []
    node = g.node("add")
    assert node.name == "add" and node.inputs == ("conv2", "proj") and node.layer is g["add"]
    with pytest.raises(KeyError, match=r"no node named 'nope'; nodes are \['conv1'"):
        g.node("nope")
    with pytest.raises(KeyError, match="no node named 'nope'"):
        g["nope"]
    x = np.random.default_rng(0).standard_normal((1, 9, 9, 3)).astype(np.float32)
    with no_grad():
        part = {k: as_array(v) for k, v in g.trace(x, upto="relu1").items()}
        full = as_array(g.trace(x)["out"])
    assert list(part) == ["image", "conv1", "bn", "relu1"]
    np.testing.assert_array_equal(part["relu1"], np.maximum(part["bn"], 0))
    np.testing.assert_array_equal(full, _run(g, x))
    text = repr(g)
    assert text.startswith("Graph(inputs={image: (9, 9, 3)}, outputs=['out'],")
    assert "(add ← conv2, proj): Add()" in text and "(conv1 ← image): Conv2D(" in text
    assert model_nodes(g) == g.nodes() and input_names(g) == ["image"]
    seq = nn.Sequential([("c", nn.Conv2D(1, 2, 3)), ("r", nn.ReLU())], input_shape=(5, 5, 1))
    assert [(n.name, n.inputs) for n in model_nodes(seq)] == [("c", ("input",)), ("r", ("c",))]
    assert input_names(seq) == ["input"]
    with pytest.raises(TypeError, match="must be a featuremaps.nn.Sequential or Graph; received a ReLU"):
        model_nodes(nn.ReLU())


# --- config, state and checkpoints -----------------------------------------------------------------
def test_config_as_json_text_rebuilds_the_same_model():
    g = residual_block()
    text = json.dumps(g.get_config())
    rebuilt = nn.from_config(text)
    assert isinstance(rebuilt, nn.Graph) and rebuilt.get_config() == g.get_config()
    sd = g.state_dict()
    assert set(sd) == {"conv1.weight", "conv1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                       "conv2.weight", "conv2.bias", "proj.weight", "proj.bias"}
    assert not np.array_equal(rebuilt.state_dict()["conv1.weight"], sd["conv1.weight"])  # fresh weights first
    rebuilt.load_state_dict(sd)
    rebuilt.eval()
    x = np.random.default_rng(1).standard_normal((2, 9, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(rebuilt, x), _run(g, x))  # the same path: the same bits
    with pytest.raises(ValueError, match=r"missing keys \['proj.weight', 'proj.bias'\]"):
        rebuilt.load_state_dict({k: v for k, v in sd.items() if not k.startswith("proj")})
    with pytest.raises(ValueError, match="'inputs' and 'nodes' must be lists"):
        nn.Graph.from_config({"class": "Graph", "inputs": "image", "nodes": []})


def test_two_input_graph_config_round_trip_keeps_inputs_and_output_order():
    g = two_in_two_out(("fc", "sum"))
    rebuilt = nn.from_config(json.loads(json.dumps(g.get_config())))
    assert rebuilt.input_shapes == {"a": (6, 6, 2), "b": (6, 6, 3)} and rebuilt.output_names == ["fc", "sum"]


def test_checkpoint_round_trip(tmp_path):
    g = residual_block()
    o = optim.SGD(g.parameters(), lr=0.1, momentum=0.9)
    path = ckpt.save_checkpoint(tmp_path, g, o, epoch=3, meta={"note": "graph"})
    loaded, meta, optim_sd = ckpt.load_checkpoint(path)
    assert isinstance(loaded, nn.Graph) and meta["epoch"] == 3 and meta["note"] == "graph"
    assert loaded.get_config() == g.get_config()
    assert_same_weights(loaded, g)
    x = np.random.default_rng(2).standard_normal((1, 9, 9, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(loaded.eval(), x), _run(g, x))
    assert set(optim_sd) == set(o.state_dict())


# --- training --------------------------------------------------------------------------------------
def tiny_graph(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Graph({"image": (12, 12, 1)}, [
        ("conv", nn.Conv2D(1, 4, 3, stride=2, padding=1, rng=rng), "image"),
        ("bn", nn.BatchNorm2D(4), "conv"),
        ("act", nn.Tanh(), "bn"),
        ("short", nn.Conv2D(1, 4, 1, stride=2, rng=rng), "image"),
        ("add", nn.Add(), ["act", "short"]),
        ("flatten", nn.Flatten(), "add"),
        ("drop", nn.Dropout(0.25), "flatten"),
        ("fc", nn.Dense(4 * 6 * 6, 10, rng=rng), "drop"),
    ], "fc")


def run_graph(out_dir=None, epochs=4, resume=None, callbacks=()):
    model = tiny_graph()
    o = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    result = train.fit(model, tiny_data(), tiny_data(48, seed=1), epochs=epochs, batch_size=32, optimizer=o,
                       schedule=schedules.get("step", o.lr, epochs=4), seed=3, out_dir=out_dir, resume=resume,
                       augment=True, callbacks=callbacks, reporter=Recorder(), plot=False)
    return model, o, result


@pytest.fixture(scope="module")
def graph_uninterrupted():
    return run_graph(epochs=4)


def test_fit_trains_a_graph(graph_uninterrupted):
    model, _, result = graph_uninterrupted
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert not np.array_equal(model.state_dict()["short.weight"], tiny_graph().state_dict()["short.weight"])


def test_fit_resume_of_a_graph_is_exact(tmp_path, graph_uninterrupted):
    full_model, full_opt, full = graph_uninterrupted
    run_graph(tmp_path, epochs=2)
    model, o, resumed = run_graph(tmp_path, epochs=4, resume=tmp_path)
    assert_same_weights(model, full_model)
    for k, v in full_opt.state_dict().items():
        np.testing.assert_array_equal(o.state_dict()[k], v)
    assert same_records(resumed.history, full.history)


def test_fit_resume_after_ctrl_c_mid_epoch_of_a_graph_is_exact(tmp_path, graph_uninterrupted):
    class InterruptAt:
        def on_batch_end(self, epoch, step, logs):
            if (epoch, step) == (2, 2):
                raise KeyboardInterrupt

    with pytest.raises(train.TrainingInterrupted):
        run_graph(tmp_path, epochs=4, callbacks=[InterruptAt()])
    model, _, resumed = run_graph(tmp_path, epochs=4, resume=tmp_path)
    assert_same_weights(model, graph_uninterrupted[0])
    assert same_records(resumed.history, graph_uninterrupted[2].history)
