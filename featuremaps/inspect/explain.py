"""Explain one output value: how unit (map o, row, col) of a layer is computed from the maps before it.

`explain(model, x, layer, out_map, position)` runs `x` through the model (the engine's own forward
pass, `activations`) and then recomputes the chosen value from the layer's input and parameters,
term by term, in float64:

- **Conv2D** — by the formula in `featuremaps.functional.conv`: for each input map i connected to
  output map o (all of them, o's group, or o's column of the connection table) the window of map i
  that the kernel sees (padding shown as padding: a `padded` mask, value 0 there; stride and
  dilation decide which rows and columns are tapped), the kernel slice `K_i,o`, and their dot
  product; then the bias and the total.
- **Dense** — `y[o] = b[o] + Σ_i x[i]·w[i, o]`, one term per input (labelled `(h, w, c)` when the
  input comes from a Flatten of maps).
- **MaxPool2D / GlobalMaxPool2D** — the window and which input won (its position and value; the
  first maximum in row-major window order, or the last NaN, as the engine and PyTorch pick).
- **AvgPool2D / Subsampling2D / GlobalAvgPool2D** — the window and its uniform weights
  (1/divisor, times LeNet's per-map coefficient for Subsampling2D, plus its bias).

- **Add / Average / Concatenate** (merges in a `Graph`) — each input's value at the unit (the sum or
  the mean of them), or, for a channel concatenation, which input and which of its maps the value
  is. The rule is read from the layer (`merge_rule`); a product or a maximum is refused.

In a `Graph` the explained layer's input is the value its node reads (a 1×1 shortcut conv reads the
block input). The layers after it are followed only while each is the single reader of the value
before it; at a fork or a merge the walk stops and `Explanation.stopped` says where.

Which of these a layer gets is read from its class's `decomposition` ('weighted_sum', 'window_max',
'window_mean'; see `featuremaps.nn.Module`), never from its class name, so a new layer kind that
sets it is explained with no edit here.

The recomputed value is set against the engine's own output at that index (`engine_value`,
`difference`). The layers right after the explained one are followed too: element-wise ones
(BatchNorm, the activation, Dropout — see `after`), and then one pooling layer, reported for every
pooling window that contains the unit (`pooled`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .._json import jsonable
from ..functional import window as _window_ops
from ..functional.window import Geometry
from ..nn.module import ROLES, layer_classes
from ..tensor import as_array, no_grad
from ..nn.graph import model_nodes
from .activations import _run, as_model_input, resolve_layer
from .connectivity import _channels, _groups, _local_input, connections
from .receptive import check_position, layer_role, window_geometry

__all__ = ["explain", "Explanation", "Term", "Step", "explainable_kinds", "merge_rule"]


def explainable_kinds() -> list[str]:
    """Names of the registered layer classes `explain` can decompose (their `decomposition` is set),
    in `ROLES` order: conv, dense, then pooling."""
    classes = [c for c in layer_classes() if c.decomposition is not None]
    return [c.__name__ for c in sorted(classes, key=lambda c: ROLES.index(c.role) if c.role in ROLES else len(ROLES))]


# --------------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------------
@dataclass
class Term:
    """One summand of the explained value.

    Conv/pool layers: `input_map` is the input map, `window` the `(kh, kw)` input values the kernel
    sees (0 at padding), `padded` marks the taps that fall on padding, `rows`/`cols` are the input
    rows and columns tapped (negative or ≥ size on padding), `kernel` is `w[:, :, i_local, o]` (for
    pooling: the uniform averaging weights, or None for max), `partial_sum = Σ window ⊙ kernel`.
    Dense layers: `input_map` is the input feature index, `value` x[i], `weight` w[i, o],
    `partial_sum` their product and `label` its `(h, w, c)` origin before a Flatten, if any.
    """
    input_map: int
    partial_sum: float
    window: np.ndarray | None = None
    padded: np.ndarray | None = None
    kernel: np.ndarray | None = None
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    value: float | None = None
    weight: float | None = None
    label: str | None = None


@dataclass
class Step:
    """A layer after the explained one, applied to the recomputed value.

    `role` is 'activation', 'elementwise' (BatchNorm, Dropout, LRN) or 'pool'. `unit` is the index
    of the value after this layer: `(row, col, map)` or `(feature,)`. `value` is the layer applied to
    the recomputed input (everything else from the engine); `engine_value` is the engine's output.
    Pool steps list in `windows` every pooling window that contains the unit.
    """
    layer: str
    kind: str
    role: str
    unit: tuple | None
    value: float | None
    engine_value: float | None
    windows: list = field(default_factory=list)

    @property
    def difference(self) -> float | None:
        if self.value is None or self.engine_value is None:
            return None
        return abs(self.value - self.engine_value)


@dataclass
class Explanation:
    """The decomposition of one output value; see the module docstring. Render with `to_text()`,
    `to_markdown()`, `to_latex()` or `to_dict()` (JSON-able); `repr()` is two lines and a notebook
    shows `_repr_html_()`, the term table with each window and kernel drawn.

    - `layer`, `kind` (the class name, for display), `out_map`, `position` ((row, col) or None for
      vectors);
    - `role`, `decomposition`: the layer class's attributes (see `featuremaps.nn.Module`), which
      decide how the value is decomposed and rendered;
    - `input_layer`: the layer whose output is the input here ('input' for the image), and
      `input_shape` its per-example shape;
    - `terms`: list of `Term`; `bias` (float or None);
    - `pre_activation`: the recomputed value `bias + Σ partial sums` (for pooling: the pooled value);
    - `engine_value`, `difference` = |pre_activation − engine_value|;
    - `winner`: for max pooling, `{'position': (row, col), 'value': v, 'offset': (p, q)}`;
    - `after`: list of `Step` for the element-wise layers and the pooling layer that follow;
    - `activation`: `{'layer', 'kind', 'value', 'engine_value', 'unit'}` of the first activation
      layer in `after` (applied to the pooled value when the pooling comes first), or None;
    - `pooled`: `{'layer', 'kind', 'windows': [...]}` for the first pooling layer in `after`, or
      None. Each window is `{'position': (i, j), 'value': recomputed, 'engine_value': engine,
      'winner': bool or None}` — `winner` (max pooling only) says whether THIS unit is the value the
      window passes on (and receives the gradient); then `winner_position`/`winner_value` say which is.
      The winner is read from the engine's own forward pass (the values `activations` returns), not
      from the recomputed value, so a last-bit difference between the two cannot flip a near tie.
      Usually exactly one window contains a unit; overlapping pools give several, and a unit cut
      off by the pool's floor rounding gives none.
    - `geometry`: kernel, stride, dilation, pads of a window layer (plus `zero_pad` when a
      ZeroPad2D right before it adds a border, whose taps are marked `padded` too);
      `wiring`: which input maps feed the conv's output map, and why (full, groups, depthwise, table);
    - `stopped`: why the layers after it are followed no further (a fork, a merge), or None;
    - `tolerance`, `agrees`: the agreement expected from the float error of the engine's sum in
      its dtype (2·n·u·Σ|summand|, see `tolerance`) and whether `difference` is within it.
    """
    layer: str
    kind: str
    out_map: int
    position: tuple | None
    terms: list
    bias: float | None
    pre_activation: float
    engine_value: float
    difference: float
    input_layer: str
    input_shape: tuple
    output_shape: tuple
    dtype: str = "float32"
    winner: dict | None = None
    after: list = field(default_factory=list)
    geometry: dict | None = None
    wiring: str | None = None
    role: str = "other"
    decomposition: str | None = None
    stopped: str | None = None

    @property
    def _vector_terms(self) -> bool:
        """True when the terms are values times weights (dense, merges), not windows and kernels."""
        return self.role in ("dense", "merge")

    # --- derived ----------------------------------------------------------------------------------
    @property
    def activation(self) -> dict | None:
        for s in self.after:
            if s.role == "activation":
                return {"layer": s.layer, "kind": s.kind, "value": s.value, "engine_value": s.engine_value,
                        "unit": s.unit}
        return None

    @property
    def pooled(self) -> dict | None:
        for s in self.after:
            if s.role == "pool":
                return {"layer": s.layer, "kind": s.kind, "windows": s.windows}
        return None

    @property
    def tolerance(self) -> float:
        """The agreement expected between recomputation and engine, from the float error of the
        engine's sum: 2·n·u·Σ|summand| for n summands (every product, plus the bias) in the layer's
        dtype (unit roundoff u = 2⁻²⁴ float32, 2⁻⁵³ float64). That bound holds in whatever order a BLAS
        kernel adds; a window max is exact, so it gets only a few ulp of the value."""
        u = float(np.finfo(np.dtype(self.dtype)).eps) / 2
        n, magnitude = self._summands()
        floor = 4 * u * abs(self.engine_value) if math.isfinite(self.engine_value) else 0.0
        return max(2 * n * u * magnitude, floor, float(np.finfo(np.dtype(self.dtype)).tiny))

    def _summands(self) -> tuple[int, float]:
        """How many values the engine adds for this unit, and the sum of their magnitudes."""
        if self.decomposition == "window_max":
            return 0, 0.0
        n, magnitude = 0, 0.0
        for t in self.terms:
            if t.window is not None and t.kernel is not None:
                products = np.abs(np.asarray(t.window, np.float64) * np.asarray(t.kernel, np.float64))
                n, magnitude = n + products.size, magnitude + float(products.sum())
            else:
                n, magnitude = n + 1, magnitude + abs(float(t.partial_sum))
        if self.bias is not None:
            n, magnitude = n + 1, magnitude + abs(float(self.bias))
        return n, magnitude

    @property
    def agrees(self) -> bool:
        """True when `difference` is within `tolerance` (or both values are the same non-finite)."""
        if not math.isfinite(self.engine_value) or not math.isfinite(self.pre_activation):
            return (math.isnan(self.engine_value) and math.isnan(self.pre_activation)) or \
                self.engine_value == self.pre_activation
        return self.difference <= self.tolerance

    @property
    def symbol(self) -> str:
        """`y[C3, map 7, (4, 5)]` or `y[F6, 12]`."""
        if self.position is None:
            return f"y[{self.layer}, {self.out_map}]"
        return f"y[{self.layer}, map {self.out_map}, ({self.position[0]}, {self.position[1]})]"

    # --- renderings -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able dict (arrays as nested lists; non-finite floats as the strings 'NaN', 'Infinity',
        '-Infinity')."""
        d = {"layer": self.layer, "kind": self.kind, "role": self.role, "decomposition": self.decomposition,
             "out_map": self.out_map,
             "position": None if self.position is None else list(self.position),
             "input_layer": self.input_layer, "input_shape": list(self.input_shape),
             "output_shape": list(self.output_shape), "dtype": self.dtype,
             "terms": [_term_dict(t) for t in self.terms], "bias": self.bias,
             "pre_activation": self.pre_activation, "engine_value": self.engine_value,
             "difference": self.difference, "agrees": self.agrees, "winner": self.winner,
             "activation": self.activation, "pooled": self.pooled,
             "after": [{"layer": s.layer, "kind": s.kind, "role": s.role, "unit": s.unit, "value": s.value,
                        "engine_value": s.engine_value, "difference": s.difference, "windows": s.windows}
                       for s in self.after],
             "geometry": self.geometry, "wiring": self.wiring, "stopped": self.stopped, "formula": self.formula()}
        return jsonable(d)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def formula(self, max_terms: int = 8) -> str:
        """`y[C3, map 7, (4, 5)] = b + Σ_i ⟨window_i, K_i,7⟩ = 0.01 + 0.12 + … = 1.23` (plain text)."""
        lhs = self.symbol
        if self.decomposition == "window_max":
            w = self.winner
            if w is None:
                return f"{lhs} = max(window) = {_num(self.pre_activation)}"
            return f"{lhs} = max(window of map {self.out_map}) = x{tuple(w['position'])} = {_num(self.pre_activation)}"
        if self.decomposition == "window_mean" and self.bias is None:
            return f"{lhs} = Σ window / {self._divisor()} = {_num(self.pre_activation)}"
        if self.decomposition == "window_mean":  # with a per-map coefficient and bias (LeNet's subsampling)
            return (f"{lhs} = b + coefficient · mean(window) = {_num(self.bias)} + "
                    f"{_num(self.terms[0].partial_sum)} = {_num(self.pre_activation)}")
        if self.role == "merge":
            return self._merge_formula(lhs, max_terms)
        if self.role == "dense":
            sym = f"b + Σ_i x_i · w_i,{self.out_map}"
        else:
            sym = f"b + Σ_i ⟨window_i, K_i,{self.out_map}⟩"
        if len(self.terms) <= max_terms:
            nums = _signed_sum([self.bias or 0.0] + [t.partial_sum for t in self.terms])
        else:
            total = math.fsum(t.partial_sum for t in self.terms)
            nums = f"{_signed_sum([self.bias or 0.0, total])} (the {len(self.terms)} terms summed)"
        return f"{lhs} = {sym} = {nums} = {_num(self.pre_activation)}"

    def _merge_formula(self, lhs: str, max_terms: int) -> str:
        """`y[add, map 3, (1, 2)] = Σ_k x_k = 0.5 + 1.25 = 1.75`, or the mean, or the one concatenated value."""
        if self.decomposition == "select":
            t = self.terms[0]
            return f"{lhs} = {t.label} = {_num(self.pre_activation)}"
        values = [t.value for t in self.terms]
        nums = _signed_sum(values) if len(values) <= max_terms else f"(the {len(values)} values summed)"
        if self.decomposition == "mean":
            return f"{lhs} = (1/{len(values)}) Σ_k x_k = ({nums}) / {len(values)} = {_num(self.pre_activation)}"
        return f"{lhs} = Σ_k x_k = {nums} = {_num(self.pre_activation)}"

    def _divisor(self) -> str:
        k = self.terms[0].kernel if self.terms else None
        if k is None:
            return "?"
        nz = k[k != 0]
        return f"{1.0 / nz[0]:g}" if nz.size else "?"

    def _header(self) -> list[str]:
        unit = "output" if self.position is None and self._vector_terms else "output map"
        lines = [f"{self.symbol}: layer {self.layer} ({self.kind}), {unit} {self.out_map}"
                 + ("" if self.position is None else f" at (row {self.position[0]}, col {self.position[1]})")
                 + f", from {self.input_layer} {_shape(self.input_shape)}"]
        if self.wiring:
            lines.append(self.wiring)
        g = self.geometry
        if g:
            (t, b), (l, r) = g["pads"]  # noqa: E741
            lines.append(f"window {g['kernel'][0]}×{g['kernel'][1]}, stride {tuple(g['stride'])}, "
                         f"dilation {tuple(g['dilation'])}, padding top {t} bottom {b} left {l} right {r}")
            z = g.get("zero_pad")
            if z:
                (zt, zb), (zl, zr) = z["pads"]
                lines.append(f"taps on the border added by {z['layer']} (ZeroPad2D: top {zt} bottom {zb} "
                             f"left {zl} right {zr}) count as padding too")
        return lines

    def _rows(self, top: int | None):
        """Table rows (label, rows, cols, padded, partial) and the note for omitted ones."""
        terms = list(self.terms)
        note = None
        if top is not None and len(terms) > top:
            keep = sorted(terms, key=lambda t: -abs(t.partial_sum) if math.isfinite(t.partial_sum) else -math.inf)
            keep = keep[:top]
            rest = [t for t in terms if not any(t is k for k in keep)]
            note = (len(rest), math.fsum(t.partial_sum for t in rest))
            terms = keep
        rows = []
        for t in terms:
            if self._vector_terms:
                rows.append([str(t.input_map), t.label or "", _num(t.value), _num(t.weight),
                             _num(t.partial_sum, sign=True)])
            else:
                npad = int(t.padded.sum()) if t.padded is not None else 0
                size = t.padded.size if t.padded is not None else 0
                rows.append([str(t.input_map), _span(t.rows), _span(t.cols), f"{npad}/{size}",
                             _num(t.partial_sum, sign=True)])
        return rows, note

    def _columns(self) -> list[str]:
        if self.role == "merge":
            return ["input", "from", "x_k", "weight", "term"]
        if self.role == "dense":
            return ["input", "from", "x_i", f"w_i,{self.out_map}", "x_i·w"]
        last = "max" if self.decomposition == "window_max" else "⟨window, kernel⟩"
        return ["input map", "rows", "cols", "padded", last]

    def _default_top(self) -> int | None:
        return 10 if self._vector_terms else (24 if len(self.terms) > 32 else None)

    def _after_lines(self) -> list[str]:
        lines = []
        for s in self.after:
            if s.role == "pool":
                if not s.windows:
                    lines.append(f"{s.layer} ({s.kind}): no pooling window contains this unit "
                                 "(the pool's rounding drops it)")
                for w in s.windows:
                    text = (f"{s.layer} ({s.kind}): window at ({w['position'][0]}, {w['position'][1]}) → "
                            f"{_num(w['value'])} (engine {_num(w['engine_value'])})")
                    if w.get("winner") is not None:
                        text += ("; this unit is the window's winner" if w["winner"] else
                                 f"; the winner is ({w['winner_position'][0]}, {w['winner_position'][1]}) "
                                 f"= {_num(w['winner_value'])}, not this unit")
                    lines.append(text)
            else:
                unit = "" if s.unit is None else f" at {tuple(s.unit)}"
                lines.append(f"{s.layer} ({s.kind}){unit}: {_num(s.value)} (engine {_num(s.engine_value)})")
        if self.stopped:
            lines.append(f"followed no further: {self.stopped}")
        return lines

    def _check_line(self) -> str:
        mark = "agrees" if self.agrees else "DISAGREES"
        return (f"engine value {_num(self.engine_value)}; |recomputed − engine| = {self.difference:.3g} "
                f"({mark}, tolerance {self.tolerance:.0e}, {self.dtype})")

    def to_text(self, top: int | None = -1, windows: bool = False) -> str:
        """A terminal table, one row per connected input map (Dense: the `top` largest contributions,
        default 10, then the rest summed), then the formula line, the engine check and what follows.
        `windows=True` also prints each window and kernel."""
        top = self._default_top() if top == -1 else top
        out = self._header()
        rows, note = self._rows(top)
        out += _table(self._columns(), rows)
        if note:
            out.append(f"… {note[0]} more terms summing to {_num(note[1], sign=True)}")
        if self.bias is not None and self.decomposition != "window_max":
            out.append(f"bias b[{self.out_map}] = {_num(self.bias)}")
        if self.winner is not None:
            w = self.winner
            out.append(f"winner: input ({w['position'][0]}, {w['position'][1]}) of map {self.out_map} "
                       f"= {_num(w['value'])} (window offset {tuple(w['offset'])})")
        out.append(self.formula())
        out.append(self._check_line())
        after = self._after_lines()
        if after:
            out.append("then:")
            out += ["  " + a for a in after]
        if windows:
            for t in self.terms:
                if t.window is None:
                    continue
                out.append(f"input map {t.input_map}: window (· = padding) | kernel")
                out += _side_by_side(t.window, t.padded, t.kernel)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    # --- displays (a short repr; HTML for notebooks) ----------------------------------------------
    def __repr__(self) -> str:
        """Two lines: what is explained, the recomputed value and the engine check (`print()` it, or
        `to_text()`, for the table)."""
        n = len(self.terms)
        bias = " + bias" if self.bias is not None else ""
        act = self.activation
        then = "" if act is None else f"; then {act['layer']} ({act['kind']}) → {_num(act['value'])}"
        return (f"<Explanation {self.symbol}: {self.kind} from {self.input_layer} {_shape(self.input_shape)}, "
                f"{n} term{'s' if n != 1 else ''}{bias} = {_num(self.pre_activation)}\n"
                f"  engine {_num(self.engine_value)} ({'agrees' if self.agrees else 'DISAGREES'}, "
                f"|difference| {self.difference:.3g}, {self.dtype}){then}; print() it for the table>")

    def _repr_html_(self) -> str:
        """`to_text()` as HTML for notebooks: the header, the term table (one `<tr class="fm-term">` per
        row `to_text` prints, with each window and kernel drawn as the HTML report draws them), the
        sums, the formula, the engine check and the layers that follow."""
        from .._html import esc, wrap

        head = self._header()
        parts = [f"<p><b>{esc(head[0])}</b></p>"] + [f"<p>{esc(h)}</p>" for h in head[1:]]
        parts.append(self._html_table())
        if self.winner is not None:
            w = self.winner
            parts.append(f"<p>winner: input ({w['position'][0]}, {w['position'][1]}) of map {self.out_map} = "
                         f"{esc(_num(w['value']))} (window offset {esc(tuple(w['offset']))})</p>")
        parts.append(f'<p class="mono">{esc(self.formula())}</p>')
        parts.append(f'<p class="{"fm-ok" if self.agrees else "fm-bad"}">{esc(self._check_line())}</p>')
        after = self._after_lines()
        if after:
            parts.append("<p>then:</p><ul>" + "".join(f"<li>{esc(a)}</li>" for a in after) + "</ul>")
        return wrap("".join(parts), "explanation")

    def _html_table(self) -> str:
        """The term table of `_repr_html_`; every number cell carries its full value in `data-value`."""
        from .._html import cell_px, esc, thumbnail

        def num(v, text: str, cls: str = "") -> str:
            return f'<td class="num{cls}" data-value="{float(v)!r}">{esc(text)}</td>'

        rows, note = self._rows(self._default_top())
        cols = self._columns()
        pics = not self._vector_terms
        head = cols[:-1] + (["window x", "kernel w"] if pics else []) + cols[-1:]
        colour_window, colour_kernel, legend = self._html_colours() if pics else (None, None, "")
        term_of = {str(t.input_map): t for t in self.terms}  # `_rows` labels each row by its input map
        body = []
        for r in rows:
            t = term_of[r[0]]
            cells = [f'<td class="num">{esc(c)}</td>' for c in r[:2]]
            if pics:
                px = cell_px(*t.window.shape)
                cells += [f'<td class="num">{esc(c)}</td>' for c in r[2:4]]
                cells.append("<td>" + thumbnail(colour_window(t.window), px, "fm-window",
                                                f"window of {self.input_layer} map {t.input_map}") + "</td>")
                cells.append("<td>—</td>" if t.kernel is None else "<td>" + thumbnail(
                    colour_kernel(t.kernel), px, "fm-kernel", f"kernel for input map {t.input_map}") + "</td>")
            else:
                cells += [num(t.value, r[2]), num(t.weight, r[3])]
            cells.append(num(t.partial_sum, r[-1], " fm-partial"))
            body.append(f'<tr class="fm-term" data-input-map="{t.input_map}">{"".join(cells)}</tr>')
        foot = []
        if note:
            foot.append((f"… {note[0]} more terms", note[1], "fm-rest", True))
        if self.bias is not None:
            foot.append((f"bias b[{self.out_map}]", self.bias, "fm-bias", False))
        foot += [("recomputed value" + (" = bias + Σ" if self.decomposition == "weighted_sum" else ""),
                  self.pre_activation, "fm-pre", False),
                 ("engine value", self.engine_value, "fm-engine", False),
                 ("|recomputed − engine|", self.difference, "fm-diff", False)]
        span = len(head) - 1
        tfoot = "".join(f'<tr class="{cls}"><th colspan="{span}">{esc(label)}</th>'
                        f'{num(v, _num(v, sign=sign))}</tr>' for label, v, cls, sign in foot)
        ths = "".join(f"<th>{esc(h)}</th>" for h in head)
        return (f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(body)}</tbody><tfoot>{tfoot}</tfoot>"
                f"</table>{legend}")

    def _html_colours(self):
        """(window colours, kernel colours, legend) as the report colours them: the input image, or a
        ZeroPad2D of it, in grey from min to max; other maps and the kernels diverging around 0, each
        scaled by the largest |value| in the table. (A ZeroPad2D deeper in a network is drawn grey
        here too: the explanation does not know what comes before the pad.)"""
        from .._html import diverging, esc, grey

        def absmax(arrays) -> float:
            a = np.abs(np.concatenate([np.ravel(x) for x in arrays] or [np.zeros(0)]).astype(np.float64))
            a = a[np.isfinite(a)]
            return float(a.max()) if a.size and a.max() > 0 else 1.0

        windows = [t.window for t in self.terms if t.window is not None]
        kernels = [t.kernel for t in self.terms if t.kernel is not None]
        ks = absmax(kernels)
        if self.input_layer == "input" or (self.geometry or {}).get("zero_pad"):
            v = np.concatenate([np.ravel(w) for w in windows] or [np.zeros(0)]).astype(np.float64)
            v = v[np.isfinite(v)]
            lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
            colour_window = lambda w: grey(w, lo, hi)  # noqa: E731
            text = f"window x: grey, black {_num(lo)} to white {_num(hi)}"
        else:
            ws = absmax(windows)
            colour_window = lambda w: diverging(np.asarray(w, np.float64) / ws)  # noqa: E731
            text = f"window x: blue −{_num(ws)}, white 0, red +{_num(ws)}"
        if kernels:
            text += f"; kernel w: blue −{_num(ks)}, white 0, red +{_num(ks)}"
        legend = f'<p class="fm-legend">{esc(text)} (padding is drawn as 0).</p>'
        return colour_window, (lambda k: diverging(np.asarray(k, np.float64) / ks)), legend

    def to_markdown(self, top: int | None = -1) -> str:
        """The same content as `to_text` as Markdown: a table and the formula in code spans."""
        top = self._default_top() if top == -1 else top
        head = self._header()
        out = [f"**{_md(head[0])}**", ""] + [_md(h) + "  " for h in head[1:]]
        if len(head) > 1:
            out.append("")
        rows, note = self._rows(top)
        cols = self._columns()
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---:" for _ in cols) + "|")
        out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
        out.append("")
        if note:
            out += [f"… {note[0]} more terms summing to {_num(note[1], sign=True)}", ""]
        if self.winner is not None:
            w = self.winner
            out += [f"Winner: input ({w['position'][0]}, {w['position'][1]}) = {_num(w['value'])}", ""]
        out += [f"`{self.formula()}`", "", _md(self._check_line())]
        after = self._after_lines()
        if after:
            out += ["", "Then:", ""] + [f"- {_md(a)}" for a in after]
        return "\n".join(out) + "\n"

    def to_latex(self, top: int | None = -1) -> str:
        """A `tabular` of the terms and the formula as a display equation (needs amsmath for `\\text`)."""
        top = self._default_top() if top == -1 else top
        rows, note = self._rows(top)
        cols = self._columns()
        lay = _tex(self.layer)
        out = [f"% {_tex(self._header()[0])}", "\\begin{tabular}{" + "r" * len(cols) + "}", "\\hline",
               " & ".join(_tex(c) for c in cols) + " \\\\", "\\hline"]
        out += [" & ".join(_tex(c) for c in r) + " \\\\" for r in rows]
        if note:
            out.append(f"\\multicolumn{{{len(cols)}}}{{l}}{{\\dots\\ {note[0]} more terms: "
                       f"{_tex(_num(note[1], sign=True))}}} \\\\")
        out += ["\\hline", "\\end{tabular}"]
        idx = (f"{self.out_map}" if self.position is None
               else f"{self.out_map},\\,({self.position[0]},{self.position[1]})")
        lhs = f"y^{{\\text{{{lay}}}}}_{{{idx}}}"
        if self.role == "merge":
            rhs = {"sum": "\\sum_k x_k", "mean": "\\frac{1}{n}\\sum_k x_k"}.get(self.decomposition, "x_k")
        elif self.role == "dense":
            rhs = f"b_{{{self.out_map}}} + \\sum_i x_i\\, w_{{i,{self.out_map}}}"
        elif self.decomposition == "weighted_sum":
            rhs = (f"b_{{{self.out_map}}} + \\sum_{{i \\in C({self.out_map})}} "
                   f"\\langle X_i, K_{{i,{self.out_map}}} \\rangle")
        elif self.decomposition == "window_max":
            rhs = "\\max(\\text{window})"
        elif self.bias is not None:  # window_mean with a per-map coefficient and bias (LeNet's subsampling)
            rhs = "b + a \\cdot \\operatorname{mean}(\\text{window})"
        else:
            rhs = "\\operatorname{mean}(\\text{window})"
        nums = ""
        if self.decomposition == "weighted_sum" and len(self.terms) <= 8:
            nums = " = " + _tex(_signed_sum([self.bias or 0.0] + [t.partial_sum for t in self.terms]))
        out += ["\\[", f"{lhs} = {rhs}{nums} = {_tex(_num(self.pre_activation))}", "\\]",
                f"% {_tex(self._check_line())}"]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------------
def _num(v, sign: bool = False) -> str:
    if v is None:
        return "—"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:+.6g}" if sign else f"{v:.6g}"


def _signed_sum(values) -> str:
    """`a + b - c` from numbers, the sign of each term shown as the operator."""
    out = []
    for k, v in enumerate(values):
        v = float(v)
        if k == 0:
            out.append(_num(v))
        elif math.isfinite(v) and v < 0:
            out.append(f"- {_num(-v)}")
        else:
            out.append(f"+ {_num(v)}")
    return " ".join(out)


def _span(idx) -> str:
    if idx is None or len(idx) == 0:
        return ""
    if len(idx) == 1:
        return str(int(idx[0]))
    step = int(idx[1] - idx[0])
    return f"{int(idx[0])}..{int(idx[-1])}" + (f" step {step}" if step != 1 else "")


def _shape(s) -> str:
    return "(" + ", ".join(str(n) for n in s) + ")"


def _table(cols: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[k]) for r in rows)) if rows else len(c) for k, c in enumerate(cols)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _side_by_side(window, padded, kernel) -> list[str]:
    lines = []
    for p in range(window.shape[0]):
        left = " ".join("·".rjust(9) if padded[p, q] else f"{window[p, q]:9.4g}" for q in range(window.shape[1]))
        right = "" if kernel is None else " ".join(f"{kernel[p, q]:9.4g}" for q in range(kernel.shape[1]))
        lines.append(f"  {left}  |  {right}")
    return lines


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("_", "\\_").replace("*", "\\*")


_TEX = {"\\": "\\textbackslash{}", "_": "\\_", "%": "\\%", "&": "\\&", "#": "\\#", "$": "\\$",
        "{": "\\{", "}": "\\}", "^": "\\^{}", "~": "\\~{}", "−": "-", "×": "$\\times$", "…": "\\dots{}",
        "Σ": "$\\Sigma$", "⟨": "$\\langle$", "⟩": "$\\rangle$", "⊙": "$\\odot$", "·": "$\\cdot$",
        "—": "--", "→": "$\\to$", "|": "$|$"}


def _tex(s: str) -> str:
    """Escape text for LaTeX (one pass, so replacements are not escaped again)."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def _term_dict(t: Term) -> dict:
    return {"input_map": t.input_map, "partial_sum": t.partial_sum, "window": t.window, "padded": t.padded,
            "kernel": t.kernel, "rows": t.rows, "cols": t.cols, "value": t.value, "weight": t.weight,
            "label": t.label}


# --------------------------------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------------------------------
def _window(x_map: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """Values of the 2-D map at rows × cols (0 where off the map) and the off-map (padding) mask."""
    h, w = x_map.shape
    vr = (rows >= 0) & (rows < h)
    vc = (cols >= 0) & (cols < w)
    padded = ~(vr[:, None] & vc[None, :])  # (kh, kw)
    vals = np.zeros((len(rows), len(cols)), dtype=x_map.dtype)  # (kh, kw)
    vals[np.ix_(vr, vc)] = x_map[np.ix_(rows[vr], cols[vc])]
    return vals, padded


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a ⊙ b in float64 (exact products of float32 values, one rounding per addition)."""
    return float(np.dot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel()))


def _geometry_dict(geo: Geometry) -> dict:
    return {"kernel": list(geo.kernel), "stride": list(geo.stride), "dilation": list(geo.dilation),
            "pads": [list(geo.pads[0]), list(geo.pads[1])]}


def _wiring(layer, o: int, connected: list[int]) -> str:
    c_in, c_out = _channels(layer)
    maps = ", ".join(str(i) for i in connected) if len(connected) <= 16 else \
        f"{connected[0]}..{connected[-1]} ({len(connected)} maps)"
    if getattr(layer, "connections", None) is not None:
        how = f"connection table: {len(connected)} of {c_in} input maps"
    elif _groups(layer) == 1:
        how = f"full: all {c_in} input maps"
    elif _groups(layer) == c_in:
        how = f"depthwise (groups={c_in})"
    else:
        g = _groups(layer)
        how = f"groups={g}: group {o // (c_out // g)} of {g}"
    return f"output map {o} reads input maps {maps} ({how})"


def _explain_conv(layer, x_in: np.ndarray, o: int, pos) -> tuple[list, float | None, float, dict, str]:
    h, w, _ = x_in.shape
    geo = window_geometry(layer, (h, w))
    rows, cols = geo.rows(pos[0]), geo.cols(pos[1])
    wt = as_array(layer.weight)
    connected = [int(i) for i in np.flatnonzero(connections(layer)[:, o])]
    terms = []
    for i in connected:
        win, padded = _window(x_in[:, :, i], rows, cols)
        kernel = wt[:, :, _local_input(layer, i, o), o]  # (kh, kw)
        terms.append(Term(input_map=i, partial_sum=_dot(win, kernel), window=win, padded=padded,
                          kernel=np.array(kernel), rows=rows, cols=cols))
    bias = None if getattr(layer, "bias", None) is None else float(as_array(layer.bias)[o])
    total = math.fsum([bias or 0.0] + [t.partial_sum for t in terms])
    return terms, bias, total, _geometry_dict(geo), _wiring(layer, o, connected)


def _max_winner(vals: np.ndarray, padded: np.ndarray):
    """The window element max pooling passes on: the first maximum in row-major order, or the last
    NaN (the engine's and PyTorch's rule); None when the window holds no input element."""
    best = None
    for flat in np.flatnonzero(~padded.ravel()):
        v = vals.ravel()[flat]
        if best is None or v > vals.ravel()[best] or np.isnan(v):
            best = flat
    return None if best is None else np.unravel_index(best, vals.shape)


def _avg_kernel(geo: Geometry, in_hw, pos, include_pad: bool) -> np.ndarray:
    """Uniform weights 1/divisor of an average-pooling window, PyTorch's divisor rule (0 off the
    padded input)."""
    taps = []
    for axis, n in enumerate(in_hw):
        idx = geo.rows(pos[0]) if axis == 0 else geo.cols(pos[1])
        lo, hi = geo.pads[axis]
        inside_padded = (idx >= -lo) & (idx < n + hi)  # taps a ceil_mode overhang leaves out
        inside = (idx >= 0) & (idx < n)
        taps.append(inside_padded if include_pad else inside)
    counted = taps[0][:, None] & taps[1][None, :]  # (kh, kw)
    return counted / counted.sum()


def _explain_pool(layer, x_in: np.ndarray, o: int, pos):
    h, w, _ = x_in.shape
    whole = layer.spatial == "all"  # a global pool: one window, the whole map
    if whole:
        geo = Geometry.of((h, w), (h, w))  # one window, the whole map
        pos_w = (0, 0)
    else:
        geo = window_geometry(layer, (h, w))
        pos_w = pos
    rows, cols = geo.rows(pos_w[0]), geo.cols(pos_w[1])
    win, padded = _window(x_in[:, :, o], rows, cols)
    winner = None
    bias = None
    if layer.decomposition == "window_max":
        arg = _max_winner(win, padded)
        value = float(win[arg]) if arg is not None else -math.inf
        kernel = None
        if arg is not None:
            winner = {"position": (int(rows[arg[0]]), int(cols[arg[1]])), "value": value,
                      "offset": (int(arg[0]), int(arg[1]))}
    else:
        include = bool(getattr(layer, "count_include_pad", True))
        kernel = _avg_kernel(geo, (h, w), pos_w, include)
        coef, b = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if coef is not None:  # a per-map coefficient (and bias) after the mean: LeNet's subsampling
            kernel = kernel * float(as_array(coef)[o])
            bias = None if b is None else float(as_array(b)[o])
        value = _dot(win, kernel)
    term = Term(input_map=o, partial_sum=value, window=win, padded=padded, kernel=kernel, rows=rows, cols=cols)
    total = value + (bias or 0.0)
    geometry = None if whole else _geometry_dict(geo)
    return [term], bias, total, geometry, winner


def _explain_dense(layer, x_in: np.ndarray, o: int, source_shape):
    wt = as_array(layer.weight)
    col = wt[:, o]
    prods = x_in.astype(np.float64) * col.astype(np.float64)  # (in,)
    labels = None
    if source_shape is not None and int(np.prod(source_shape)) == x_in.size:
        labels = [f"({r}, {c}, {m})" for r, c, m in zip(*np.unravel_index(np.arange(x_in.size), source_shape))]
    terms = [Term(input_map=i, partial_sum=float(prods[i]), value=float(x_in[i]), weight=float(col[i]),
                  label=None if labels is None else labels[i]) for i in range(x_in.size)]
    bias = None if getattr(layer, "bias", None) is None else float(as_array(layer.bias)[o])
    total = math.fsum([bias or 0.0] + prods.tolist())
    return terms, bias, total


def _mark_zero_pad(terms: list, pad_pair, size_hw) -> dict:
    """Mark taps on the border a ZeroPad2D right before the layer added as padding too (their value
    is 0 either way; max pooling still compares them, as the engine does)."""
    name, pad = pad_pair
    (t, b), (l, r) = _window_ops.resolve_padding(pad.padding, (1, 1), (1, 1), (1, 1), op="ZeroPad2D",
                                            allow_strings=False)
    h, w = size_hw
    for term in terms:
        rows_off = (term.rows < t) | (term.rows >= h - b)  # (kh,)
        cols_off = (term.cols < l) | (term.cols >= w - r)  # (kw,)
        term.padded = term.padded | rows_off[:, None] | cols_off[None, :]
    return {"layer": name, "pads": [[t, b], [l, r]]}


def _windows_containing(geo: Geometry, r: int, c: int) -> list[tuple[int, int]]:
    """Output positions (i, j) of a window layer whose window taps input pixel (r, c)."""
    out_rows = [i for i in range(geo.out_hw[0]) if r in geo.rows(i)]
    out_cols = [j for j in range(geo.out_hw[1]) if c in geo.cols(j)]
    return [(i, j) for i in out_rows for j in out_cols]


def _apply(layer, arr: np.ndarray) -> np.ndarray:
    with no_grad():
        return as_array(layer(arr[None]))[0]


def _chain_after(nodes: list, idx: int) -> tuple[list[int], str | None]:
    """Indices of the nodes `_follow` walks after nodes[idx] — each the single reader of the one
    before, element-wise or an activation, with at most one pooling layer — and why the walk stops
    where a graph forks or merges (None when it just meets a layer of another kind, or the end)."""
    position = {n.name: k for k, n in enumerate(nodes)}
    readers: dict = {}
    for n in nodes:
        for i in dict.fromkeys(n.inputs):  # a node that reads a value twice is one reader
            readers.setdefault(i, []).append(n.name)
    chain, pooled, current = [], False, nodes[idx].name
    while True:
        after = readers.get(current, [])
        if len(after) > 1:
            return chain, f"{current!r} feeds {len(after)} nodes ({', '.join(after)})"
        if not after:
            return chain, None
        nxt = nodes[position[after[0]]]
        if nxt.layer.role == "merge":
            others = [i for i in nxt.inputs if i != current]
            return chain, (f"{current!r} enters the merge {nxt.name!r} ({type(nxt.layer).__name__}) with "
                           f"{', '.join(repr(o) for o in others) or 'itself'}")
        role = layer_role(nxt.layer)
        if role in ("pool", "global_pool") and not pooled:
            pooled = True
        elif role not in ("activation", "elementwise"):
            return chain, None
        chain.append(position[nxt.name])
        current = nxt.name


def _pool_step(node, current: np.ndarray, env: dict, unit: tuple) -> tuple[Step, tuple | None, np.ndarray]:
    """The pooling step after the explained value: every window that contains `unit`, the unit after
    the pool (None unless exactly one window holds it) and the pooled maps."""
    layer, role = node.layer, layer_role(node.layer)
    out, engine = _apply(layer, current), env[node.name]
    r, c, m = unit
    is_max = layer.decomposition == "window_max"
    if role == "global_pool":
        geo = Geometry.of(current.shape[:2], current.shape[:2])  # one window, the whole map
        spots, idx_of = [(0, 0)], (lambda i, j: (m,))
    else:
        geo = window_geometry(layer, current.shape[:2])
        spots, idx_of = _windows_containing(geo, r, c), (lambda i, j: (i, j, m))
    wins = []
    for i, j in spots:
        entry = {"position": (i, j), "value": float(out[idx_of(i, j)]),
                 "engine_value": float(engine[idx_of(i, j)]), "winner": None}
        if is_max:  # the winner is the engine's: what its forward passes on (and sends the gradient to)
            rows, cols = geo.rows(i), geo.cols(j)
            vals, padded = _window(env[node.inputs[0]][:, :, m], rows, cols)
            arg = _max_winner(vals, padded)
            wpos = (int(rows[arg[0]]), int(cols[arg[1]]))
            entry.update(winner=wpos == (r, c), winner_position=wpos, winner_value=float(vals[arg]))
        wins.append(entry)
    step = Step(node.name, type(layer).__name__, "pool", None, None, None, windows=wins)
    if len(spots) != 1:
        return step, None, out
    unit = idx_of(*spots[0])
    step.unit, step.value, step.engine_value = unit, wins[0]["value"], wins[0]["engine_value"]
    return step, unit, out


def _follow(nodes: list, chain: list[int], start: str, env: dict, unit: tuple, value: float) -> list[Step]:
    """Apply the nodes of `chain` (see `_chain_after`) to the recomputed value: element-wise layers,
    then one pooling layer, then element-wise layers again; everything else is the engine's."""
    steps: list[Step] = []
    current = np.array(env[start], copy=True)
    current[unit] = value
    for k in chain:
        node = nodes[k]
        role = layer_role(node.layer)
        if role in ("activation", "elementwise"):
            out = _apply(node.layer, current)
            if out.shape != current.shape:  # a layer that drops indices (GLU halves the maps)
                break
            steps.append(Step(node.name, type(node.layer).__name__, role, unit, float(out[unit]),
                              float(env[node.name][unit])))
            current = out
            continue
        if len(unit) != 3:  # a pool after a vector: nothing to follow
            break
        step, unit, current = _pool_step(node, current, env, unit)
        steps.append(step)
        if unit is None:
            break
    return steps


def _check_map(o, n: int, name: str, what: str) -> int:
    if isinstance(o, (bool, np.bool_)) or not isinstance(o, (int, np.integer)):
        raise TypeError(f"explain: out_map must be an int; received {o!r}")
    if not 0 <= o < n:
        raise ValueError(f"explain: out_map must be in [0, {n - 1}] (layer {name!r} has {n} {what}); received {o}")
    return int(o)


def merge_rule(layer) -> str | None:
    """How a merge layer's output value at an index comes from its inputs: 'sum', 'mean' or, for a
    concatenation along the channels, 'select' (the value of one input's map); None for any other
    layer or rule (a product, a maximum). Read from the class attribute `combine` (see `featuremaps.nn.Module`)."""
    if getattr(layer, "role", None) != "merge":
        return None
    combine = getattr(layer, "combine", None)
    if combine == "concat":
        return "select" if getattr(layer, "axis", None) == -1 else None
    return combine if combine in ("sum", "mean") else None


def _merge_kinds() -> list[str]:
    """Names of the registered merge classes `explain` decomposes (built with their defaults)."""
    kinds = []
    for cls in layer_classes(role="merge"):
        try:
            layer = cls()
        except TypeError:  # a merge class that needs arguments: not listed
            continue
        if merge_rule(layer) is not None:
            kinds.append(cls.__name__)
    return kinds


def _check_explainable(nodes: list, idx: int, op: str) -> None:
    """Raise unless the layer's class has a `decomposition` and a role `_decompose` dispatches on,
    or it is a merge whose rule `merge_rule` knows."""
    node = nodes[idx]
    name, lay = node.name, node.layer
    role = layer_role(lay)
    if getattr(lay, "decomposition", None) is not None and role in ("conv", "dense", "pool", "global_pool"):
        return
    if merge_rule(lay) is not None:
        return
    hint = ""
    producers = {n.name for n in nodes}
    if role in ("activation", "elementwise") and lay.role != "merge" and node.inputs[0] in producers:
        before = node.inputs[0]
        hint = (f"; {name!r} is element-wise: explain the layer before it ({before!r}), whose "
                f"explanation follows the value through {name!r}")
    merges = ", ".join(_merge_kinds())
    raise ValueError(f"{op}: cannot explain layer {name!r} of kind {type(lay).__name__}; explainable kinds: "
                     f"{', '.join(explainable_kinds())}, and the merges that add, average or concatenate "
                     f"maps ({merges}){hint}")


def _broadcast_index(shape: tuple, unit: tuple) -> tuple:
    """The index of an input of `shape` that NumPy broadcasting reads for output index `unit`."""
    tail = unit[len(unit) - len(shape):]
    return tuple(0 if s == 1 else u for s, u in zip(shape, tail))


def _explain_merge(node, env: dict, unit: tuple, rule: str):
    """(terms, total) of a merge: each input's value at the unit (sum, mean), or the one input map a
    concatenated map comes from (select)."""
    inputs = [env[i] for i in node.inputs]
    if rule == "select":
        offset = 0
        for k, (name, arr) in enumerate(zip(node.inputs, inputs)):
            if unit[-1] < offset + arr.shape[-1]:
                local = unit[:-1] + (unit[-1] - offset,)
                v = float(arr[local])
                return [Term(input_map=k, partial_sum=v, value=v, weight=1.0,
                             label=f"{name} map {local[-1]}")], v
            offset += arr.shape[-1]
    weight = 1.0 if rule == "sum" else 1.0 / len(inputs)
    terms = []
    for k, (name, arr) in enumerate(zip(node.inputs, inputs)):
        v = float(arr[_broadcast_index(arr.shape, unit)])
        terms.append(Term(input_map=k, partial_sum=v * weight, value=v, weight=weight,
                          label=f"{name} map {_broadcast_index(arr.shape, unit)[-1]}"))
    total = math.fsum(t.value for t in terms)
    return terms, (total if rule == "sum" else total / len(inputs))


def _input_node(nodes: list, node):
    """The node whose output `node` reads (its first input), or None for a model input."""
    return next((n for n in nodes if n.name == node.inputs[0]), None)


def _decompose(nodes: list, idx: int, env: dict, o: int, pos, op: str):
    """(terms, bias, total, geometry, wiring, winner, unit) by the layer's `decomposition`: a weighted
    sum over a window (conv) or a vector (dense), a window's max or mean (pooling), or a merge."""
    node = nodes[idx]
    name, lay = node.name, node.layer
    role, x_in = layer_role(lay), env[node.inputs[0]]
    geometry = wiring = winner = bias = None
    before = _input_node(nodes, node)
    if lay.role == "merge":
        unit = (o,) if pos is None else (pos[0], pos[1], o)
        terms, total = _explain_merge(node, env, unit, merge_rule(lay))
    elif lay.decomposition == "weighted_sum" and role == "conv":
        terms, bias, total, geometry, wiring = _explain_conv(lay, x_in, o, pos)
        unit = (pos[0], pos[1], o)
    elif lay.decomposition == "weighted_sum":
        if x_in.ndim != 1:
            raise ValueError(f"{op}: dense layer {name!r} receives maps {x_in.shape}; expected a vector")
        flat = before is not None and layer_role(before.layer) == "flatten" and env[before.inputs[0]].ndim == 3
        source = env[before.inputs[0]].shape if flat else None  # label each input by its (h, w, c) origin
        terms, bias, total = _explain_dense(lay, x_in, o, source)
        unit = (o,)
    else:
        terms, bias, total, geometry, winner = _explain_pool(lay, x_in, o, pos)
        unit = (o,) if role == "global_pool" else (pos[0], pos[1], o)
    if role in ("conv", "pool") and before is not None and layer_role(before.layer) == "pad":
        geometry["zero_pad"] = _mark_zero_pad(terms, (before.name, before.layer), x_in.shape[:2])
    return terms, bias, total, geometry, wiring, winner, unit


def _find_node(model, nodes: list, layer, op: str) -> int:
    target = resolve_layer(model, layer, op=op) if not hasattr(layer, "forward") else layer
    idx = next((k for k, n in enumerate(nodes) if n.layer is target), None)
    if idx is None:
        raise ValueError(f"{op}: layer must be the name of one of the model's layers "
                         f"({', '.join(n.name for n in nodes)}); received {layer!r}")
    return idx


def explain(model, x, layer, out_map: int, position=None) -> Explanation:
    """Decompose output value `out_map` at `position` = (row, col) of `layer` for input `x`.

    `model` is a `Sequential` or a `Graph`; `x` one input `(H, W, C)` or a batch of one (a dict name →
    input for a graph with several inputs); `layer` a layer (node) name (unknown names raise a
    ValueError listing the valid ones); `position` is None for layers that output vectors (Dense,
    global pooling). The layer's input is what its node reads. Explainable kinds:
    `explainable_kinds()`, the layer classes whose `decomposition` is set, and the merges that add,
    average or concatenate maps along the channels (`merge_rule`). Returns an `Explanation` (see its
    docstring) whose `pre_activation` is recomputed in float64 from the layer's input(s) and
    parameters and checked against the engine's output (`engine_value`, `difference`).

    The layers after it are followed while each is the only reader of the value before and is
    element-wise (with at most one pooling layer); at a fork or a merge the walk stops and
    `stopped` says where.
    """
    op = "explain"
    nodes = model_nodes(model)
    idx = _find_node(model, nodes, layer, op)
    _check_explainable(nodes, idx, op)
    node = nodes[idx]
    xb = as_model_input(model, x, op)
    chain, stopped = _chain_after(nodes, idx)
    env = {a.name: a.array for a in _run(model, xb, upto=max([idx] + chain))}
    x_in, y = env[node.inputs[0]], env[node.name]
    o = _check_map(out_map, y.shape[-1], node.name, "output maps" if y.ndim == 3 else "outputs")
    pos = check_position(position, y.shape, op, node.name)
    terms, bias, total, geometry, wiring, winner, unit = _decompose(nodes, idx, env, o, pos, op)
    engine = float(y[unit])
    diff = abs(total - engine) if math.isfinite(total) and math.isfinite(engine) else \
        (0.0 if (math.isnan(total) and math.isnan(engine)) or total == engine else math.inf)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        after = _follow(nodes, chain, node.name, env, unit, total)
    finally:
        if was_training:
            model.train()
    lay = node.layer
    rule = merge_rule(lay) if lay.role == "merge" else None
    return Explanation(layer=node.name, kind=type(lay).__name__, out_map=o, position=pos, terms=terms, bias=bias,
                       pre_activation=total, engine_value=engine, difference=diff,
                       input_layer=", ".join(node.inputs), input_shape=tuple(x_in.shape),
                       output_shape=tuple(y.shape), dtype=str(y.dtype), winner=winner, after=after,
                       geometry=geometry, wiring=wiring, role=lay.role, decomposition=rule or lay.decomposition,
                       stopped=stopped)
