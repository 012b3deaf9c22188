"""`summary` and the notebook display of graph models: rows in execution order with a "from" column,
structural map sources (concatenation offsets, a shuffle's permutation, depthwise convs), the
import log, and a Sequential's output unchanged."""
import json

import numpy as np

from featuremaps import nn, summary
from featuremaps.inspect import map_sources
from tests.test_map_sources import densenet_block, shufflenet_unit


def test_rows_follow_execution_order_with_what_each_node_reads():
    g = densenet_block()
    s = summary(g)
    assert [r["name"] for r in s.rows] == g.names()
    assert {r["name"]: r["from"] for r in s.rows}["cat2"] == ["cat1", "c2"]
    shapes = g.node_shapes()
    assert all(tuple(r["output_shape"]) == shapes[r["name"]] for r in s.rows)
    assert s.totals["params"] == g.num_parameters() and s.output_shape == [2, 2, 4]
    assert s.input_shape == [5, 5, 2] and s.error is None
    text = str(s)
    head = text.splitlines()[0]
    assert head.split()[:4] == ["layer", "(type)", "from", "output"]
    assert any(line.startswith("x (input)") and "5×5×2" in line for line in text.splitlines())
    cat2 = next(line for line in text.splitlines() if line.startswith("cat2 (Concatenate)"))
    assert "cat1, c2" in cat2 and "concatenation: cat1 at 0–6, c2 at 7–9" in cat2
    # the receptive field of a merge is the largest of its inputs': c0 (3), c1 (5), c2 (7) concatenated
    assert s["cat2"]["receptive_field"] == {"size": [7, 7], "jump": [1, 1]}
    d = json.loads(json.dumps(s.to_dict()))
    assert d == s.to_dict() and "import_log" not in d


def test_structural_map_sources_are_shown_where_they_are_structural():
    unit = shufflenet_unit(3, 6)
    s = summary(unit)
    perm = map_sources(unit, "shuffle", 0).hops[0].permutation
    assert perm == [(j % 3) * 2 + j // 3 for j in range(6)] == [0, 2, 4, 1, 3, 5]
    assert s["shuffle"]["map_sources"] == "shuffle of r1: map j ← π(j), π = [0, 2, 4, 1, 3, 5]"
    assert s["dw"]["map_sources"] == "depthwise: map o ← map o" and "depthwise: map o ← map o" in s["dw"]["note"]
    assert s["g1"]["map_sources"] is None and s["add"]["from"] == ["x", "b3"]
    text = str(s)
    assert "↳ shuffle of r1: map j ← π(j), π = [0, 2, 4, 1, 3, 5]" in text
    # the shuffle keeps every value at its position: the receptive field passes through it
    assert s["shuffle"]["receptive_field"] == s["r1"]["receptive_field"] == {"size": [1, 1], "jump": [1, 1]}
    assert s["dw"]["receptive_field"] == {"size": [3, 3], "jump": [1, 1]}


def test_import_log_is_shown_for_graphs_and_sequentials():
    g = densenet_block()
    g.import_log = ["Conv_0 + Add_1: the Add of a per-channel constant became c0's bias",
                    "Flatten_7: made channels-last"]
    s = summary(g)
    assert s.import_log == g.import_log and s.to_dict()["import_log"] == g.import_log
    lines = str(s).splitlines()
    assert lines[-3:] == ["import log:", "  " + g.import_log[0], "  " + g.import_log[1]]
    assert "fm-import-log" in s._repr_html_() and "per-channel constant" in s._repr_html_()
    seq = nn.Sequential([("c", nn.Conv2D(1, 2, 3))], input_shape=(5, 5, 1))
    before = str(summary(seq))
    seq.import_log = ["Reshape_3: folded for input (5, 5, 1)"]
    assert str(summary(seq)) == before + "\nimport log:\n  Reshape_3: folded for input (5, 5, 1)"


def test_a_sequential_summary_has_no_from_column():
    seq = nn.Sequential([("c", nn.Conv2D(1, 2, 3)), ("r", nn.ReLU())], input_shape=(5, 5, 1))
    s = summary(seq)
    assert s.graph is False and "from" not in str(s).splitlines()[0] and "from" not in s.rows[0]
    assert str(s).splitlines()[2].split() == ["input", "5×5×1"]


def test_shape_mismatch_in_a_graph_stops_the_rows_and_names_the_node():
    g = nn.Graph({"x": (6, 6, 3)}, [("a", nn.Conv2D(3, 4, 3), "x"), ("b", nn.Conv2D(3, 4, 3), "x"),
                                    ("bad", nn.Conv2D(5, 2, 1), "a"), ("s", nn.Add(), ["a", "b"])], "s")
    s = summary(g)
    assert [r["name"] for r in s.rows] == ["a", "b"] and s.output_shape is None
    assert s.error.startswith("layer 'bad' (Conv2D): got input shape (4, 4, 4); needs 5 input channels")
    assert "shape mismatch: layer 'bad'" in str(s)


def test_two_inputs_and_the_notebook_display():
    r = np.random.default_rng(0)
    g = nn.Graph({"a": (4, 4, 2), "b": (4, 4, 3)}, [("ca", nn.Conv2D(2, 3, 1, rng=r), "a"),
                                                    ("cat", nn.Concatenate(), ["ca", "b"])], "cat")
    s = summary(g)
    assert s.input_shape == {"a": [4, 4, 2], "b": [4, 4, 3]} and s.output_shape == [4, 4, 6]
    assert [label for label, _ in s.inputs] == ["a (input)", "b (input)"]
    assert "input 4×4×2, 4×4×3 → 4×4×6" in repr(s)
    html = g._repr_html_()
    assert "<th>from</th>" in html and html.count('class="fm-layer"') == 2
    assert '<td><b>cat</b></td><td>ca, b</td><td><code>Concatenate()</code></td><td>4×4×6</td>' in html
    assert "input 4×4×2, 4×4×3 → output 4×4×6" in html
    table = s._repr_html_()
    assert table.count('class="fm-input"') == 2 and "concatenation: ca at 0–2, b at 3–5" in table
