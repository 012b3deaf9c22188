"""receptive_field and connections on graph models, against brute force on the engine.

Oracles, both independent of the tracing code:
- NaN: a batch of images, each with one pixel (all channels) set to NaN, run through the graph; a
  unit depends on the pixel iff it turns NaN (NaN propagates through conv, pooling, the merges,
  tanh/ReLU/sigmoid, and padding is never NaN). Exact for max pooling too.
- float64 autograd: the gradient of one output position (a random weighting of its maps) with
  respect to the input; a pixel counts iff its gradient is nonzero (graphs without ReLU or max
  pooling, where no dependence vanishes by a zero derivative).
The field of a position is over all of the node's maps (at a Concatenate, the union of its branches).
"""
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from featuremaps import Tensor, nn
from featuremaps.inspect import connections, fan_in, fan_out, filters_for_output, filters_from_input, receptive_field
from featuremaps.inspect.connectivity import conv_source
from featuremaps.tensor import as_array, no_grad
from tests.test_graph import _dags


def _seeded(g, seed=0):
    rng = np.random.default_rng(seed)
    for _, p in g.named_parameters():
        p.data = rng.standard_normal(p.shape).astype(p.dtype)  # nonzero biases too
    return g.eval()


def resnet_block(pool="max"):
    return nn.Graph({"image": (11, 10, 2)}, [
        ("conv1", nn.Conv2D(2, 3, 3, stride=2, padding=1), "image"),
        ("act1", nn.Tanh(), "conv1"),
        ("conv2", nn.Conv2D(3, 3, 3, padding=1), "act1"),
        ("proj", nn.Conv2D(2, 3, 1, stride=2), "image"),
        ("add", nn.Add(), ["conv2", "proj"]),
        ("out", nn.Tanh(), "add"),
    ], "out")


def union_block(pool="max"):
    """A dense 3×3 path plus a dilation-3 path: the union has the dense block and the dilated grid."""
    return nn.Graph({"image": (12, 12, 1)}, [
        ("dense", nn.Conv2D(1, 2, 3, padding=1), "image"),
        ("dilated", nn.Conv2D(1, 2, 3, padding=3, dilation=3), "image"),
        ("add", nn.Add(), ["dense", "dilated"]),
        ("dil2", nn.Conv2D(2, 2, 3, dilation=2, padding=2), "add"),
        ("mul", nn.Multiply(), ["dil2", "add"]),
    ], "mul")


def inception_block(pool="max"):
    """Branches of 1×1, 3×3, 5×5 and a pool, concatenated; then a ceil-mode pool and a conv."""
    pooled = (nn.MaxPool2D(3, 1, 1) if pool == "max" else nn.AvgPool2D(3, 1, 1))
    return nn.Graph({"image": (10, 9, 2)}, [
        ("b1", nn.Conv2D(2, 1, 1), "image"),
        ("b3", nn.Conv2D(2, 2, 3, padding=1), "image"),
        ("b5", nn.Conv2D(2, 1, 5, padding=2), "image"),
        ("bp", pooled, "image"),
        ("cat", nn.Concatenate(), ["b1", "b3", "b5", "bp"]),
        ("down", (nn.MaxPool2D(3, 2, ceil_mode=True) if pool == "max"
                  else nn.AvgPool2D(3, 2, ceil_mode=True)), "cat"),
        ("head", nn.Conv2D(6, 2, 3, stride=2, padding=1), "down"),
        ("b1_far", nn.Conv2D(1, 1, 3, stride=3), "b1"),
    ], ["head", "b1_far"])


def se_block(pool="max"):
    """Squeeze-and-excitation: a gate from global pooling, broadcast over every position."""
    return nn.Graph({"image": (7, 7, 2)}, [
        ("conv", nn.Conv2D(2, 4, 3, padding=1), "image"),
        ("gap", nn.GlobalAvgPool2D(), "conv"),
        ("fc", nn.Dense(4, 4), "gap"),
        ("gate", nn.Sigmoid(), "fc"),
        ("shape", nn.Reshape((1, 1, 4)), "gate"),
        ("scaled", nn.Multiply(), ["conv", "shape"]),
        ("local", nn.Conv2D(2, 4, 1), "image"),
        ("plus", nn.Add(), ["local", "shape"]),
    ], ["scaled", "plus"])


def column_gate(pool="max"):
    """A (1, W, C) gate (each column pooled over every row) broadcast over the rows of a conv's maps."""
    return nn.Graph({"image": (6, 7, 2)}, [
        ("conv", nn.Conv2D(2, 2, 3, padding=1), "image"),
        ("col", nn.AvgPool2D((6, 1), stride=(6, 1)), "image"),
        ("gated", nn.Multiply(), ["conv", "col"]),
        ("row", nn.AvgPool2D((1, 7), stride=(1, 7)), "conv"),
        ("both", nn.Add(), ["row", "col"]),
    ], ["gated", "both"])


GRAPHS = {"resnet": resnet_block, "union": union_block, "inception": inception_block, "se": se_block,
          "gate": column_gate}
NODES = {"resnet": ["conv1", "conv2", "proj", "add", "out"], "union": ["dense", "dilated", "add", "dil2", "mul"],
         "inception": ["b1", "b5", "bp", "cat", "down", "head", "b1_far"], "se": ["conv", "scaled", "plus"],
         "gate": ["col", "gated", "row", "both"]}


def nan_dependence(g):
    """Node name → bool (H·W, oh, ow): does position (i, j) of the node turn NaN when pixel k is NaN?"""
    (h, w, c), = g.input_shapes.values()
    base = np.random.default_rng(0).random((h, w, c)).astype(next((p.dtype for p in g.parameters()), np.float32))
    x = np.repeat(base[None], h * w, axis=0)  # (h·w, h, w, c)
    k = np.arange(h * w)
    x[k, k // w, k % w, :] = np.nan
    with no_grad():
        env = g.trace(x)
    return {n: np.isnan(as_array(v)).any(axis=-1) for n, v in env.items() if n in g and as_array(v).ndim == 4}


@lru_cache(maxsize=None)
def _cached(name):
    g = _seeded(GRAPHS[name]())
    return g, nan_dependence(g)


def _assert_field(g, node, pos, dep):
    h, w, _ = next(iter(g.input_shapes.values()))
    expected = dep[:, pos[0], pos[1]].reshape(h, w)
    rf = receptive_field(g, node, pos)
    np.testing.assert_array_equal(rf.mask, expected, err_msg=f"{node} at {pos}")
    if expected.any():
        rows, cols = np.flatnonzero(expected.any(1)), np.flatnonzero(expected.any(0))
        assert rf.slices == (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return rf


@pytest.mark.parametrize("name", list(GRAPHS))
def test_every_node_at_corners_and_centre_matches_nan_brute_force(name):
    g, dep = _cached(name)
    for node in NODES[name]:
        oh, ow = dep[node].shape[1:]
        for pos in {(0, 0), (oh - 1, ow - 1), (0, ow - 1), (oh - 1, 0), (oh // 2, ow // 2)}:
            _assert_field(g, node, pos, dep[node])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_position_of_any_node_matches_nan_brute_force(data):
    name = data.draw(st.sampled_from(list(GRAPHS)))
    g, dep = _cached(name)
    node = data.draw(st.sampled_from(NODES[name]))
    oh, ow = dep[node].shape[1:]
    pos = (data.draw(st.integers(0, oh - 1)), data.draw(st.integers(0, ow - 1)))
    _assert_field(g, node, pos, dep[node])


def grad_dependence(g, node, pos, seed=0):
    """bool (H, W): pixels whose float64 gradient of a random weighting of the node's maps at `pos` is nonzero."""
    g.astype(np.float64)
    (h, w, c), = g.input_shapes.values()
    x = Tensor(np.random.default_rng(seed).uniform(-1, 1, (1, h, w, c)), requires_grad=True)
    out = g.trace(x)[node]
    grad = np.zeros(out.shape)
    grad[0, pos[0], pos[1], :] = np.random.default_rng(seed + 1).uniform(0.5, 1.5, out.shape[-1])
    out.backward(grad)
    return np.abs(x.grad[0]).sum(axis=-1) > 0


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_position_matches_float64_autograd(data):
    name = data.draw(st.sampled_from(["resnet", "union", "inception", "gate"]))
    g = _seeded(GRAPHS[name](pool="avg"), seed=2)
    node = data.draw(st.sampled_from(NODES[name]))
    oh, ow = g.node_shapes()[node][:2]
    pos = (data.draw(st.integers(0, oh - 1)), data.draw(st.integers(0, ow - 1)))
    np.testing.assert_array_equal(receptive_field(g, node, pos).mask, grad_dependence(g, node, pos))


@settings(max_examples=40, deadline=None)
@given(_dags(), st.data())
def test_random_dags_match_nan_brute_force(case, data):
    shape, made, _, _ = case
    g = _seeded(nn.Graph({"x": shape}, made, made[-1][0]))
    dep = nan_dependence(g)
    node = data.draw(st.sampled_from([n for n, _, _ in made]))
    oh, ow = dep[node].shape[1:]
    pos = (data.draw(st.integers(0, oh - 1)), data.draw(st.integers(0, ow - 1)))
    _assert_field(g, node, pos, dep[node])


# --- the union over paths, by hand -------------------------------------------------------------------
def test_union_of_a_dense_and_a_dilated_path_by_hand():
    g = union_block()
    rf = receptive_field(g, "add", (6, 6))
    expected = np.zeros((12, 12), bool)
    expected[5:8, 5:8] = True  # the 3×3 path
    expected[3:10:3, 3:10:3] = True  # the dilation-3 path
    np.testing.assert_array_equal(rf.mask, expected)
    assert rf.holes and rf.nominal == ((3, 9), (3, 9)) and rf.mask.sum() == 9 + 8
    assert receptive_field(g, "dense", (6, 6)).mask.sum() == 9  # one path alone


def test_a_gate_broadcast_along_the_rows_reads_its_whole_column():
    rf = receptive_field(column_gate(), "gated", (2, 3))
    expected = np.zeros((6, 7), bool)
    expected[1:4, 2:5] = True  # the 3×3 conv
    expected[:, 3] = True  # the (1, 7) gate's column 3 pools every row
    np.testing.assert_array_equal(rf.mask, expected)
    both = receptive_field(column_gate(), "both", (0, 0))  # (6, 1) + (1, 7) broadcast to (6, 7)
    expected = np.zeros((6, 7), bool)
    expected[:2, :] = True  # row 0 of "row" pools conv rows 0 (image rows 0..1) over all columns
    expected[:, 0] = True  # column 0 of "col"
    np.testing.assert_array_equal(both.mask, expected)


def test_resnet_shortcut_adds_its_pixel_and_vectors_see_everything():
    g = resnet_block()
    rf = receptive_field(g, "proj", (2, 3))  # 1×1, stride 2: one pixel
    assert rf.mask.sum() == 1 and rf.mask[4, 6]
    assert receptive_field(g, "add", (2, 3)).mask[4, 6]
    full = receptive_field(se_block(), "scaled", (0, 0))  # the gate reads every pixel
    assert full.mask.all()
    assert receptive_field(se_block(), "fc").mask.all()


def test_several_inputs_need_input_and_an_unread_input_has_an_empty_field():
    g = nn.Graph({"a": (5, 5, 1), "b": (4, 4, 1)}, [
        ("ca", nn.Conv2D(1, 1, 3), "a"),
        ("cb", nn.Conv2D(1, 1, 2), "b"),
        ("sum", nn.Add(), ["ca", "cb"]),
    ], "sum")
    with pytest.raises(ValueError, match=r"the graph has inputs \['a', 'b'\]; pass input=NAME"):
        receptive_field(g, "sum", (0, 0))
    with pytest.raises(ValueError, match=r"input must be one of the model's inputs \['a', 'b'\]; received 'c'"):
        receptive_field(g, "sum", (0, 0), input="c")
    a = receptive_field(g, "sum", (1, 2), input="a")
    b = receptive_field(g, "sum", (1, 2), input="b")
    assert a.mask.shape == (5, 5) and a.slices == (slice(1, 4), slice(2, 5)) and a.mask.sum() == 9
    assert b.mask.shape == (4, 4) and b.slices == (slice(1, 3), slice(2, 4)) and b.mask.sum() == 4
    none = receptive_field(g, "ca", (0, 0), input="b")
    assert none.mask.shape == (4, 4) and not none.mask.any() and "does not read this input" in none.to_text()


def test_graph_errors_name_the_node():
    g = nn.Graph({"image": (6, 6, 1)}, [("c", nn.Conv2D(1, 2, 3), "image"), ("t", nn.Transpose((2, 0, 1)), "c"),
                                        ("cat", nn.Concatenate(axis=1), ["c", "c"])], ["t", "cat"])
    with pytest.raises(ValueError, match=r"cannot trace the receptive field through layer 't' \(Transpose\)"):
        receptive_field(g, "t", (0, 0))
    with pytest.raises(ValueError, match=r"through merge node 'cat' \(Concatenate\): it moves positions"):
        receptive_field(g, "cat", (0, 0))
    with pytest.raises(ValueError, match=r"no layer named 'zz'; valid names: c, t, cat"):
        receptive_field(g, "zz", (0, 0))
    with pytest.raises(ValueError, match=r"row must be in \[0, 3\]"):
        receptive_field(g, "c", (4, 0))
    shapeless = nn.Graph(["image"], [("c", nn.Conv2D(1, 2, 3), "image")], "c")
    with pytest.raises(ValueError, match=r"the graph inputs \['image'\] have no shape"):
        receptive_field(shapeless, "c", (0, 0))


# --- connections on a graph ------------------------------------------------------------------------
def branchy():
    """'dw' is listed after 'wide' (8 maps) but reads the 3-map image: its input maps are the image's."""
    return _seeded(nn.Graph({"image": (6, 7, 3)}, [
        ("wide", nn.Conv2D(3, 8, 1), "image"),
        ("dw", nn.Conv2D(3, 6, 3, groups=3, padding=1), "image"),
        ("cat", nn.Concatenate(), ["wide", "dw"]),
        ("grouped", nn.Conv2D(14, 4, 3, groups=2), "cat"),
    ], "grouped"), seed=3).astype(np.float64)


def _map_dependence(g, node):
    """bool (C_in, C_out) by brute force: does output map o change when only input map i is nonzero?"""
    src = conv_source(g, node)
    with no_grad():
        base = as_array(g.trace(np.random.default_rng(4).standard_normal((1, 6, 7, 3)))[src])
        layer = g[node]
        zero = as_array(layer(np.zeros_like(base)))
        out = []
        for i in range(base.shape[-1]):
            only = np.zeros_like(base)
            only[..., i] = base[..., i]
            out.append(np.abs(as_array(layer(only)) - zero).reshape(-1, zero.shape[-1]).max(axis=0) > 0)
    return np.array(out)


def test_connections_of_a_graph_node_read_its_own_input():
    g = branchy()
    assert conv_source(g, "dw") == "image" and conv_source(g, "grouped") == "cat"
    for node, shape in (("dw", (3, 6)), ("grouped", (14, 4)), ("wide", (3, 8))):
        conn = connections(g, node)
        assert conn.shape == shape
        np.testing.assert_array_equal(conn, _map_dependence(g, node), err_msg=node)
        np.testing.assert_array_equal(conn, connections(g[node]))
        np.testing.assert_array_equal(fan_in(g, node), conn.sum(axis=0))
        np.testing.assert_array_equal(fan_out(g, node), conn.sum(axis=1))
    assert fan_in(g, "dw").tolist() == [1] * 6 and fan_in(g, "grouped").tolist() == [7] * 4


def test_filters_for_output_of_a_graph_node_reproduce_the_engine():
    """y[r, c, o] = b[o] + Σ over the node's OWN input maps of window · filters_for_output(g, node, o)."""
    g = branchy()
    x = np.random.default_rng(5).standard_normal((1, 6, 7, 3))
    with no_grad():
        env = {k: as_array(v)[0] for k, v in g.trace(x).items()}
    for node, (r, c) in (("dw", (2, 3)), ("grouped", (1, 2))):
        layer, src = g[node], env[conv_source(g, node)]
        pad = layer.padding if isinstance(layer.padding, int) else 0
        padded = np.pad(src, ((pad, pad), (pad, pad), (0, 0)))
        window = padded[r:r + 3, c:c + 3, :]  # (3, 3, c_in) of the node's input
        for o in range(layer.out_channels):
            kernel, connected = filters_for_output(g, node, o)
            want = float(layer.bias.data[o]) + float(np.sum(window * kernel))
            terms = np.abs(window * kernel).sum() + abs(float(layer.bias.data[o]))
            assert abs(env[node][r, c, o] - want) <= 4 * 9 * 14 * np.finfo(np.float64).eps * terms, (node, o)
            assert connected == np.flatnonzero(connections(g, node)[:, o]).tolist()
        np.testing.assert_array_equal(filters_from_input(g, node, 1), filters_from_input(layer, 1))


def test_connections_on_a_model_check_names_and_channels():
    g = nn.Graph({"image": (5, 5, 3)}, [("c", nn.Conv2D(4, 2, 3), "image"), ("r", nn.ReLU(), "c")], "r")
    with pytest.raises(ValueError, match=r"layer 'c' reads 'image', which has 3 channels \(shape \(5, 5, 3\)\), "
                                         r"but the layer expects C_in = 4"):
        connections(g, "c")
    with pytest.raises(ValueError, match=r"no layer named 'zz'; valid names: c, r"):
        fan_in(g, "zz")
    with pytest.raises(TypeError, match="layer must be a conv layer"):
        connections(g, "r")
    with pytest.raises(TypeError, match=r"with a model, give the layer's name and the map index"):
        filters_for_output(g, "c")
    with pytest.raises(TypeError, match=r"with a layer, give the map index; received 2"):
        filters_for_output(g["c"], "c", 0)
    seq = nn.Sequential([("a", nn.Conv2D(1, 4, 3)), ("b", nn.Conv2D(4, 4, 3, groups=2))], input_shape=(8, 8, 1))
    assert conv_source(seq, "b") == "a" and conv_source(seq, "a") == "input"
    np.testing.assert_array_equal(connections(seq, "b"), connections(seq["b"]))
    np.testing.assert_array_equal(filters_for_output(seq, "b", 3)[0], filters_for_output(seq["b"], 3)[0])
