"""Build ONE self-contained HTML file that shows a model's feature maps for one input.

The page works offline: the script, the styles and every number are inlined. The numbers travel as
base64 little-endian float arrays in the model's own dtype (float32 normally): every layer's output
for the input (from `featuremaps.inspect.activations`, the engine's own forward pass) while they fit
the value budget, else an 8-bit preview of its first maps (see `_values`), and, for conv and dense
layers, their weights laid out as `featuremaps.inspect.filters_for_output` gives them
(`(kh, kw, C_in, C_out)`, zero where a map is not connected) plus `connections(layer)`.

Each entry names the entries it reads (`inputs`, `ins`), so the page reads a `Sequential` (a chain)
and an `nn.Graph` alike; for a Graph it also gets the blocks it folds into (`_graph.blocks`) and
draws the model as a DAG, with each layer's maps drawn on demand (thumbnails; full size when selected),
and its map sources (`_sources`): each layer header states the layer's structural channel wiring, and
the panel says which maps of which earlier layers feed the selected map of a concatenation, a
channel shuffle or a grouped conv (`featuremaps.inspect.map_sources`' answer).

A 3-channel input (a colour image; `rgb: true` on its entry, and on zero padding of it) is drawn as one
RGB picture above its three channel maps, labelled R, G, B. A conv that reads it shows each kernel
`w[:, :, :, m]` as one RGB tile (per filter, 0.5 + w / (2·max|w|): zero is mid-grey) beside its three
channel slices, and its decomposition labels the terms R, G, B: one 3-D kernel is three 2-D slices,
and the value is the bias plus the three channels' partial sums.

In the page, clicking a map highlights the input maps that feed it and shows its kernels; clicking a
pixel shows the decomposition `y = b + Σ_i Σ_pq w·x` of that value (the conv formula is stated in
`featuremaps.functional.conv`). The script computes the partial sums from exactly the embedded
numbers, shows the engine's value beside their total, and, for the units `explain` was run on at
build time (`references`), checks its numbers against `featuremaps.inspect.explain`.

Layout: a layer of 1×1 maps (LeNet-5's C5) is one compact strip of cells, laid out as the vector it
flattens to; on a narrow screen (≤ 900 px) the panel comes below the layer column, never over it.
The address names the selected unit (`#layer/map/row,col`, so a unit can be linked to); following a
link in the explanation (and, on a narrow screen, clicking a map) adds a history entry, so the
panel's "← Back" button and the browser's Back return to the previous selection and scroll position.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .. import functional as F
from .. import nn
from .._json import jsonable
from ..functional import window
from ..inspect.activations import activations, resolve_layer
from ..inspect.connectivity import connections, filters_for_output
from ..inspect.receptive import window_geometry
from ..tensor import as_array
from . import _graph, _sources, _values

__all__ = ["build_report", "report_html", "report_data", "WEIGHT_BUDGET"]

#: Bytes of layer weights the page may embed; layers past the budget show values only.
WEIGHT_BUDGET = 3_000_000


def _b64(a: np.ndarray, dtype: np.dtype) -> str:
    """Little-endian bytes of `a` in `dtype`, row-major, as base64 text."""
    a = np.ascontiguousarray(a, dtype=dtype.newbyteorder("<"))
    return base64.b64encode(a.tobytes()).decode("ascii")


def _finite_absmax(a: np.ndarray) -> float:
    a = np.abs(a[np.isfinite(a)]) if a.size else a
    return float(a.max()) if a.size else 0.0


def _finite_minmax(a: np.ndarray) -> tuple[float, float]:
    a = a[np.isfinite(a)]
    return (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)


def _conv_shape_op(layer, x_in: np.ndarray, dtype: np.dtype) -> dict:
    """A conv's geometry and how its maps connect, without its kernels (cheap at any size)."""
    conn = np.asarray(connections(layer), dtype=bool)  # (c_in, c_out)
    c_in, c_out = conn.shape
    kh, kw = as_array(layer.weight).shape[:2]
    geo = window_geometry(layer, x_in.shape[:2])
    return {"type": "conv", "kernel": [int(kh), int(kw)], "stride": list(geo.stride), "dilation": list(geo.dilation),
            "pad": [list(p) for p in geo.pads], "in_maps": int(c_in), **_connections_text(conn),
            "nbytes": int(kh * kw * c_in * c_out * dtype.itemsize), "_conn": conn}


def _connections_text(conn: np.ndarray) -> dict:
    """`conn` (c_in, c_out) for the page: a "01" string row-major up to 4,096 links; beyond, "full"
    when every map feeds every map, else the packed bits (row-major, most significant bit first) in base64."""
    if conn.size <= 4096:
        return {"connections": "".join("1" if v else "0" for v in conn.ravel())}
    if conn.all():
        return {"connections": "full"}
    return {"connections": None, "connections_bits": base64.b64encode(np.packbits(conn.ravel()).tobytes()).decode()}


def _conv_kernels(layer, op: dict, dtype: np.dtype) -> None:
    """Add a conv's kernels `(kh, kw, c_in, c_out)` (zero where a map is not connected, as
    `filters_for_output` gives them) and bias to its op."""
    conn = op.pop("_conn")
    w = as_array(layer.weight)
    if conn.all() and w.shape[2] == conn.shape[0]:  # every map reads every map: the weight is the kernel set
        kernels = w
    else:
        kernels = np.stack([filters_for_output(layer, o)[0] for o in range(conn.shape[1])], axis=-1)
    bias = getattr(layer, "bias", None)
    op["kernels"] = _b64(kernels, dtype)  # (kh, kw, c_in, c_out)
    op["bias"] = None if bias is None else _b64(as_array(bias), dtype)


def _dense_op(layer, dtype: np.dtype) -> dict:
    wt = as_array(layer.weight)  # (in, out)
    bias = getattr(layer, "bias", None)
    return {"type": "dense", "in_features": int(wt.shape[0]), "weight": _b64(wt, dtype),
            "bias": None if bias is None else _b64(as_array(bias), dtype), "nbytes": int(wt.size * dtype.itemsize)}


def _pool_op(layer, x_in: np.ndarray) -> dict | None:
    """A pooling layer's op, from its `decomposition` (max or mean) and `spatial` (a window or the map)."""
    mode = {"window_max": "max", "window_mean": "avg"}.get(layer.decomposition)
    if mode is None or layer.spatial not in ("window", "all"):
        return None
    if layer.spatial == "all":
        return {"type": "global_pool", "mode": mode}
    geo = window_geometry(layer, x_in.shape[:2])
    op = {"type": "pool", "mode": mode, "kernel": list(geo.kernel), "stride": list(geo.stride),
          "dilation": list(geo.dilation), "pad": [list(p) for p in geo.pads]}
    coef, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if mode == "avg" and coef is not None:  # a per-map coefficient and bias after the mean: LeNet's subsampling
        coef = as_array(coef)
        op.update(mode="subsampling", coef=coef.tolist(),
                  bias=np.zeros_like(coef).tolist() if bias is None else as_array(bias).tolist())
    else:
        op["count_include_pad"] = bool(getattr(layer, "count_include_pad", True))
    return op


def _layer_op(layer, x_in: np.ndarray, out: np.ndarray) -> dict | None:
    """How the page decomposes a layer that embeds no weights, from its class attributes (see
    `featuremaps.nn.Module`); None when the page shows its values only."""
    if layer.role == "pool" and x_in.ndim == 3:
        return _pool_op(layer, x_in)
    if layer.elementwise and x_in.shape == out.shape:
        return {"type": "elementwise"}
    if layer.spatial == "flatten":
        return {"type": "flatten"}
    if layer.spatial == "pad" and x_in.ndim == 3:
        (t, b), (l, r) = window.resolve_padding(layer.padding, x_in.shape[:2], (1, 1), (1, 1),  # noqa: E741
                                                op=type(layer).__name__, allow_strings=False)
        return {"type": "zeropad", "pad": [[t, b], [l, r]]}
    return None


def _describe(layer) -> str:
    try:
        return repr(layer)
    except Exception:  # a repr must never stop a report
        return type(layer).__name__


def _default_unit(arr: np.ndarray, out_map: int | None = None) -> tuple[int, tuple[int, int] | None]:
    """The unit the page selects first in a layer: the argmax of `out_map` (default: the map with the
    largest value); for a vector, the largest unit. Non-finite values never win."""
    a = np.where(np.isfinite(arr), arr, -np.inf)
    if arr.ndim == 1:
        return int(np.argmax(a)), None
    m = int(np.argmax(a.reshape(-1, arr.shape[2]).max(axis=0))) if out_map is None else out_map
    r, c = np.unravel_index(int(np.argmax(a[:, :, m])), arr.shape[:2])
    return m, (int(r), int(c))


def _reference(model, x, name: str, out_map: int, position) -> dict:
    """`explain(...).to_dict()` for one unit, embedded so the page can compare its own sums with it."""
    from ..inspect import explain

    e = explain(model, x, name, out_map, position)
    d = e.to_dict()
    keep = ("layer", "kind", "out_map", "position", "bias", "pre_activation", "engine_value", "difference",
            "agrees", "activation", "pooled", "winner", "formula")
    ref = {k: d.get(k) for k in keep}
    if e.role == "conv":  # the partial sum per input map (windows and kernels are in the page already)
        ref["terms"] = [{"input_map": t["input_map"], "partial_sum": t["partial_sum"]} for t in d["terms"]]
    return jsonable(ref)


def _check_select(select, acts) -> tuple[str, int | None, tuple[int, int] | None] | None:
    """`select` as (layer, out_map or None, position or None); its values are checked by `explain`."""
    if select is None:
        return None
    if isinstance(select, str):
        select = (select,)
    if not isinstance(select, (tuple, list)) or not 1 <= len(select) <= 3 or not isinstance(select[0], str):
        raise TypeError("build_report: select must be a layer name, (layer, map) or (layer, map, (row, col)); "
                        f"received {select!r}")
    names = [a.name for a in acts]
    if select[0] not in names[1:]:
        raise ValueError(f"build_report: select: no layer named {select[0]!r}; valid names: {', '.join(names[1:])}")
    out_map = select[1] if len(select) > 1 else None
    position = tuple(select[2]) if len(select) > 2 and select[2] is not None else None
    return select[0], out_map, position


def _layer_entries(model, acts, dtype: np.dtype, ins: list[list[int]]) -> tuple[list[dict], list[tuple]]:
    """One entry per activation (its inputs, range, the layer's op; values are set later) and the
    `(index, 'conv' | 'dense', layer, input)` of the layers whose weights compete for the budget."""
    layers, pending = [], []
    for k, act in enumerate(acts):
        arr = np.asarray(act.array)
        lo, hi = _finite_minmax(arr)
        entry = {"index": k, "name": act.name, "kind": act.kind, "shape": list(arr.shape),
                 "inputs": [acts[i].name for i in ins[k]], "ins": list(ins[k]),
                 "values": None, "preview": None, "absmax": _finite_absmax(arr), "min": lo, "max": hi,
                 "op": None, "describe": ""}
        if ins[k]:
            layer = resolve_layer(model, act.name)
            entry["describe"] = _describe(layer)
            x_in = np.asarray(acts[ins[k][0]].array)
            if layer.role == "conv" and x_in.ndim == 3:
                pending.append((k, "conv", layer, x_in))
            elif layer.role == "dense" and x_in.ndim == 1:
                pending.append((k, "dense", layer, x_in))
            elif layer.role == "merge":
                entry["op"] = _merge_op(layer, [np.asarray(acts[i].array) for i in ins[k]], arr)
            else:
                entry["op"] = _layer_op(layer, x_in, arr)
        layers.append(entry)
    return layers, pending


def _merge_op(layer, xs: list[np.ndarray], out: np.ndarray) -> dict:
    """A merge: the page shows each input's value at the unit (elementwise merges, equal shapes) or
    which input map a map comes from (a channel concatenation)."""
    if layer.elementwise and all(x.shape == out.shape for x in xs):
        return {"type": "merge", "how": "elementwise"}
    if layer.spatial == "same" and all(x.ndim == 3 and x.shape[:2] == out.shape[:2] for x in xs):
        return {"type": "merge", "how": "concat", "offsets": np.cumsum([0] + [x.shape[2] for x in xs]).tolist()}
    return {"type": "merge", "how": "other"}


def _embed_values(layers: list[dict], acts, dtype: np.dtype, first: list[int], value_budget: int) -> set[int]:
    """Set each entry's exact values (within `value_budget` bytes, see `_values`) or its preview;
    returns the indices embedded exactly."""
    nbytes = [int(np.asarray(a.array).size) * dtype.itemsize for a in acts]
    exact = _values.choose_exact(nbytes, [e["ins"] for e in layers], first, value_budget)
    grey = _grey(layers)
    for k, (entry, act) in enumerate(zip(layers, acts)):
        if k in exact:
            entry["values"] = _b64(np.asarray(act.array), dtype)
        else:
            entry["preview"] = _values.preview(act.array, k in grey, entry["min"], entry["max"], entry["absmax"])
    return exact


def _grey(layers: list[dict]) -> set[int]:
    """Entries drawn in grey (as the page does): the inputs, and padding of a grey entry."""
    grey = set()
    for k, e in enumerate(layers):
        if not e["ins"] or (e["op"] and e["op"]["type"] == "zeropad" and e["ins"][0] in grey):
            grey.add(k)
    return grey


#: The names the page gives the three channels of a colour input.
RGB_CHANNELS = ("R", "G", "B")


def _mark_rgb(layers: list[dict]) -> None:
    """Flag the entries the page draws as one colour picture (`rgb`, with `channels` R, G, B): an input
    of 3 channels, and zero padding of such an entry. A conv that reads one gets its kernels drawn in
    colour and its decomposition labelled by channel."""
    for e in layers:
        src = layers[e["ins"][0]] if e["ins"] else None
        e["rgb"] = len(e["shape"]) == 3 and e["shape"][2] == 3 and (
            src is None or bool(e["op"] and e["op"]["type"] == "zeropad" and src["rgb"]))
        if e["rgb"]:
            e["channels"] = list(RGB_CHANNELS)


def _embed_weights(layers: list[dict], pending: list[tuple], dtype: np.dtype, exact: set[int]) -> None:
    """Set the op of each pending layer: its weights while they fit the budget, conv layers first (they
    are what the page is about), then dense layers, and only where the page has the values to use them
    (the layer's and its input's); an 'omitted' op otherwise, which still says how a conv connects."""
    budget = WEIGHT_BUDGET
    for k, what, layer, x_in in sorted(pending, key=lambda p: (p[1] != "conv", p[0])):
        op = _conv_shape_op(layer, x_in, dtype) if what == "conv" else _dense_op(layer, dtype)
        usable = k in exact and layers[k]["ins"][0] in exact
        if usable and op["nbytes"] <= budget:
            budget -= op["nbytes"]
            if what == "conv":
                _conv_kernels(layer, op, dtype)
            layers[k]["op"] = op
            continue
        reason = (f"its weights ({op['nbytes'] / 1e6:.1f} MB) do not fit the report's "
                  f"{WEIGHT_BUDGET / 1e6:.0f} MB weight budget; run `featuremaps explain` instead") if usable else (
                  "the values of this layer or its input are previews only (the report's value budget); "
                  f"run `featuremaps report --layer {layers[k]['name']}` or `featuremaps explain` instead")
        omitted = {"type": "omitted", "was": what, "reason": reason}
        if what == "conv":  # how the maps connect costs little, and the page highlights it
            keys = ("kernel", "stride", "dilation", "pad", "in_maps", "connections", "connections_bits")
            omitted.update({key: op[key] for key in keys if key in op})
        layers[k]["op"] = omitted


def _prediction(model, acts) -> dict | None:
    """The predicted class and the class probabilities, from the model's output vector: its softmax,
    or the vector itself when the last layer is a Softmax; None for a map, one value or non-finite output."""
    out = np.asarray(acts[-1].array)
    if out.ndim != 1 or out.size < 2 or not np.all(np.isfinite(out)):
        return None
    z = out.astype(np.float64)
    last = resolve_layer(model, acts[-1].name) if len(acts) > 1 else None
    p = z if isinstance(last, nn.Softmax) else as_array(F.softmax(z))
    return {"class": int(np.argmax(p)), "probs": p.tolist()}


def _initial(model, x, acts, select) -> tuple[dict | None, dict | None]:
    """The unit the page opens on and its reference, from `select` (None: the page picks)."""
    if select is None:
        return None, None
    name, out_map, position = select  # explain() validates the map and position
    arr = np.asarray(acts[[a.name for a in acts].index(name)].array)
    if arr.ndim == 3 and out_map is not None and position is None:
        if isinstance(out_map, (int, np.integer)) and 0 <= out_map < arr.shape[2]:
            position = _default_unit(arr, int(out_map))[1]
    elif out_map is None:
        out_map, position = _default_unit(arr)
    ref = _graph_safe(_reference, model, x, name, out_map, position)
    return ref, {"layer": name, "out_map": int(out_map),
                 "position": None if position is None else [int(v) for v in position]}


def _references(model, x, acts, layers: list[dict], pending: list[tuple]) -> list[dict]:
    """`explain` at the strongest unit of every layer whose weights the page embeds."""
    refs = []
    for k, _, _, _ in pending:
        if layers[k]["op"]["type"] in ("conv", "dense"):
            out_map, position = _default_unit(np.asarray(acts[k].array))
            ref = _graph_safe(_reference, model, x, acts[k].name, out_map, position)
            if ref is not None:
                refs.append(ref)
    return refs


def _graph_safe(fn, model, *args):
    """`fn(model, *args)`; on a Graph, None when it fails (inspection of graphs is still growing: the
    page then checks nothing for that unit, and says so)."""
    if not isinstance(model, nn.Graph):
        return fn(model, *args)
    try:
        return fn(model, *args)
    except (ValueError, TypeError):
        raise
    except Exception:  # noqa: BLE001  (an inspection tool that does not read graphs yet)
        return None


def _first_layers(layers: list[dict], pending: list[tuple], select, itemsize: int) -> list[int]:
    """The entry the page opens on, as the page picks it: `select`'s layer, else the last conv layer
    whose kernels fit the weight budget and whose maps have more than one pixel (else the last such
    conv, the last dense layer, the last layer)."""
    if select is not None:
        return [next(e["index"] for e in layers if e["name"] == select[0])]

    def fits(layer, x_in) -> bool:
        kh, kw, _, c_out = as_array(layer.weight).shape
        return kh * kw * x_in.shape[2] * c_out * itemsize <= WEIGHT_BUDGET

    convs = [k for k, what, layer, x_in in pending if what == "conv" and fits(layer, x_in)]
    wide = [k for k in convs if int(np.prod(layers[k]["shape"][:2])) > 1]
    dense = [k for k, what, _, _ in pending if what == "dense"]
    return [(wide or convs or dense or [len(layers) - 1])[-1]]


def _model_config(model) -> dict | None:
    try:
        return model.get_config()
    except Exception:  # a model without a config still gets a report
        return None


def report_data(model, x, *, title: str | None = None, label=None, meta: dict | None = None, select=None,
                references: bool = True, value_budget: int | None = None) -> dict:
    """The JSON document the page is built from (see the module docstring for what it holds).

    `value_budget`: bytes of layer values embedded exactly (default `featuremaps.report._values.VALUE_BUDGET`);
    the other layers get 8-bit previews."""
    value_budget = _values.VALUE_BUDGET if value_budget is None else int(value_budget)
    meta = dict(meta or {})
    acts = activations(model, x)
    select = _check_select(select, acts)
    dtype = np.dtype(np.float64) if acts[0].array.dtype == np.float64 else np.dtype(np.float32)
    ins = _graph.entry_inputs(model, [a.name for a in acts])
    layers, pending = _layer_entries(model, acts, dtype, ins)
    exact = _embed_values(layers, acts, dtype, _first_layers(layers, pending, select, dtype.itemsize),
                          value_budget)
    _embed_weights(layers, pending, dtype, exact)
    _mark_rgb(layers)
    prediction = _prediction(model, acts)
    first, initial = _initial(model, x, acts, select)
    refs = ([] if first is None else [first]) + (_references(model, x, acts, layers, pending) if references else [])
    classes = meta.get("classes") or meta.get("class_names")
    if classes is not None and (prediction is None or len(classes) != acts[-1].array.size):
        classes = None
    if label is not None and not isinstance(label, str):
        label = int(label) if isinstance(label, (int, np.integer)) else str(label)
    return jsonable({
        "format": "featuremaps-report", "version": 1,
        "title": title or _default_title(model, meta),
        "model_class": type(model).__name__, "model_config": _model_config(model),
        "dtype": dtype.name, "label": label, "classes": classes, "prediction": prediction,
        "meta": {k: meta[k] for k in ("dataset", "epoch", "normalization", "path") if k in meta},
        "layers": layers, "references": refs, "initial": initial, "weight_budget": WEIGHT_BUDGET,
        "value_budget": value_budget, "graph": _graph_view(model, layers),
    })


def _graph_view(model, layers: list[dict]) -> dict | None:
    """For a Graph: the blocks the page folds it into (see `_graph.blocks`) and its map sources (see
    `_sources.sources_view`: `wiring`, `nodes`, `paths`); None for a Sequential."""
    if not isinstance(model, nn.Graph):
        return None
    n_inputs = sum(1 for e in layers if not e["ins"])
    view = {"blocks": _graph.blocks([e["name"] for e in layers], [e["ins"] for e in layers], n_inputs)}
    view.update(_sources.sources_view(model, {e["name"]: tuple(e["shape"]) for e in layers}))
    return view


def _default_title(model, meta: dict) -> str:
    name = meta.get("model_name") or (meta.get("model") or {}).get("name") if isinstance(meta.get("model"), dict) \
        else meta.get("model_name")
    return f"Feature maps of {name or type(model).__name__}"


def report_html(model, x, *, title: str | None = None, label=None, meta: dict | None = None, select=None) -> str:
    """The report page as one HTML string (see `build_report`)."""
    from ._css import CSS
    from ._js import JS
    from .. import __version__

    data = report_data(model, x, title=title, label=label, meta=meta, select=select)
    # "<" as \u003c: no "</script>" or "<!--" can end or confuse the data block, whatever the title says
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    page_title = html.escape(data["title"])
    return _TEMPLATE.format(title=page_title, css=CSS, js=JS, data=payload, version=html.escape(__version__))


def build_report(model, x, path, *, title: str | None = None, label=None, meta: dict | None = None,
                 select=None) -> Path:
    """Write the self-contained HTML report of `model` on one input `x` to `path`; returns the path.

    `x` is one preprocessed input `(H, W, C)` (or a batch of one), as `featuremaps.inspect.activations`
    takes it. `label` (the true class, optional) and `meta` (a checkpoint's meta: `classes`, `dataset`,
    ... optional) only label the page. `select` picks the unit the page opens on: a layer name,
    `(layer, map)` or `(layer, map, (row, col))` (default: the strongest pixel of the last conv layer);
    it is checked by `explain`, so an unknown layer, map or position raises a ValueError.
    The page needs no network: open it from disk in any browser.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"build_report: path must end in .html or .htm; received {str(path)!r}")
    if not path.parent.exists():
        raise ValueError(f"build_report: the folder of path does not exist; received {str(path)!r}")
    text = report_html(model, x, title=title, label=label, meta=meta, select=select)
    path.write_text(text, encoding="utf-8")
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<a class="skip" href="#panel">Skip to the explanation panel</a>
<header class="page-top">
  <h1 id="title">{title}</h1>
  <p id="summary" class="summary"></p>
</header>
<main class="layout">
  <section id="layers" aria-labelledby="layers-h">
    <h2 id="layers-h" class="visually-hidden">Layers, from input to output</h2>
    <noscript><p>This report draws its feature maps with JavaScript; please enable it.</p></noscript>
  </section>
  <aside id="panel" aria-labelledby="panel-h" tabindex="-1">
    <p class="backbar"><button type="button" id="back" class="linkish" hidden>← Back</button></p>
    <h2 id="panel-h">Select a map</h2>
    <p id="announce" class="visually-hidden" aria-live="polite"></p>
    <div id="panel-body"><p>Click any feature map (or focus it and press Enter) to see what feeds it.</p></div>
  </aside>
</main>
<footer class="foot">
  <p>Made by featuremaps {version}. Every number on this page comes from the model's own forward pass on this
  input; the sums in the explanation are computed in your browser from exactly those numbers and the layer's
  weights. Colours: blue negative, white zero, red positive (scale per layer); the input is shown in grey (a
  colour input also as one RGB picture, and the kernels that read it as RGB tiles, mid-grey for zero).
  The address names the selected unit (#layer/map/row,col), so it can be bookmarked; after following a link
  in the explanation, ← Back (or the browser's Back) returns to where you were.</p>
</footer>
<script type="application/json" id="fm-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""
