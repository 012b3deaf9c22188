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
"""
from __future__ import annotations

import json

import numpy as np

from .. import nn
from .._html import esc, wrap
from ..nn.module import ShapeError
from .receptive import layer_role, window_geometry

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

    def __init__(self, input_shape, rows, totals, error, output_shape):
        self.input_shape, self.rows, self.totals = input_shape, rows, totals
        self.error, self.output_shape = error, output_shape

    def __getitem__(self, name: str) -> dict:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(f"Summary: no row named {name!r}; rows are {[r['name'] for r in self.rows]}")

    def to_dict(self) -> dict:
        return {"input_shape": self.input_shape, "output_shape": self.output_shape, "rows": self.rows,
                "totals": self.totals, "error": self.error}

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
        return ["", "", "", _n(t["params"]), _n(t["macs"]), _n(t["connections"]), ""]

    def __str__(self) -> str:
        head = self._HEAD
        table = [head, ["input", _shape(self.input_shape)] + [""] * 6]
        notes = {}
        for row in self.rows:
            table.append([f"{row['name']} ({row['type']})"] + self._cells(row))
            if row["note"]:
                notes[len(table) - 1] = row["note"]
        table.append(["total"] + self._total_cells())
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        right = {4, 5, 6}

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
        return "\n".join(out)

    def __repr__(self) -> str:
        """One or two lines: the layer count, the shapes and the totals (`print()` it for the table)."""
        t = self.totals
        out = "→ " + _shape(self.output_shape) if self.output_shape is not None else "(stops at a shape mismatch)"
        n = len(self.rows)
        text = (f"<Summary of {n} layer{'s' if n != 1 else ''}: input {_shape(self.input_shape)} {out}; "
                f"{_n(t['params'])} parameters, {_n(t['macs'])} mult-adds, {_n(t['connections'])} connections; "
                "print() it for the table>")
        return text + (f"\n  shape mismatch: {self.error}" if self.error else "")

    def _repr_html_(self) -> str:
        """The table as HTML for Jupyter: one `<tr class="fm-layer">` per row of `.rows`, the notes
        under their layer, the totals in the footer and the shape mismatch, if any, below."""
        num = {4, 5, 6}  # parameters, mult-adds, connections

        def tds(cells: list[str]) -> str:
            return "".join(f'<td class="num">{esc(c)}</td>' if k in num else f"<td>{esc(c)}</td>"
                           for k, c in enumerate(cells, start=1))

        head = "".join(f'<th class="num">{esc(h)}</th>' if k in num else f"<th>{esc(h)}</th>"
                       for k, h in enumerate(self._HEAD))
        body = [f'<tr class="fm-input"><td>input</td>{tds([_shape(self.input_shape)] + [""] * 6)}</tr>']
        for row in self.rows:
            body.append(f'<tr class="fm-layer" data-name="{esc(row["name"])}" data-params="{row["params"]}">'
                        f'<td><b>{esc(row["name"])}</b> ({esc(row["type"])})</td>{tds(self._cells(row))}</tr>')
            if row["note"]:
                body.append(f'<tr class="fm-note"><td colspan="{len(self._HEAD)}">↳ {esc(row["note"])}</td></tr>')
        foot = f'<tr class="fm-total"><td>total</td>{tds(self._total_cells())}</tr>'
        error = f'<p class="fm-bad">shape mismatch: {esc(self.error)}</p>' if self.error else ""
        return wrap(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                    f"<tfoot>{foot}</tfoot></table>{error}", "summary")


def _layer_list(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, layer) for a model display: a Sequential's layers as `summary` lists them, or
    the leaf modules of any other container."""
    if isinstance(model, nn.Sequential):
        return list(_leaves(model))
    return [(name, m) for name, m in model.named_modules() if name and not m._modules]


def model_html(model: nn.Module) -> str:
    """A model as HTML for Jupyter (`Module._repr_html_`): one `<tr class="fm-layer">` per layer with
    its constructor (`repr`), its output shape for one example when the model knows its input shape
    (a Sequential's `input_shape`; computed by `summary`, nothing is run) and its parameter count."""
    if not model._modules:  # a single layer: its constructor and parameter count
        return wrap(f"<p><code>{esc(_describe(model))}</code>: {_n(model.num_parameters())} parameters</p>", "model")
    layers = _layer_list(model)
    s = summary(model) if isinstance(model, nn.Sequential) and model.input_shape is not None else None
    shapes = {} if s is None else {r["name"]: _shape(r["output_shape"]) for r in s.rows}
    total = model.num_parameters()
    facts = [f"{len(layers)} layer{'s' if len(layers) != 1 else ''}", f"{_n(total)} parameters"]
    if s is not None:
        facts.insert(1, f"input {_shape(s.input_shape)}"
                     + ("" if s.output_shape is None else f" → output {_shape(s.output_shape)}"))
    head = f"<p><b>{esc(type(model).__name__)}</b>: {esc(', '.join(facts))}</p>"
    cols = "<th>#</th><th>layer</th><th>module</th>" + ("<th>output</th>" if s is not None else "") \
        + '<th class="num">parameters</th>'
    rows = []
    for k, (name, layer) in enumerate(layers):
        shape = f"<td>{esc(shapes.get(name, '—'))}</td>" if s is not None else ""
        params = layer.num_parameters()
        rows.append(f'<tr class="fm-layer" data-name="{esc(name)}" data-params="{params}"><td class="num">{k}</td>'
                    f"<td><b>{esc(name)}</b></td><td><code>{esc(_describe(layer))}</code></td>{shape}"
                    f'<td class="num">{_n(params)}</td></tr>')
    note = ""
    if s is None and isinstance(model, nn.Sequential):
        note = ("<p>Give the model an input shape (<code>Sequential(..., input_shape=(H, W, C))</code>) or call "
                "<code>featuremaps.summary(model, input_shape)</code> to see each layer's output shape.</p>")
    elif s is not None and s.error:
        note = f'<p class="fm-bad">shape mismatch: {esc(s.error)}</p>'
    return wrap(f"{head}<table><thead><tr>{cols}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}", "model")


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
    return Summary(list(int(s) for s in input_shape), rows, totals, error, None if error else list(shape))
