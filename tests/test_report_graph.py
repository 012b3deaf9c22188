"""The HTML report and the pictures on graph models (`nn.Graph`).

Checks the page's data for a small residual graph (each entry's inputs by name, the blocks it folds
into, every embedded value equal to the engine's, merges described), the value budget and its 8-bit
previews (decoded and compared with the engine's values), the size of a ResNet-50-shaped report at
224 × 224 (under 20 MB: the size is deterministic), the pictures drawn from node names, and the map
sources the page embeds (every map of the concatenations, the shuffle and the grouped convs of a
DenseNet block + ShuffleNet unit equals `map_sources`; big layers are not measured, and say so).
`resnet50` builds that graph (bottleneck blocks 3-4-6-3); `bench/report_size.py` times it.
"""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from featuremaps import nn
from featuremaps.inspect import activations
from featuremaps.inspect.connectivity import connections
from featuremaps.report import build_report, report_data, report_html
from featuremaps.report import _graph


# --- graph builders (featuremaps layers only; random, well-scaled weights) ------------------------

def _bn(c: int, rng, gain: float = 1.0) -> nn.BatchNorm2D:
    """A BatchNorm with random statistics; `gain` scales its output (small for a block's last BN, so
    that the residual sum stays well-scaled at depth)."""
    b = nn.BatchNorm2D(c)
    b.load_state_dict({"weight": gain * rng.uniform(0.5, 1.0, c).astype(np.float32),
                       "bias": rng.normal(0, 0.1, c).astype(np.float32),
                       "running_mean": rng.normal(0, 0.1, c).astype(np.float32),
                       "running_var": rng.uniform(0.5, 1.5, c).astype(np.float32)})
    return b


def _conv_bn(nodes: list, name: str, src: str, c_in: int, c_out: int, k: int, stride: int, rng, *,
             relu: bool = True, gain: float = 1.0) -> str:
    pad = (k - 1) // 2
    nodes.append((f"{name}_conv", nn.Conv2D(c_in, c_out, k, stride=stride, padding=pad, bias=False, rng=rng,
                                           init="he_normal"), src))
    nodes.append((f"{name}_bn", _bn(c_out, rng, gain), f"{name}_conv"))
    if not relu:
        return f"{name}_bn"
    nodes.append((f"{name}_relu", nn.ReLU(), f"{name}_bn"))
    return f"{name}_relu"


def _bottleneck(nodes: list, name: str, src: str, c_in: int, width: int, stride: int, rng) -> str:
    h = _conv_bn(nodes, f"{name}_a", src, c_in, width, 1, 1, rng)
    h = _conv_bn(nodes, f"{name}_b", h, width, width, 3, stride, rng)
    h = _conv_bn(nodes, f"{name}_c", h, width, 4 * width, 1, 1, rng, relu=False, gain=0.3)
    short = src
    if stride != 1 or c_in != 4 * width:
        short = _conv_bn(nodes, f"{name}_proj", src, c_in, 4 * width, 1, stride, rng, relu=False)
    nodes.append((f"{name}_add", nn.Add(), [h, short]))
    nodes.append((f"{name}_out", nn.ReLU(), f"{name}_add"))
    return f"{name}_out"


def resnet50(size: int = 224, classes: int = 1000, rng=None, stages=(3, 4, 6, 3), width: int = 64) -> nn.Graph:
    """A ResNet-50-shaped graph on `size` × `size` RGB: stem (7×7/2 conv, BN, ReLU, 3×3/2 max-pool),
    bottleneck blocks `stages` (3-4-6-3) of widths 64-128-256-512 (×4 out), global average pool, dense."""
    rng = np.random.default_rng(0) if rng is None else rng
    nodes: list = []
    h = _conv_bn(nodes, "stem", "image", 3, width, 7, 2, rng)
    nodes.append(("stem_pool", nn.MaxPool2D(3, stride=2, padding=1), h))
    h, c = "stem_pool", width
    for s, blocks in enumerate(stages):
        w = width * 2 ** s
        for b in range(blocks):
            h = _bottleneck(nodes, f"s{s + 1}b{b + 1}", h, c, w, 2 if b == 0 and s > 0 else 1, rng)
            c = 4 * w
    nodes.append(("gap", nn.GlobalAvgPool2D(), h))
    nodes.append(("fc", nn.Dense(c, classes, rng=rng), "gap"))
    return nn.Graph({"image": (size, size, 3)}, nodes, "fc")


def small_graph(rng=None) -> nn.Graph:
    """A residual graph on 12 × 12 × 3: stem conv, one block with a projection shortcut (Add), a
    Concatenate of two branches, pooling and a dense head."""
    rng = np.random.default_rng(1) if rng is None else rng
    nodes = [("stem", nn.Conv2D(3, 4, 3, padding=1, rng=rng), "image"),
             ("stem_relu", nn.ReLU(), "stem"),
             ("b1_conv1", nn.Conv2D(4, 6, 3, padding=1, rng=rng), "stem_relu"),
             ("b1_relu1", nn.ReLU(), "b1_conv1"),
             ("b1_conv2", nn.Conv2D(6, 6, 3, padding=1, groups=2, rng=rng), "b1_relu1"),
             ("b1_proj", nn.Conv2D(4, 6, 1, rng=rng), "stem_relu"),
             ("b1_add", nn.Add(), ["b1_conv2", "b1_proj"]),
             ("b1_out", nn.ReLU(), "b1_add"),
             ("b2_left", nn.Conv2D(6, 3, 1, rng=rng), "b1_out"),
             ("b2_right", nn.MaxPool2D(3, stride=1, padding=1), "b1_out"),
             ("b2_cat", nn.Concatenate(), ["b2_left", "b2_right"]),
             ("pool", nn.MaxPool2D(2), "b2_cat"),
             ("gap", nn.GlobalAvgPool2D(), "pool"),
             ("fc", nn.Dense(9, 5, rng=rng), "gap")]
    return nn.Graph({"image": (12, 12, 3)}, nodes, "fc")


def _image(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="fm-data">(.*?)</script>', html, re.S)
    assert m and "</" not in m.group(1)
    return json.loads(m.group(1))


def _decode(b64: str, dtype: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _entry(data: dict, name: str) -> dict:
    return next(e for e in data["layers"] if e["name"] == name)


@pytest.fixture(scope="module")
def small():
    return small_graph()


# --- the data of a graph report ---------------------------------------------------------------

def test_entries_name_their_inputs_and_values_equal_the_engine(small):
    x = _image((12, 12, 3))
    data = report_data(small, x, references=False)
    acts = activations(small, x)
    assert [e["name"] for e in data["layers"]] == ["image"] + small.names()
    for e, act in zip(data["layers"], acts):
        want = ([] if e["name"] == "image" else list(small.node(e["name"]).inputs))
        assert e["inputs"] == want
        assert [data["layers"][i]["name"] for i in e["ins"]] == want
        assert e["preview"] is None
        np.testing.assert_array_equal(_decode(e["values"], data["dtype"], e["shape"]), act.array)  # one path
    assert _entry(data, "b1_add")["op"] == {"type": "merge", "how": "elementwise"}
    assert _entry(data, "b2_cat")["op"] == {"type": "merge", "how": "concat", "offsets": [0, 3, 9]}
    conv2 = _entry(data, "b1_conv2")["op"]
    assert conv2["type"] == "conv" and conv2["in_maps"] == 6
    want = connections(small["b1_conv2"])  # grouped: block-diagonal
    got = np.array([ch == "1" for ch in conv2["connections"]]).reshape(6, 6)
    np.testing.assert_array_equal(got, want)
    assert data["graph"] is not None and data["model_class"] == "Graph"


def test_blocks_fold_the_graph_at_its_merges(small):
    data = report_data(small, _image((12, 12, 3)), references=False)
    names = [e["name"] for e in data["layers"]]
    groups = [(g["name"], [names[k] for k in g["members"]]) for g in data["graph"]["blocks"]]
    assert groups == [("stem", ["stem", "stem_relu"]),
                      ("b1", ["b1_conv1", "b1_relu1", "b1_conv2", "b1_proj", "b1_add", "b1_out"]),
                      ("b2_left … pool", ["b2_left", "b2_right", "b2_cat", "pool"]),
                      ("gap … fc", ["gap", "fc"])]
    members = sorted(k for g in data["graph"]["blocks"] for k in g["members"])
    assert members == list(range(1, len(names)))  # every node in exactly one block


def test_blocks_of_a_resnet50_are_its_bottlenecks():
    g = resnet50(size=32, classes=10)
    names = ["image"] + g.names()
    ins = _graph.entry_inputs(g, names)
    groups = _graph.blocks(names, ins, 1)
    labels = [b["name"] for b in groups]
    assert labels == ["stem", *[f"s{s}b{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(1, n + 1)],
                      "gap … fc"]
    first = [names[k] for k in groups[1]["members"]]
    assert first[0] == "s1b1_a_conv" and first[-2:] == ["s1b1_add", "s1b1_out"] and "s1b1_proj_conv" in first
    assert len(g.names()) > 150


def test_sequential_reports_keep_their_shape():
    from featuremaps import models
    model = models.get("lenet5", rng=np.random.default_rng(3))
    data = report_data(model, _image((28, 28, 1)), references=False)
    assert data["graph"] is None
    assert all(e["ins"] == ([] if k == 0 else [k - 1]) for k, e in enumerate(data["layers"]))
    assert all(e["values"] is not None and e["preview"] is None for e in data["layers"])


def test_value_budget_gives_previews_that_match_the_engine(small):
    x = _image((12, 12, 3))
    data = report_data(small, x, references=False, value_budget=8_000, select="b1_conv2")
    acts = {a.name: np.asarray(a.array, dtype=np.float64) for a in activations(small, x)}
    exact = {e["name"] for e in data["layers"] if e["values"] is not None}
    assert {"b1_conv2", "b1_relu1"} <= exact  # the selected layer and its input first
    assert sum(4 * int(np.prod(e["shape"])) for e in data["layers"] if e["name"] in exact) <= 8_000
    previewed = [e for e in data["layers"] if e["values"] is None]
    assert previewed
    for e in previewed:
        p = e["preview"]
        a = acts[e["name"]]
        q = np.frombuffer(base64.b64decode(p["data"]), dtype=np.uint8).astype(np.float64)
        if a.ndim == 3:
            q = q.reshape(p["maps"], p["h"], p["w"])
            rows, cols = (np.arange(p["h"]) * a.shape[0]) // p["h"], (np.arange(p["w"]) * a.shape[1]) // p["w"]
            want = a[np.ix_(rows, cols)][:, :, :p["maps"]].transpose(2, 0, 1)  # (maps, h, w)
        else:
            want = a[: p["units"]]
        if e["name"] == "image":
            got = e["min"] + (q - 1) / 254 * (e["max"] - e["min"])
            step = (e["max"] - e["min"]) / 254
        else:
            got = (q - 128) / 127 * e["absmax"]
            step = e["absmax"] / 127
        assert np.all(np.abs(got - want) <= 0.5 * step + 1e-6 * max(1.0, e["absmax"]))
    # a conv whose input is a preview keeps its connections but not its weights
    for e in data["layers"]:
        if e["op"] and e["op"].get("was") == "conv":
            assert e["op"]["type"] == "omitted" and "connections" in e["op"] and "kernels" not in e["op"]


def test_resnet50_report_stays_under_20_mb(tmp_path):
    g = resnet50()
    path = build_report(g, _image((224, 224, 3)), tmp_path / "resnet50.html")
    size = path.stat().st_size
    assert size < 20_000_000, f"the ResNet-50 report is {size / 1e6:.1f} MB"
    data = _payload(path.read_text(encoding="utf-8"))
    assert len(data["layers"]) == 1 + len(g.names()) and len(data["graph"]["blocks"]) == 18
    exact = [e for e in data["layers"] if e["values"] is not None]
    assert exact and any(e["op"] and e["op"]["type"] == "conv" for e in exact)  # something to decompose
    assert all(e["preview"] is not None for e in data["layers"] if e["values"] is None)


def test_graph_report_page_is_self_contained(small, tmp_path):
    html = report_html(small, _image((12, 12, 3)))
    assert "http://" not in html and "https://" not in html and "default-src 'none'" in html
    assert _payload(html)["graph"]["blocks"]


# --- the pictures from node names -----------------------------------------------------------------

def test_kernel_grid_and_connectivity_take_node_names(small, tmp_path):
    from featuremaps import pictures

    by_name = pictures.kernel_grid("b1_conv2", tmp_path / "a.png", model=small)
    by_layer = pictures.kernel_grid(small["b1_conv2"], tmp_path / "b.png", name="b1_conv2")
    assert by_name.read_bytes() == by_layer.read_bytes()  # one path: the same picture
    fig = pictures.connectivity_diagram("b1_conv2", model=small)
    title = fig._suptitle.get_text()
    assert title.startswith("b1_conv2 ← b1_relu1: grouped (groups=2)") and "18 of 36" in title
    fig = pictures.connectivity_diagram("b1_proj", model=small)
    assert fig._suptitle.get_text().startswith("b1_proj ← stem_relu: full")
    with pytest.raises(TypeError, match="model="):
        pictures.kernel_grid("b1_conv2")
    with pytest.raises(ValueError, match="no node named 'nope'"):
        pictures.connectivity_diagram("nope", model=small)


def test_feature_maps_draws_graph_nodes_by_name(small):
    from featuremaps import pictures

    x = _image((12, 12, 3))
    fig = pictures.feature_maps(small, x, layers=["image", "b1_add", "b2_cat"])
    texts = " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    assert "b1_add" in texts and "b2_cat" in texts and "b1_conv1" not in texts
    images = [a.get_array() for ax in fig.axes for a in ax.get_images()]
    assert len(images) >= 3
    with pytest.raises(ValueError, match="unknown \\['nope'\\]"):
        pictures.feature_maps(small, x, layers=["nope"])


def test_receptive_overlay_on_a_graph_node(small):
    from featuremaps import pictures
    from featuremaps.inspect import receptive_field

    mask, _ = receptive_field(small, "b1_add", (5, 5))
    want = np.zeros((12, 12), dtype=bool)
    want[2:9, 2:9] = True  # stem 3×3, then conv1 3×3 and conv2 3×3 (the other path, 1×1, sees less)
    np.testing.assert_array_equal(np.asarray(mask, dtype=bool), want)
    fig = pictures.receptive_field_overlay(small, _image((12, 12, 3)), "b1_add", (5, 5))
    assert fig.axes


# --- map sources in the page: every traced map equals map_sources ---------------------------------

def dense_shuffle_graph(rng=None) -> nn.Graph:
    """A DenseNet block (two conv layers, each concatenated to what came before), a grouped 1×1
    transition to 6 maps, then a ShuffleNet unit (grouped 1×1, channel shuffle of 3 groups by
    Reshape → Transpose → Reshape, depthwise 3×3, grouped 1×1, residual Add), pooling and a dense head."""
    rng = np.random.default_rng(7) if rng is None else rng
    hw = 6
    nodes = [("c0", nn.Conv2D(3, 4, 3, padding=1, rng=rng), "image"),
             ("t1", nn.ReLU(), "c0"), ("c1", nn.Conv2D(4, 3, 3, padding=1, rng=rng), "t1"),
             ("cat1", nn.Concatenate(), ["c0", "c1"]),
             ("t2", nn.ReLU(), "cat1"), ("c2", nn.Conv2D(7, 2, 3, padding=1, rng=rng), "t2"),
             ("cat2", nn.Concatenate(), ["cat1", "c2"]),
             ("bn", _bn(9, rng), "cat2"), ("t3", nn.ReLU(), "bn"),
             ("trans", nn.Conv2D(9, 6, 1, groups=3, rng=rng), "t3"),
             ("g1", nn.Conv2D(6, 6, 1, groups=3, rng=rng), "trans"), ("r1", nn.ReLU(), "g1"),
             ("split", nn.Reshape((hw, hw, 3, 2)), "r1"), ("swap", nn.Transpose((0, 1, 3, 2)), "split"),
             ("shuffle", nn.Reshape((hw, hw, 6)), "swap"),
             ("dw", nn.Conv2D(6, 6, 3, padding=1, groups=6, rng=rng), "shuffle"), ("b2", _bn(6, rng), "dw"),
             ("g2", nn.Conv2D(6, 6, 1, groups=3, rng=rng), "b2"),
             ("add", nn.Add(), ["trans", "g2"]), ("out", nn.ReLU(), "add"),
             ("gap", nn.GlobalAvgPool2D(), "out"), ("fc", nn.Dense(6, 4, rng=rng), "gap")]
    return nn.Graph({"image": (hw, hw, 3)}, nodes, "fc")


def _embedded_sources(data: dict, name: str, out_map: int) -> tuple[dict, list]:
    """Decode the page's record of one map: ({source name: maps}, [(hop name, rule)])."""
    names = [e["name"] for e in data["layers"]]
    path_id, flat = data["graph"]["nodes"][name]["maps"][out_map]
    got = {}
    for k, runs in zip(flat[::2], flat[1::2]):
        got[names[k]] = [m for a, b in zip(runs[::2], runs[1::2]) for m in range(a, b + 1)]
    return got, [(names[k], rule) for k, rule in data["graph"]["paths"][path_id]]


def test_embedded_sources_equal_map_sources_for_every_traced_map():
    from featuremaps.inspect import map_sources
    from featuremaps.inspect.sources import node_wiring

    g = dense_shuffle_graph()
    data = report_data(g, _image((6, 6, 3)), references=False)
    traced = data["graph"]["nodes"]
    assert set(traced) == {"cat1", "cat2", "trans", "g1", "shuffle", "dw", "g2"}
    for name, node in traced.items():
        assert len(node["maps"]) == g.node_shapes()[name][-1]
        for j in range(len(node["maps"])):
            want = map_sources(g, name, j)
            got, path = _embedded_sources(data, name, j)
            assert got == {s.layer: s.maps for s in want.sources}, f"{name} map {j}"
            assert node["rule"] == want.hops[0].rule and node["perm"] == want.hops[0].permutation
            structural = [(h.node, h.rule) for h in want.hops[1:] if h.rule not in ("same map",
                                                                                    "the same map of each input")]
            assert path == structural, f"{name} map {j}: {want.to_text()}"
    # a concatenation: maps 4-6 of cat1 are c1's maps 0-2, and cat2 passes them on at the same place
    assert _embedded_sources(data, "cat2", 5) == ({"c1": [1]}, [("cat1", traced["cat1"]["rule"])])
    assert _embedded_sources(data, "cat2", 8)[0] == {"c2": [1]}
    # the channel shuffle: map j ← map π(j) of r1, π as ShuffleNet's channels-last shuffle (3 groups of 2)
    want_perm = [(j % 3) * 2 + j // 3 for j in range(6)]
    assert traced["shuffle"]["perm"] == want_perm
    assert data["layers"][traced["shuffle"]["from"]]["name"] == "r1"
    assert [_embedded_sources(data, "shuffle", j)[0] for j in range(6)] == [{"g1": [p]} for p in want_perm]
    # the depthwise conv after it reads through the shuffle, and says so
    assert _embedded_sources(data, "dw", 1) == ({"g1": [want_perm[1]]}, [("shuffle", traced["shuffle"]["rule"])])
    # grouped: a map of trans reads its group's 3 maps of cat2, that is, of c0/c1/c2
    assert _embedded_sources(data, "trans", 5)[0] == {"c1": [2], "c2": [0, 1]}
    # the layer headers' wiring is node_wiring's text
    shapes = {e["name"]: tuple(e["shape"]) for e in data["layers"]}
    assert data["graph"]["wiring"] == node_wiring(g, shapes)
    assert "π = [0, 2, 4, 1, 3, 5]" in data["graph"]["wiring"]["shuffle"]


def test_big_layers_are_not_measured_and_the_page_says_so():
    from featuremaps.inspect import map_sources
    from featuremaps.report import _sources

    rng = np.random.default_rng(3)
    c = _sources.MEASURE_MAPS + 6
    g = nn.Graph({"image": (4, 4, 2)}, [
        ("a", nn.Conv2D(2, c, 1, rng=rng), "image"), ("lrn", nn.LocalResponseNorm(3), "a"),
        ("b", nn.Conv2D(2, 2, 1, rng=rng), "image"), ("cat", nn.Concatenate(), ["lrn", "b"])], "cat")
    data = report_data(g, _image((4, 4, 2)), references=False)
    got, path = _embedded_sources(data, "cat", 10)
    assert got == {"a": list(range(c))}  # assumed full: not measured
    assert path == [("lrn", f"not measured (more than {_sources.MEASURE_MAPS} maps): every map assumed")]
    assert {s.layer: s.maps for s in map_sources(g, "cat", 10).sources} == {"a": [9, 10, 11]}  # measured
    assert _embedded_sources(data, "cat", c + 1) == ({"b": [1]}, [])


def test_sequential_and_resnet_reports_embed_no_traces():
    from featuremaps import models
    model = models.get("lenet5", rng=np.random.default_rng(3))  # a tabled conv, but a Sequential: unchanged
    assert report_data(model, _image((28, 28, 1)), references=False)["graph"] is None
    g = resnet50(size=32, classes=10)
    view = report_data(g, _image((32, 32, 3)), references=False)["graph"]
    assert view["nodes"] == {} and view["wiring"] == {} and view["paths"] == []
