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
from ..nn.module import ShapeError
from .receptive import layer_role, window_geometry

__all__ = ["summary", "Summary"]


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
    for a, (k, s, d) in enumerate(zip(geom.kernel, geom.stride, geom.dilation)):
        size[a] += d * (k - 1) * jump[a]
        jump[a] *= s
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
    mismatch message), `.input_shape`, `.output_shape` (None after a mismatch), `str()` (the table)
    and `.to_dict()` (JSON-able)."""

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

    def __str__(self) -> str:
        head = ["layer (type)", "output", "kernel", "maps read", "parameters", "mult-adds", "connections",
                "field/jump"]
        table = [head, ["input", _shape(self.input_shape)] + [""] * 6]
        notes = {}
        for row in self.rows:
            table.append([f"{row['name']} ({row['type']})", _shape(row["output_shape"]),
                          "" if row["kernel"] is None else "[" + ", ".join(map(str, row["kernel"])) + "]",
                          row["links"] or "", row["params_formula"] or ("0" if not row["params"] else _n(row["params"])),
                          _n(row["macs"]) if row["macs"] else "", _n(row["connections"]) if row["connections"] else "",
                          _field_text(row["receptive_field"])])
            if row["note"]:
                notes[len(table) - 1] = row["note"]
        t = self.totals
        table.append(["total", "", "", "", _n(t["params"]), _n(t["macs"]), _n(t["connections"]), ""])
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        right = {4, 5, 6}

        def line(r):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

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
        return str(self)


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
