"""`summary(model, input_shape=None)`: a per-layer table of shapes, parameters, costs and receptive fields.

Nothing is run: shapes come from each layer's `compute_output_shape`. For each layer the table gives

- the output shape `(H, W, C)` (or `(F,)`) of one example;
- the kernel shape: HWIO `[kh, kw, in/groups, out]` for a conv, `[in, out]` for a dense layer;
- which input maps each output map reads: `full`, `groups=g`, or a connection table's count;
- trainable parameters, with the formula filled in so a reader can check it; entries that a
  connection table holds at zero are not counted (LeCun et al. 1998 count C3 this way);
- multiply-adds per example: multiplications by a weight (conv: OH·OW·links·kh·kw; dense: in·out;
  Subsampling2D and BatchNorm2D: one per output value); pooling and activations count 0;
- "connections" in the sense of LeCun et al. 1998: weight uses including biases per example,
  i.e. parameters-per-output-position × positions; for a conv `OH·OW·(links·kh·kw + out)`;
- `buffers`: untrained state such as BatchNorm's running statistics (not in the printed table);
- the receptive field of one unit, in input pixels: its size and its jump (the input-pixel distance
  between neighbouring units), from `size += (d·(k−1)) · jump; jump *= stride` per windowed layer.
  After a Flatten, Dense or global pool every unit sees the whole input ("global").

When the input shape does not fit a layer the rows stop there and `.error` says which layer, the
shape it got and what it needs; nothing raises.

A `Graph` is summarised node by node in execution order, with a "from" column (Keras's "Connected
to") naming what each node reads; a merge's receptive field is the largest of its inputs'. Where a
node's channel wiring is structural — a concatenation's offsets, a channel shuffle's permutation, a
depthwise conv — `map_sources` says how (row key `map_sources`, shown in "maps read" or the note).
A model with an `import_log` (set by `featuremaps.onnx.load`) gets it in `.import_log`, printed
under the table and in `to_dict()`.
"""
from __future__ import annotations

import json

import numpy as np

from .. import nn
from .._html import esc, wrap
from ..nn.module import ShapeError
from .receptive import layer_role, window_geometry
from .sources import node_wiring

__all__ = ["summary", "Summary", "model_html"]


def _leaves(model: nn.Module, prefix: str = ""):
    """(dotted name, layer) for the layers of (possibly nested) Sequentials, in order."""
    if isinstance(model, nn.Sequential):
        for name, child in model.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or type(model).__name__, model


def _n(x: int) -> str:
    return f"{x:,}"


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape)


def _conv_row(layer: nn.Conv2D, in_shape, out_shape) -> dict:
    kh, kw = layer.kernel_size
    cin, cout, g = layer.in_channels, layer.out_channels, layer.groups
    links, bias = layer.links, (cout if layer.use_bias else 0)
    oh, ow = out_shape[:2]
    params = links * kh * kw + bias
    plus = f"+{cout}" if bias else ""
    if layer.connections is not None:
        fans = layer.connections.sum(axis=0)
        k = str(int(fans[0])) if fans.min() == fans.max() else f"{int(fans.min())}–{int(fans.max())}"
        links_text = f"{cin}→{cout} maps, {links} of {cin * cout} links"
        formula = f"{links}·({kh}·{kw}){plus}"
        over = f"over its {k} connected input maps"
    elif g > 1:
        links_text = f"groups={g}"
        formula = f"{cout}·({cin}/{g}·{kh}·{kw}){plus}"
        over = f"over the {cin // g} maps of its group"
    else:
        links_text = "full"
        formula = f"{cout}·({cin}·{kh}·{kw}){plus}"
        over = f"over all {cin} input maps"
    if cin == 1:
        note = (f"each of the {cout} maps reads the single input map; a separate-2-D-convolution scheme "
                f"would also have produced 1·{cout} = {_n(cout)} maps")
    else:
        note = (f"each of the {cout} maps sums {over}; a separate-2-D-convolution scheme "
                f"would have produced {cin}·{cout} = {_n(cin * cout)} maps")
    return {"kernel": [kh, kw, cin // g, cout], "links": links_text, "params": params,
            "params_formula": f"{formula} = {_n(params)}", "macs": oh * ow * links * kh * kw,
            "connections": oh * ow * params, "note": note}


def _dense_row(layer: nn.Dense, in_shape, out_shape) -> dict:
    i, o = layer.in_features, layer.out_features
    params = i * o + (o if layer.use_bias else 0)
    formula = f"{i}·{o}" + (f"+{o}" if layer.use_bias else "")
    return {"kernel": [i, o], "links": "full", "params": params, "params_formula": f"{formula} = {_n(params)}",
            "macs": i * o, "connections": params}


def _per_map_row(c: int, positions: int, extra_inputs: int) -> dict:
    """Layers with one coefficient and one bias per map (Subsampling2D, BatchNorm2D)."""
    return {"params": 2 * c, "params_formula": f"2·{c} = {_n(2 * c)}",
            "macs": positions * c, "connections": positions * c * (extra_inputs + 1)}


def _row(name: str, layer: nn.Module, in_shape: tuple, out_shape: tuple) -> dict:
    row = {"name": name, "type": type(layer).__name__, "input_shape": list(in_shape),
           "output_shape": list(out_shape), "kernel": None, "links": None, "params": 0, "params_formula": None,
           "macs": 0, "connections": 0, "receptive_field": None, "note": None,
           "buffers": int(sum(b.size for _, b in layer.named_buffers()))}
    if isinstance(layer, nn.Conv2D):
        row.update(_conv_row(layer, in_shape, out_shape))
    elif isinstance(layer, nn.Dense):
        row.update(_dense_row(layer, in_shape, out_shape))
    elif isinstance(layer, nn.Subsampling2D):
        k = layer.kernel_size
        row.update(_per_map_row(layer.channels, out_shape[0] * out_shape[1], k * k))
    elif isinstance(layer, nn.BatchNorm2D):
        positions = int(np.prod(out_shape[:-1]))
        row.update(_per_map_row(layer.num_features, positions, 1))
    else:
        params = layer.num_parameters()
        if params:
            row.update(params=params, params_formula=f"{_n(params)}")
    return row


def _advance_field(field, layer, in_shape: tuple):
    """Receptive field after `layer`: dict(size=[h, w], jump=[h, w]), "global", or None (unknown).

    The layer's window comes from `receptive.window_geometry`, the same geometry the exact
    `receptive_field` traces back through."""
    if field is None or field == "global":
        return field
    role = layer_role(layer)
    if role in ("global_pool", "dense", "flatten"):
        return "global"
    if role not in ("conv", "pool"):
        return field if role in ("pad", "activation", "elementwise") else None
    geom = window_geometry(layer, tuple(in_shape[:2]))
    size, jump = list(field["size"]), list(field["jump"])
    for a, axis in enumerate(geom):
        size[a] += (axis.span - 1) * jump[a]
        jump[a] *= axis.s
    return {"size": size, "jump": jump}


def _field_text(field) -> str:
    if field is None:
        return "?"
    if field == "global":
        return "global"
    (sh, sw), (jh, jw) = field["size"], field["jump"]
    size = f"{sh}" if sh == sw else f"{sh}×{sw}"
    jump = f"{jh}" if jh == jw else f"{jh}×{jw}"
    return f"{size}/{jump}"


class Summary:
    """The result of `summary`: `.rows` (one dict per layer), `.totals`, `.error` (None or the
    mismatch message), `.input_shape`, `.output_shape` (None after a mismatch), `str()` (the table),
    `.to_dict()` (JSON-able), a short `repr()` and `_repr_html_()` (the table, for notebooks)."""

    def __init__(self, input_shape, rows, totals, error, output_shape, *, inputs=None, graph: bool = False,
                 import_log=None):
        self.input_shape, self.rows, self.totals = input_shape, rows, totals
        self.error, self.output_shape = error, output_shape
        self.inputs = inputs if inputs is not None else [("input", input_shape)]  # (label, shape) rows
        self.graph, self.import_log = graph, import_log

    def __getitem__(self, name: str) -> dict:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(f"Summary: no row named {name!r}; rows are {[r['name'] for r in self.rows]}")

    def to_dict(self) -> dict:
        d = {"input_shape": self.input_shape, "output_shape": self.output_shape, "rows": self.rows,
             "totals": self.totals, "error": self.error}
        if self.import_log is not None:
            d["import_log"] = list(self.import_log)
        return d

    @property
    def _head(self) -> list[str]:
        return self._HEAD[:1] + ["from"] + self._HEAD[1:] if self.graph else list(self._HEAD)

    def _row_cells(self, row: dict) -> list[str]:
        """The cells after the layer's name: its inputs for a graph, then `_cells`."""
        return ([", ".join(row["from"])] if self.graph else []) + self._cells(row)

    def _blank(self) -> list[str]:
        return [""] * (len(self._head) - 2)

    @property
    def _numeric(self) -> set:
        return {5, 6, 7} if self.graph else {4, 5, 6}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    _HEAD = ["layer (type)", "output", "kernel", "maps read", "parameters", "mult-adds", "connections",
             "field/jump"]

    @staticmethod
    def _cells(row: dict) -> list[str]:
        """The printed table's cells for one layer, after its name: output ... field/jump."""
        return [_shape(row["output_shape"]),
                "" if row["kernel"] is None else "[" + ", ".join(map(str, row["kernel"])) + "]",
                row["links"] or "", row["params_formula"] or ("0" if not row["params"] else _n(row["params"])),
                _n(row["macs"]) if row["macs"] else "", _n(row["connections"]) if row["connections"] else "",
                _field_text(row["receptive_field"])]

    def _total_cells(self) -> list[str]:
        t = self.totals
        return ([""] if self.graph else []) + ["", "", "", _n(t["params"]), _n(t["macs"]), _n(t["connections"]), ""]

    def _input_cells(self, label: str, shape) -> list[str]:
        return [label] + ([""] if self.graph else []) + [_shape(shape)] + [""] * 6

    def __str__(self) -> str:
        head = self._head
        table = [head] + [self._input_cells(label, shape) for label, shape in self.inputs]
        notes = {}
        for row in self.rows:
            table.append([f"{row['name']} ({row['type']})"] + self._row_cells(row))
            if row["note"]:
                notes[len(table) - 1] = row["note"]
        table.append(["total"] + self._total_cells())
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        right = self._numeric

        def line(r):
            cells = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(head))
        out = [line(head), rule]
        for i, r in enumerate(table[1:-1], start=1):
            out.append(line(r))
            if i in notes:
                out.append("    ↳ " + notes[i])
        out += [rule, line(table[-1])]
        if self.error:
            out.append(f"shape mismatch: {self.error}")
        if self.import_log:
            out += ["import log:"] + [f"  {entry}" for entry in self.import_log]
        return "\n".join(out)

    def __repr__(self) -> str:
        """One or two lines: the layer count, the shapes and the totals (`print()` it for the table)."""
        t = self.totals
        out = "→ " + _shape(self.output_shape) if self.output_shape is not None else "(stops at a shape mismatch)"
        n = len(self.rows)
        ins = ", ".join(_shape(s) for _, s in self.inputs)
        text = (f"<Summary of {n} layer{'s' if n != 1 else ''}: input {ins} {out}; "
                f"{_n(t['params'])} parameters, {_n(t['macs'])} mult-adds, {_n(t['connections'])} connections; "
                "print() it for the table>")
        return text + (f"\n  shape mismatch: {self.error}" if self.error else "")

    def _repr_html_(self) -> str:
        """The table as HTML for Jupyter: one `<tr class="fm-layer">` per row of `.rows`, the notes
        under their layer, the totals in the footer and the shape mismatch, if any, below."""
        num = self._numeric  # parameters, mult-adds, connections

        def tds(cells: list[str]) -> str:
            return "".join(f'<td class="num">{esc(c)}</td>' if k in num else f"<td>{esc(c)}</td>"
                           for k, c in enumerate(cells, start=1))

        head = "".join(f'<th class="num">{esc(h)}</th>' if k in num else f"<th>{esc(h)}</th>"
                       for k, h in enumerate(self._head))
        body = [f'<tr class="fm-input"><td>{esc(label)}</td>{tds(self._input_cells(label, shape)[1:])}</tr>'
                for label, shape in self.inputs]
        for row in self.rows:
            body.append(f'<tr class="fm-layer" data-name="{esc(row["name"])}" data-params="{row["params"]}">'
                        f'<td><b>{esc(row["name"])}</b> ({esc(row["type"])})</td>{tds(self._row_cells(row))}</tr>')
            if row["note"]:
                body.append(f'<tr class="fm-note"><td colspan="{len(self._head)}">↳ {esc(row["note"])}</td></tr>')
        foot = f'<tr class="fm-total"><td>total</td>{tds(self._total_cells())}</tr>'
        error = f'<p class="fm-bad">shape mismatch: {esc(self.error)}</p>' if self.error else ""
        log = ""
        if self.import_log:
            log = '<p>import log:</p><ul class="fm-import-log">' + "".join(
                f"<li>{esc(entry)}</li>" for entry in self.import_log) + "</ul>"
        return wrap(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                    f"<tfoot>{foot}</tfoot></table>{error}{log}", "summary")


def _layer_list(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, layer) for a model display: a Sequential's layers as `summary` lists them, or
    the leaf modules of any other container."""
    if isinstance(model, nn.Sequential):
        return list(_leaves(model))
    if isinstance(model, nn.Graph):
        return [(n.name, n.layer) for n in model.nodes()]
    return [(name, m) for name, m in model.named_modules() if name and not m._modules]


def model_html(model: nn.Module) -> str:
    """A model as HTML for Jupyter (`Module._repr_html_`): one `<tr class="fm-layer">` per layer with
    its constructor (`repr`), its output shape for one example when the model knows its input shape
    (a Sequential's `input_shape`; computed by `summary`, nothing is run) and its parameter count."""
    if not model._modules:  # a single layer: its constructor and parameter count
        return wrap(f"<p><code>{esc(_describe(model))}</code>: {_n(model.num_parameters())} parameters</p>", "model")
    layers = _layer_list(model)
    s = summary(model) if isinstance(model, (nn.Sequential, nn.Graph)) and _knows_shape(model) else None
    shapes = {} if s is None else {r["name"]: _shape(r["output_shape"]) for r in s.rows}
    reads = {n.name: ", ".join(n.inputs) for n in model.nodes()} if isinstance(model, nn.Graph) else None
    total = model.num_parameters()
    facts = [f"{len(layers)} layer{'s' if len(layers) != 1 else ''}", f"{_n(total)} parameters"]
    if s is not None:
        out = s.output_shape
        out = "" if out is None else " → output " + (_shape(out) if not out or not isinstance(out[0], list)
                                                      else ", ".join(_shape(o) for o in out))
        facts.insert(1, "input " + ", ".join(_shape(shape) for _, shape in s.inputs) + out)
    head = f"<p><b>{esc(type(model).__name__)}</b>: {esc(', '.join(facts))}</p>"
    cols = "<th>#</th><th>layer</th>" + ("<th>from</th>" if reads is not None else "") + "<th>module</th>" \
        + ("<th>output</th>" if s is not None else "") \
        + '<th class="num">parameters</th>'
    rows = []
    for k, (name, layer) in enumerate(layers):
        shape = f"<td>{esc(shapes.get(name, '—'))}</td>" if s is not None else ""
        params = layer.num_parameters()
        src = "" if reads is None else f"<td>{esc(reads.get(name, ''))}</td>"
        rows.append(f'<tr class="fm-layer" data-name="{esc(name)}" data-params="{params}"><td class="num">{k}</td>'
                    f"<td><b>{esc(name)}</b></td>{src}<td><code>{esc(_describe(layer))}</code></td>{shape}"
                    f'<td class="num">{_n(params)}</td></tr>')
    note = ""
    if s is None and isinstance(model, nn.Sequential):
        note = ("<p>Give the model an input shape (<code>Sequential(..., input_shape=(H, W, C))</code>) or call "
                "<code>featuremaps.summary(model, input_shape)</code> to see each layer's output shape.</p>")
    elif s is not None and s.error:
        note = f'<p class="fm-bad">shape mismatch: {esc(s.error)}</p>'
    return wrap(f"{head}<table><thead><tr>{cols}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}", "model")


def _knows_shape(model) -> bool:
    if isinstance(model, nn.Graph):
        return all(s is not None for s in model.input_shapes.values())
    return model.input_shape is not None


def _describe(layer: nn.Module) -> str:
    try:
        return repr(layer)
    except Exception:  # a display must never fail on a user layer's repr
        return type(layer).__name__


def summary(model: nn.Module, input_shape=None) -> Summary:
    """Summarise `model` for one example of `input_shape` (default: `model.input_shape`).

    See the module docstring for what each column means. Never runs the model and never raises on
    a shape mismatch: the mismatch goes into `.error` and the table stops at that layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: model must be a featuremaps.nn.Module; received {type(model).__name__}")
    log = getattr(model, "import_log", None)
    log = None if log is None else [str(entry) for entry in log]
    if isinstance(model, nn.Graph):
        return _graph_summary(model, input_shape, log)
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError("summary: input_shape not given and the model has no input_shape; pass e.g. "
                             "input_shape=(28, 28, 1) (one example, no batch dimension)")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"summary: input_shape must be a tuple of ints such as (28, 28, 1); "
                        f"received {input_shape!r}") from None
    rows, error = [], None
    field = {"size": [1, 1], "jump": [1, 1]} if len(shape) == 3 else "global"
    for name, layer in _leaves(model):
        try:
            out = tuple(int(s) for s in layer.compute_output_shape(shape))
        except ShapeError as e:
            error = str(e if e.path else e.within(name))
            break
        field = _advance_field(field, layer, shape)
        row = _row(name, layer, shape, out)
        row["receptive_field"] = field
        rows.append(row)
        shape = out
    totals = {key: int(sum(r[key] for r in rows)) for key in ("params", "macs", "connections")}
    return Summary(list(int(s) for s in input_shape), rows, totals, error, None if error else list(shape),
                   import_log=log)


def _merge_fields(fields: list):
    """A merge's receptive field: the largest of its inputs' (None when one is unknown or the jumps differ)."""
    if any(f is None for f in fields):
        return None
    if any(f == "global" for f in fields):
        return "global"
    jumps = {tuple(f["jump"]) for f in fields}
    if len(jumps) != 1:
        return None
    return {"size": [max(f["size"][a] for f in fields) for a in range(2)], "jump": list(jumps.pop())}


def _graph_shapes(model: nn.Graph, input_shape) -> dict:
    try:
        return model._given_shapes(input_shape)
    except (TypeError, ValueError) as e:
        raise ValueError(f"summary: {e}") from None


def _with_sources(row: dict, text: str | None) -> None:
    """Show a node's structural channel wiring in "maps read" when short and free, else in its note."""
    row["map_sources"] = text
    if not text:
        return
    if row["links"] is None and len(text) <= 48:
        row["links"] = text
    else:
        row["note"] = text if not row["note"] else f"{row['note']}; {text}"


def _graph_summary(model: nn.Graph, input_shape, log) -> Summary:
    """`summary` of a Graph: one row per node in execution order, with a "from" column."""
    shapes = _graph_shapes(model, input_shape)
    inputs = [(f"{name} (input)", list(shape)) for name, shape in shapes.items()]
    fields = {name: ({"size": [1, 1], "jump": [1, 1]} if len(shape) == 3 else "global")
              for name, shape in shapes.items()}
    rows, error = [], None
    for node in model.nodes():
        ins = [shapes[i] for i in node.inputs]
        try:
            out = tuple(int(s) for s in node.layer.compute_output_shape(*ins))
        except ShapeError as e:
            error = str(e if e.path else e.within(node.name))
            break
        row = _row(node.name, node.layer, ins[0], out)
        row["from"] = list(node.inputs)
        rows.append(row)
        shapes[node.name] = out
    keeps: dict = {}
    wiring = {} if error else node_wiring(model, shapes, keeps)
    for node, row in zip(model.nodes(), rows):
        if node.layer.role == "merge":
            fields[node.name] = _merge_fields([fields[i] for i in node.inputs])
        elif node.name in keeps:  # a channel shuffle keeps every value at its position
            fields[node.name] = fields[keeps[node.name]]
        else:
            fields[node.name] = _advance_field(fields[node.inputs[0]], node.layer, shapes[node.inputs[0]])
        row["receptive_field"] = fields[node.name]
        _with_sources(row, wiring.get(row["name"]))
    totals = {key: int(sum(r[key] for r in rows)) for key in ("params", "macs", "connections")}
    outs = None if error else [list(shapes[o]) for o in model.output_names]
    single = len(inputs) == 1
    return Summary(inputs[0][1] if single else {n: list(s) for n, s in shapes.items() if n in model.input_names},
                   rows, totals, error, (outs[0] if outs and len(outs) == 1 else outs), inputs=inputs, graph=True,
                   import_log=log)
