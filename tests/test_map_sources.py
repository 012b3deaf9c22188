"""`map_sources` against a perturbation oracle: change one map of an earlier conv/dense layer (or an
input) in float64, hold every other conv/dense layer at its unperturbed output, and see whether the
traced map changes. Run on a DenseNet block, grouped/depthwise/tabled convs (hypothesis over groups
and channels), a ShuffleNet unit built with featuremaps layers, a residual Add, and a flatten."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremaps import nn, tables
from featuremaps.inspect import MapSources, map_sources
from featuremaps.nn.graph import input_names, model_nodes
from featuremaps.tensor import as_array, no_grad


def _run(model, x: np.ndarray, hold: dict, poke=None) -> dict:
    """Every value of `model` for input `x` (a batch of one); nodes in `hold` output the held value;
    `poke` = (name, map, noise) adds noise to one map of that value right after it is made."""
    env = {input_names(model)[0]: x.copy()}

    def touch(name):
        if poke is not None and poke[0] == name:
            env[name] = env[name].copy()
            env[name][..., poke[1]] += poke[2]

    touch(input_names(model)[0])
    with no_grad():
        for n in model_nodes(model):
            env[n.name] = hold[n.name] if n.name in hold else np.asarray(as_array(n.layer(*[env[i] for i in n.inputs])))
            touch(n.name)
    return env


def perturbation_sources(model, layer: str, out_map: int, seed: int = 0) -> dict:
    """Source name → the maps whose perturbation changes map `out_map` of `layer` (see the module doc)."""
    model.eval()
    shape = model.input_shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1,) + tuple(shape))
    base = _run(model, x, {})
    nodes = model_nodes(model)
    names = [n.name for n in nodes]
    weighted = [n.name for n in nodes[: names.index(layer)] if n.layer.role in ("conv", "dense")]
    found = {}
    for src in input_names(model) + weighted:
        hold = {w: base[w] for w in weighted if w != src}
        maps = []
        for i in range(base[src].shape[-1]):
            noise = rng.standard_normal(base[src].shape[:-1]) + 2.0
            got = _run(model, x, hold, (src, i, noise))[layer][..., out_map]
            if np.any(np.abs(got - base[layer][..., out_map]) > 1e-9 * (1 + np.abs(base[layer][..., out_map]))):
                maps.append(i)
        if maps:
            found[src] = maps
    return found


def as_dict(result: MapSources) -> dict:
    return {s.layer: s.maps for s in result.sources}


def check_all_maps(model, layer: str) -> None:
    c = model.node_shapes()[layer][-1] if hasattr(model, "node_shapes") else None
    for o in range(c):
        got = map_sources(model, layer, o)
        assert as_dict(got) == perturbation_sources(model, layer, o), f"{layer} map {o}:\n{got.to_text()}"


def _rng(seed=0):
    return np.random.default_rng(seed)


def densenet_block():
    """c0 → [tanh → conv] twice, each output concatenated to what came before; then a 1×1 transition."""
    r = _rng(1)
    return nn.Graph({"x": (5, 5, 2)}, [
        ("c0", nn.Conv2D(2, 4, 3, padding=1, rng=r), "x"),
        ("t1", nn.Tanh(), "c0"), ("c1", nn.Conv2D(4, 3, 3, padding=1, rng=r), "t1"),
        ("cat1", nn.Concatenate(), ["c0", "c1"]),
        ("t2", nn.Tanh(), "cat1"), ("c2", nn.Conv2D(7, 3, 3, padding=1, rng=r), "t2"),
        ("cat2", nn.Concatenate(), ["cat1", "c2"]),
        ("bn", nn.BatchNorm2D(10), "cat2"), ("t3", nn.Tanh(), "bn"),
        ("trans", nn.Conv2D(10, 4, 1, rng=r), "t3"), ("pool", nn.AvgPool2D(2), "trans")],
        "pool").astype(np.float64)


def test_densenet_block_concatenations_against_perturbation():
    g = densenet_block()
    check_all_maps(g, "cat2")
    r = map_sources(g, "cat2", 8)
    assert as_dict(r) == {"c2": [1]}
    assert [h.node for h in r.hops] == ["cat2"] and r.hops[0].reads == {"cat1": [], "c2": [1]}
    assert as_dict(map_sources(g, "cat2", 5)) == {"c1": [1]}  # through cat1, at its offset 4
    assert as_dict(map_sources(g, "trans", 0)) == {"c0": [0, 1, 2, 3], "c1": [0, 1, 2], "c2": [0, 1, 2]}
    check_all_maps(g, "pool")
    assert as_dict(map_sources(g, "c2", 0)) == {"c0": [0, 1, 2, 3], "c1": [0, 1, 2]}


def grouped_chain(c_in, groups, per_group_out, multiplier, table_seed, seed=0):
    """full conv → tanh → grouped conv → tanh → depthwise conv (× multiplier) → a tabled conv."""
    r = _rng(seed)
    c_mid = groups * per_group_out
    c_dw = c_mid * multiplier
    table = tables.random(c_dw, 3, min(2, c_dw), rng=np.random.default_rng(table_seed))
    return nn.Graph({"x": (4, 4, 2)}, [
        ("full", nn.Conv2D(2, c_in, 3, padding=1, rng=r), "x"), ("t0", nn.Tanh(), "full"),
        ("grp", nn.Conv2D(c_in, c_mid, 1, groups=groups, rng=r), "t0"), ("t1", nn.Tanh(), "grp"),
        ("dw", nn.Conv2D(c_mid, c_mid * multiplier, 3, padding=1, groups=c_mid, rng=r), "t1"),
        ("t2", nn.LeakyReLU(0.1), "dw"),
        ("tab", nn.Conv2D(c_mid * multiplier, 3, 1, connections=table, rng=r), "t2")], "tab").astype(np.float64)


@settings(max_examples=12)
@given(groups=st.integers(1, 3), per_in=st.integers(1, 3), per_out=st.integers(1, 2), mult=st.integers(1, 2),
       seed=st.integers(0, 2**16))
def test_grouped_depthwise_and_tabled_convs_against_perturbation(groups, per_in, per_out, mult, seed):
    g = grouped_chain(groups * per_in, groups, per_out, mult, seed, seed)
    for layer in ("grp", "dw", "tab"):
        check_all_maps(g, layer)
    o = groups * per_out - 1  # the last map of the grouped conv: its group's input maps
    assert as_dict(map_sources(g, "grp", o)) == {"full": list(range((groups - 1) * per_in, groups * per_in))}
    assert as_dict(map_sources(g, "dw", mult * o + mult - 1)) == {"grp": [o]}


def shufflenet_unit(g=2, c=6, hw=4):
    """ShuffleNet (stride 1): grouped 1×1 → BN → ReLU → channel shuffle (Reshape, Transpose, Reshape)
    → depthwise 3×3 → BN → grouped 1×1 → BN, added to the unit's input, then ReLU."""
    r = _rng(2)
    return nn.Graph({"x": (hw, hw, c)}, [
        ("g1", nn.Conv2D(c, c, 1, groups=g, rng=r), "x"), ("b1", nn.BatchNorm2D(c), "g1"),
        ("r1", nn.LeakyReLU(0.1), "b1"),
        ("split", nn.Reshape((hw, hw, g, c // g)), "r1"), ("swap", nn.Transpose((0, 1, 3, 2)), "split"),
        ("shuffle", nn.Reshape((hw, hw, c)), "swap"),
        ("dw", nn.Conv2D(c, c, 3, padding=1, groups=c, rng=r), "shuffle"), ("b2", nn.BatchNorm2D(c), "dw"),
        ("g2", nn.Conv2D(c, c, 1, groups=g, rng=r), "b2"), ("b3", nn.BatchNorm2D(c), "g2"),
        ("add", nn.Add(), ["x", "b3"]), ("out", nn.LeakyReLU(0.1), "add")], "out").astype(np.float64)


@pytest.mark.parametrize("g,c", [(2, 6), (3, 6), (4, 8)])
def test_shufflenet_unit_shows_the_shuffle_as_a_permutation(g, c):
    unit = shufflenet_unit(g, c)
    n = c // g
    # channels-last shuffle: output map j = (k, i) with j = k·g + i reads input map i·n + k
    want = [(j % g) * n + j // g for j in range(c)]
    for j in range(c):
        r = map_sources(unit, "shuffle", j)
        assert as_dict(r) == {"g1": [want[j]]} == perturbation_sources(unit, "shuffle", j)
        assert r.hops[0].permutation == want and "channel shuffle" in r.hops[0].rule
        assert list(r.hops[0].reads) == ["r1"]  # the reshapes and the transpose are one step
    check_all_maps(unit, "dw")
    check_all_maps(unit, "out")
    assert as_dict(map_sources(unit, "out", 1)) == {"x": [1], "g2": [1]}  # the residual Add: union


def test_residual_add_flatten_dense_and_a_measured_layer():
    r = _rng(4)
    g = nn.Graph({"x": (4, 4, 3)}, [
        ("c1", nn.Conv2D(3, 4, 3, padding=1, rng=r), "x"), ("sc", nn.Conv2D(3, 4, 1, rng=r), "x"),
        ("add", nn.Add(), ["c1", "sc"]), ("lrn", nn.LocalResponseNorm(3, alpha=1.0), "add"),
        ("pad", nn.Pad(1, mode="reflect"), "lrn"), ("mp", nn.MaxPool2D(2), "pad"),
        ("fl", nn.Flatten(), "mp"), ("fc", nn.Dense(36, 2, rng=r), "fl")], "fc").astype(np.float64)
    check_all_maps(g, "add")
    check_all_maps(g, "lrn")
    check_all_maps(g, "fl")
    assert as_dict(map_sources(g, "lrn", 0)) == {"c1": [0, 1], "sc": [0, 1]}
    assert "measured" in map_sources(g, "lrn", 0).hops[0].rule
    # feature 7 of (3, 3, 4) is map 3, which the LRN (size 3) makes from maps 2 and 3
    assert as_dict(map_sources(g, "fl", 7)) == {"c1": [2, 3], "sc": [2, 3]}
    assert as_dict(map_sources(g, "fc", 1)) == perturbation_sources(g, "fc", 1) == {"c1": [0, 1, 2, 3],
                                                                                   "sc": [0, 1, 2, 3]}


def test_a_sequential_traces_too_and_renders():
    r = _rng(5)
    seq = nn.Sequential([("c1", nn.Conv2D(1, 4, 3, rng=r)), ("t", nn.Tanh()), ("p", nn.MaxPool2D(2)),
                         ("c2", nn.Conv2D(4, 4, 3, groups=2, rng=r))], input_shape=(10, 10, 1)).astype(np.float64)
    res = map_sources(seq, "c2", 3)
    assert as_dict(res) == {"c1": [2, 3]} == perturbation_sources(seq, "c2", 3)
    assert as_dict(map_sources(seq, "c1", 0)) == {"input": [0]}
    text = res.to_text()
    assert "c1 (Conv2D): maps 2–3 (2 of 4)" in text and "groups=2" in text and "p (MaxPool2D) maps 2–3" in text
    d = json.loads(json.dumps(res.to_dict()))
    assert d["sources"] == [{"layer": "c1", "kind": "Conv2D", "maps": [2, 3], "channels": 4}]
    assert res.maps_of("c1") == [2, 3] and "c1[2–3]" in repr(res)


def test_errors_name_the_argument():
    g = densenet_block()
    with pytest.raises(ValueError, match="layer must be the name of one of the model's layers .*received 'nope'"):
        map_sources(g, "nope", 0)
    with pytest.raises(ValueError, match=r"out_map must be in \[0, 9\] \(layer 'cat2' has 10 maps\); received 10"):
        map_sources(g, "cat2", 10)
    with pytest.raises(TypeError, match="out_map must be an int"):
        map_sources(g, "cat2", 1.0)
    seq = nn.Sequential([("c", nn.Conv2D(1, 2, 3))])
    with pytest.raises(ValueError, match="pass input_shape"):
        map_sources(seq, "c", 0)
    assert as_dict(map_sources(seq, "c", 1, input_shape=(5, 5, 1))) == {"input": [0]}
