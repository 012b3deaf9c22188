"""The report page's script (inlined into every report). No libraries, no network."""

JS = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("fm-data").textContent);
const Arr = D.dtype === "float64" ? Float64Array : Float32Array;

function decode(b64) {
  if (b64 === null || b64 === undefined) return null;
  const bin = atob(b64);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return new Arr(u8.buffer);
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}
// Numbers: 7 significant digits on screen; the exact double in data-value.
function fmt(v) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e-4 && a < 1e7) return String(Number(v.toPrecision(7)));
  return v.toExponential(6).replace(/\.?0+e/, "e");
}
function num(v, attrs) {
  return el("td", Object.assign({ class: "num", "data-value": String(v), text: fmt(v) }, attrs || {}));
}
function fmtShape(s) { return s.join(" × "); }

// ---- layers --------------------------------------------------------------------------------
function decodeU8(b64) {
  const bin = atob(b64), u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}
// a conv's (c_in, c_out) links: a "01" string, "full", or packed bits (most significant first)
function linkTest(op, cout) {
  if (op.connections === "full") return function () { return true; };
  if (typeof op.connections === "string") {
    const s = op.connections;
    return function (i, m) { return s.charCodeAt(i * cout + m) === 49; };
  }
  const bits = decodeU8(op.connections_bits);
  return function (i, m) { const j = i * cout + m; return (bits[j >> 3] >> (7 - (j & 7))) & 1; };
}
const L = D.layers.map(function (l) {
  const o = Object.assign({}, l);
  o.v = decode(l.values);
  o.exact = o.v !== null;   // else only an 8-bit preview of its first maps is embedded (the value budget)
  if (!o.exact) o.pv = decodeU8(l.preview.data);
  if (l.shape.length === 3) {
    o.isMap = true; o.H = l.shape[0]; o.W = l.shape[1]; o.C = l.shape[2];
    // 1×1×C maps (LeNet-5's C5) are drawn as one compact strip of cells, laid out as a vector of C
    o.strip = o.H * o.W === 1 && o.C > 1;
    if (o.strip) o.cols = o.C <= 32 ? o.C : Math.max(32, Math.ceil(Math.sqrt(2 * o.C)));
  } else {
    const F = l.shape.length ? l.shape[0] : 1;
    o.isMap = false; o.F = F; o.C = 1;
    o.W = F <= 32 ? F : Math.max(32, Math.ceil(Math.sqrt(2 * F)));
    o.H = Math.ceil(F / o.W);
  }
  if (o.op && (o.op.type === "conv" || (o.op.type === "omitted" && o.op.was === "conv"))) {
    const cin = o.op.in_maps, cout = o.C, linked = linkTest(o.op, cout);
    o.op.fed = [];
    for (let m = 0; m < cout; m++) {
      const list = [];
      for (let i = 0; i < cin; i++) if (linked(i, m)) list.push(i);
      o.op.fed.push(list);
    }
  }
  if (o.op && o.op.type === "conv") {
    o.op.K = decode(o.op.kernels);
    o.op.B = decode(o.op.bias);
    let km = 0;
    for (let i = 0; i < o.op.K.length; i++) if (Number.isFinite(o.op.K[i])) km = Math.max(km, Math.abs(o.op.K[i]));
    o.op.kabs = km;
  } else if (o.op && o.op.type === "dense") {
    o.op.Wt = decode(o.op.weight);
    o.op.B = decode(o.op.bias);
  }
  return o;
});
const byName = {};
L.forEach(function (l, k) {
  byName[l.name] = l;
  // the input, and padding of it, are drawn in grey from min to max; everything else diverging around 0
  l.grey = !l.ins.length || (l.op && l.op.type === "zeropad" && L[l.ins[0]].grey);
});

function IN(k) { return L[k].ins[0]; }   // the entry a layer reads (its first input)
const GRAPH = D.graph;   // a graph model: the overview is drawn as a DAG and its blocks fold
function unitOf(l, r, c) { return r * l.W + c; }
function val(l, m, r, c) {
  if (!l.exact) return NaN;
  if (l.isMap) return l.v[(r * l.W + c) * l.C + m];
  return l.v[unitOf(l, r, c)];
}
function inRange(l, r, c) {
  if (r < 0 || c < 0 || r >= l.H || c >= l.W) return false;
  return l.isMap || unitOf(l, r, c) < l.F;
}
function posLabel(l, m, r, c) {
  return l.isMap ? l.name + "[" + r + ", " + c + ", " + m + "]" : l.name + "[" + unitOf(l, r, c) + "]";
}

// ---- colours -------------------------------------------------------------------------------
const STOPS = [[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]];
function diverging(t) {
  if (!Number.isFinite(t)) return [255, 0, 255];
  t = Math.max(-1, Math.min(1, t));
  const u = (t + 1) * 2, i = Math.min(3, Math.floor(u)), f = u - i, a = STOPS[i], b = STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}
function colourFn(l) {
  if (l.grey) {
    const lo = l.min, span = (l.max - l.min) || 1;
    return function (v) {
      if (!Number.isFinite(v)) return [255, 0, 255];
      const g = 255 * Math.max(0, Math.min(1, (v - lo) / span));
      return [g, g, g];
    };
  }
  const s = l.absmax || 1;
  return function (v) { return diverging(v / s); };
}
function paint(canvas, w, h, get, colour) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
    const v = get(r, c), k = 4 * (r * w + c);
    if (v === undefined) { img.data[k + 3] = 0; continue; }
    const rgb = colour(v);
    img.data[k] = rgb[0]; img.data[k + 1] = rgb[1]; img.data[k + 2] = rgb[2]; img.data[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}
// An 8-bit preview value back on the layer's scale (see featuremaps/report/_values.py); 0 is non-finite.
function previewVal(l, q) {
  if (q === 0) return NaN;
  return l.grey ? l.min + (q - 1) / 254 * (l.max - l.min) : (q - 128) / 127 * l.absmax;
}
function paintMap(cv, l, m) {
  if (l.exact) {
    paint(cv, l.W, l.H, function (r, c) { return inRange(l, r, c) ? val(l, m, r, c) : undefined; }, colourFn(l));
  } else if (l.isMap) {
    const P = l.preview, base = m * P.h * P.w;
    paint(cv, P.w, P.h, function (r, c) { return previewVal(l, l.pv[base + r * P.w + c]); }, colourFn(l));
  } else {
    const n = l.preview.units;
    paint(cv, l.W, l.H, function (r, c) { const u = unitOf(l, r, c); return u < n ? previewVal(l, l.pv[u]) : undefined; }, colourFn(l));
  }
}
function shownMaps(l) { return l.isMap ? (l.exact ? l.C : l.preview.maps) : 1; }
function mapCanvas(l, m, cssPx) {
  const cv = el("canvas", { "aria-hidden": "true" });
  paintMap(cv, l, m);
  const scale = cssPx / Math.max(l.W, l.H);
  cv.style.width = Math.round(l.W * scale) + "px";
  cv.style.height = Math.round(l.H * scale) + "px";
  return cv;
}
const STRIP_CELL = 10;   // css pixels per cell of a 1×1×C strip, border included (a vector's cells are 10 too)
function tilePx(l) {
  if (!l.isMap) return Math.min(l.W * 10, 360);
  return Math.max(44, Math.min(96, Math.max(l.H, l.W) * 3));
}
function gridCanvas(vals, kh, kw, colour, cssPx) {
  const cv = el("canvas", { "aria-hidden": "true" });
  paint(cv, kw, kh, function (p, q) { return vals[p * kw + q]; }, colour);
  const s = cssPx / Math.max(kh, kw);
  cv.style.width = Math.round(kw * s) + "px"; cv.style.height = Math.round(kh * s) + "px";
  return cv;
}

// ---- colour (a 3-channel input: featuremaps/report/build.py's `rgb` flag) --------------------
const CH = ["R", "G", "B"];
function rgbIn(l) { return !!l.rgb && l.isMap && l.C === 3; }
function readsRGB(l) { return !!(l.op && l.op.type === "conv" && l.op.in_maps === 3 && l.ins.length && rgbIn(L[l.ins[0]])); }
// A colour input's values as 0..255, the same scale for all three channels: as they are when they lie
// in [0, 1], else stretched from the layer's min to its max. Non-finite values are magenta.
function rgbLevel(l) {
  const unit = l.min >= 0 && l.max <= 1, lo = unit ? 0 : l.min, span = unit ? 1 : ((l.max - l.min) || 1);
  return function (v) { return Number.isFinite(v) ? 255 * Math.max(0, Math.min(1, (v - lo) / span)) : NaN; };
}
function rgbPixel(level, a, b, c) {
  const px = [level(a), level(b), level(c)];
  return px.some(Number.isNaN) ? [255, 0, 255] : px;
}
function same(v) { return v; }
// the whole colour input as one RGB canvas, cssPx on its longer side
function rgbCanvas(l, cssPx, attrs) {
  const cv = el("canvas", attrs || { "aria-hidden": "true" }), level = rgbLevel(l);
  paint(cv, l.W, l.H, function (r, c) {
    return inRange(l, r, c) ? rgbPixel(level, val(l, 0, r, c), val(l, 1, r, c), val(l, 2, r, c)) : undefined;
  }, same);
  const s = cssPx / Math.max(l.W, l.H);
  cv.style.width = Math.round(l.W * s) + "px"; cv.style.height = Math.round(l.H * s) + "px";
  cv.style.imageRendering = "pixelated";
  return cv;
}
// max |w| over the filter w[:, :, :, m] (its three slices)
function filterAbs(op, m) {
  const kk = op.kernel[0] * op.kernel[1], cin = op.in_maps, cout = op.K.length / (kk * cin);
  let a = 0;
  for (let j = 0; j < kk * cin; j++) { const w = op.K[j * cout + m]; if (Number.isFinite(w)) a = Math.max(a, Math.abs(w)); }
  return a;
}
// the filter w[:, :, :, m] of a conv reading a colour input as kh × kw RGB values: 0.5 + w / (2·max|w|)
// per channel over the filter, so that zero is mid-grey, a positive red weight reddish
function kernelRGB(op, m) {
  const kh = op.kernel[0], kw = op.kernel[1], cout = op.K.length / (kh * kw * 3), s = filterAbs(op, m) || 1;
  const out = new Array(kh * kw);
  for (let j = 0; j < kh * kw; j++) {
    const px = [0, 1, 2].map(function (i) { return op.K[(j * 3 + i) * cout + m]; });
    out[j] = px.every(Number.isFinite) ? px.map(function (w) { return Math.round(255 * (0.5 + w / (2 * s))); })
      : [255, 0, 255];
  }
  return out;
}
function figureOf(caption, canvas, attrs) {
  return el("figure", attrs || {}, canvas, el("figcaption", { text: caption }));
}

// ---- state ---------------------------------------------------------------------------------
const tiles = L.map(function () { return []; });   // tiles[k][m] = {button, frame, win, cursor}
const sections = [], mapsHosts = [], tileSize = [];
let sel = null;   // {k, m, r, c}

function argmaxOf(l, m) {
  if (!l.exact) return [0, 0, -Infinity];
  let best = -Infinity, br = 0, bc = 0;
  for (let r = 0; r < l.H; r++) for (let c = 0; c < l.W; c++) {
    if (!inRange(l, r, c)) continue;
    const v = val(l, m, r, c);
    if (Number.isFinite(v) && v > best) { best = v; br = r; bc = c; }
  }
  return [br, bc, best];
}
function strongestMap(l) {
  let best = -Infinity, bm = 0;
  for (let m = 0; m < l.C; m++) { const a = argmaxOf(l, m); if (a[2] > best) { best = a[2]; bm = m; } }
  return bm;
}

// ---- the layer column ----------------------------------------------------------------------
function opText(l) {
  const op = l.op;
  if (!op) return "";
  if (op.type === "conv") {
    return op.kernel.join("×") + " kernels, stride " + op.stride.join("×") + ", " +
      op.fed.reduce(function (a, f) { return a + f.length; }, 0) + " map-to-map links";
  }
  if (op.type === "dense") return op.in_features + " inputs per unit";
  if (op.type === "pool") return op.mode + " over " + op.kernel.join("×") + " windows, stride " + op.stride.join("×");
  if (op.type === "omitted") return "weights not embedded: " + op.reason;
  return "";
}
function layerSection(l, k) {
  const nMaps = shownMaps(l);
  const h = el("h3", { id: "layer-h-" + k },
    el("span", { class: "lname", text: l.name }),
    el("span", { class: "kind", text: l.kind === "input" ? "input" : l.kind }),
    el("span", { class: "shape", text: fmtShape(l.shape) }));
  const legend = el("span", { class: "legend" },
    el("span", { class: "bar" + (l.grey ? " grey" : ""), "aria-hidden": "true" }),
    el("span", { class: "num", text: l.grey ? fmt(l.min) + " … " + fmt(l.max) : "±" + fmt(l.absmax) }));
  const descTxt = [l.describe, opText(l)].filter(Boolean).join(" · ");
  const desc = el("p", { class: "desc" }, legend, descTxt ? " " + descTxt : "");
  const maps = el("div", { class: l.strip ? "maps strip" : "maps", role: "group",
    style: l.strip ? "grid-template-columns: repeat(" + l.cols + ", " + STRIP_CELL + "px)" : null,
    "aria-label": l.name + ": " + (l.strip ? nMaps + " feature maps of 1 × 1, one cell each, " + l.cols +
      " per row; arrow keys move between them" : l.isMap ? nMaps + " feature maps of " + l.H + " × " + l.W
      : l.F + " units") });
  mapsHosts[k] = maps;
  const sec = el("section", { class: "layer", id: "layer-" + l.name, "data-layer": k,
    "aria-labelledby": "layer-h-" + k }, h, desc);
  if (GRAPH && GRAPH.wiring && GRAPH.wiring[l.name]) sec.append(el("p", { class: "desc wiring",
    id: "wiring-" + k, text: "wiring: " + GRAPH.wiring[l.name] }));
  if (GRAPH && l.ins.length) sec.append(el("p", { class: "desc inputs" }, "← reads " + l.inputs.join(", ")));
  if (!l.exact) sec.append(el("p", { class: "hint preview-note", text: "Preview: " + (l.isMap ? "maps 0–" +
    (nMaps - 1) + " of " + l.C + " at " + l.preview.h + " × " + l.preview.w + " pixels" : "the first " +
    l.preview.units + " units") + ", 8-bit; exact values are not embedded (the report's value budget)." }));
  if (rgbIn(l) && l.exact) {   // a colour input: the image itself, above its three channels
    const cv = rgbCanvas(l, 2 * tilePx(l), { id: "rgb-" + k, class: "rgb-input", "data-layer": k, role: "img",
      "aria-label": l.name + " in colour: channels 0, 1, 2 as red, green, blue" });
    cv.addEventListener("click", function (ev) {
      const rc = cv.getBoundingClientRect();
      const r = Math.floor((ev.clientY - rc.top) / rc.height * l.H), c = Math.floor((ev.clientX - rc.left) / rc.width * l.W);
      if (inRange(l, r, c)) select(k, sel && sel.k === k ? sel.m : 0, [r, c]);
    });
    sec.append(el("figure", { class: "rgbpic" }, cv, el("figcaption", { class: "hint",
      text: "In colour (maps 0, 1, 2 as R, G, B" + (l.min >= 0 && l.max <= 1 ? ", 0 … 1" : ", from min to max") +
        "); below, each channel in grey. Click a pixel or a channel." })));
  }
  sec.append(maps);
  if (l.strip) sec.append(el("p", { class: "hint strip-hint",
    text: "One cell per 1 × 1 map, " + l.cols + " per row from map 0 (as they flatten); hover for an index." }));
  if (!l.isMap && D.prediction && k === L.length - 1) sec.append(classList(l, k));
  return sec;
}
// (Re)draw the tiles of layer k at `px` css pixels a map (graph reports draw them on demand).
function fillTiles(k, px) {
  const l = L[k], maps = mapsHosts[k], nMaps = shownMaps(l);
  maps.textContent = "";
  tiles[k] = [];
  tileSize[k] = px;
  for (let m = 0; m < nMaps; m++) {
    const cv = mapCanvas(l, m, px);
    const win = el("span", { class: "overlay window", hidden: true });
    const cur = el("span", { class: "overlay cursor", hidden: true });
    const frame = el("span", { class: "frame" }, cv, win, cur);
    const label = l.isMap ? l.name + " map " + m + (rgbIn(l) ? " (" + CH[m] + ")" : "") + " of " + l.C + ", " + l.H + " by " + l.W
      : l.name + ", " + l.F + " units";
    const b = el("button", { type: "button", class: "tile", "data-layer": k, "data-map": m,
      "aria-pressed": "false", "aria-label": label, tabindex: l.strip && m > 0 ? "-1" : null,
      title: l.strip ? l.name + " map " + m + " = " + fmt(val(l, m, 0, 0)) : null },
      frame, l.isMap && !l.strip ? el("span", { class: "mi", "aria-hidden": "true", text: rgbIn(l) ? CH[m] : String(m) }) : null);
    if (rgbIn(l)) b.setAttribute("data-channel", CH[m]);
    b.addEventListener("click", function (ev) {
      let pos = null;
      if (ev.detail > 0) {   // a pointer click: pick the pixel under it
        const rc = cv.getBoundingClientRect();
        if (ev.clientX >= rc.left && ev.clientX < rc.right && ev.clientY >= rc.top && ev.clientY < rc.bottom) {
          pos = [Math.floor((ev.clientY - rc.top) / rc.height * l.H), Math.floor((ev.clientX - rc.left) / rc.width * l.W)];
        }
      }
      select(k, m, pos);
      // on a narrow screen the panel sits below the layers: a click jumps down to it, as a new
      // history entry with the same selection, so that Back returns to the map
      if (ev.detail > 0 && narrow()) { record("push"); panelEl.scrollIntoView({ block: "start" }); }
    });
    b.addEventListener("keydown", function (ev) { arrowKey(ev, k, m); });
    maps.append(b);
    tiles[k].push({ button: b, frame: frame, win: win, cursor: cur });
  }
}
function fullPx(l) { return l.strip ? STRIP_CELL - 2 : tilePx(l); }
function buildLayers() {
  const host = document.getElementById("layers");
  if (GRAPH) { buildGraphLayers(host); return; }
  L.forEach(function (l, k) {
    const sec = layerSection(l, k);
    sections.push(sec);
    host.append(sec);
    fillTiles(k, fullPx(l));
  });
}
const classButtons = [];
function classList(l, k) {
  const ol = el("ol", { class: "classes", "aria-label": "Predicted probabilities (softmax of " + l.name + ")" });
  const probs = D.prediction.probs;
  for (let u = 0; u < l.F; u++) {
    const name = D.classes ? String(D.classes[u]) : String(u);
    const pct = 100 * probs[u];
    const b = el("button", { type: "button", "data-unit": u,
      class: u === D.prediction.class ? "best" : null,
      "aria-label": "class " + name + ": probability " + pct.toFixed(2) + "%, logit " + fmt(l.v[u]) },
      el("span", { text: name }),
      el("span", { class: "pbar", "aria-hidden": "true" }, el("span", { style: "width:" + pct.toFixed(2) + "%" })),
      el("span", { class: "num", text: pct.toFixed(2) + "%" }));
    b.addEventListener("click", function () { select(k, 0, [Math.floor(u / l.W), u % l.W]); });
    classButtons.push(b);
    ol.append(el("li", {}, b));
  }
  return ol;
}

function place(node, l, r0, c0, r1, c1) {  // inclusive rows/cols, clipped to the map
  r0 = Math.max(0, r0); c0 = Math.max(0, c0); r1 = Math.min(l.H - 1, r1); c1 = Math.min(l.W - 1, c1);
  if (r1 < r0 || c1 < c0) { node.hidden = true; return; }
  node.style.top = (100 * r0 / l.H) + "%"; node.style.left = (100 * c0 / l.W) + "%";
  node.style.height = (100 * (r1 - r0 + 1) / l.H) + "%"; node.style.width = (100 * (c1 - c0 + 1) / l.W) + "%";
  node.hidden = false;
}

// The window of input rows/cols a unit at (r, c) reads (conv and pool), inclusive, unclipped.
function windowOf(op, r, c) {
  const r0 = r * op.stride[0] - op.pad[0][0], c0 = c * op.stride[1] - op.pad[1][0];
  return [r0, c0, r0 + (op.kernel[0] - 1) * op.dilation[0], c0 + (op.kernel[1] - 1) * op.dilation[1]];
}

function highlight() {
  tiles.forEach(function (ts) {
    ts.forEach(function (t) {
      t.button.classList.remove("selected", "feeds", "unfed");
      t.button.setAttribute("aria-pressed", "false");
      t.win.hidden = true; t.cursor.hidden = true;
    });
  });
  sections.forEach(function (s) { s.classList.remove("has-selection", "feeds-selection"); });
  classButtons.forEach(function (b) { b.classList.remove("selected"); });
  const k = sel.k, l = L[k], t = tiles[k][sel.m] || { button: el("span"), cursor: el("span") };
  tiles.forEach(function (ts, j) {   // a strip is one Tab stop: its selected cell (else its first)
    if (L[j].strip) ts.forEach(function (tt, m) { tt.button.tabIndex = (k === j ? m === sel.m : m === 0) ? 0 : -1; });
  });
  t.button.classList.add("selected");
  t.button.setAttribute("aria-pressed", "true");
  place(t.cursor, l, sel.r, sel.c, sel.r, sel.c);
  sections[k].classList.add("has-selection");
  if (!l.isMap && classButtons.length && k === L.length - 1) {
    const u = unitOf(l, sel.r, sel.c);
    if (classButtons[u]) classButtons[u].classList.add("selected");
  }
  if (!l.ins.length) return;
  const p = L[IN(k)], pt = tiles[IN(k)], op = l.op;
  l.ins.forEach(function (i) { sections[i].classList.add("feeds-selection"); });
  if (GRAPH) markDag();
  if (op && op.type === "merge") {
    highlightMerge(l);
  } else if (op && op.fed) {
    const fed = op.fed[sel.m], w = windowOf(op, sel.r, sel.c);
    pt.forEach(function (tt, i) {
      if (fed.indexOf(i) >= 0) { tt.button.classList.add("feeds"); place(tt.win, p, w[0], w[1], w[2], w[3]); }
      else tt.button.classList.add("unfed");
    });
  } else if (op && op.type === "pool" && pt[sel.m]) {
    const w = windowOf(op, sel.r, sel.c);
    pt.forEach(function (tt, i) { tt.button.classList.add(i === sel.m ? "feeds" : "unfed"); });
    place(pt[sel.m].win, p, w[0], w[1], w[2], w[3]);
  } else if (op && op.type === "global_pool") {
    const u = unitOf(l, sel.r, sel.c);
    pt.forEach(function (tt, i) { tt.button.classList.add(i === u ? "feeds" : "unfed"); });
  } else if (op && op.type === "elementwise" && pt[sel.m]) {
    pt.forEach(function (tt, i) { tt.button.classList.add(i === sel.m ? "feeds" : "unfed"); });
    place(pt[sel.m].win, p, sel.r, sel.c, sel.r, sel.c);
  } else if (op && op.type === "zeropad" && pt[sel.m]) {
    pt.forEach(function (tt, i) { tt.button.classList.add(i === sel.m ? "feeds" : "unfed"); });
    const rr = sel.r - op.pad[0][0], cc = sel.c - op.pad[1][0];
    place(pt[sel.m].win, p, rr, cc, rr, cc);
  } else if (op && op.type === "flatten" && p.isMap) {
    const u = unitOf(l, sel.r, sel.c), m = u % p.C, pix = Math.floor(u / p.C);
    pt.forEach(function (tt, i) { tt.button.classList.add(i === m ? "feeds" : "unfed"); });
    if (pt[m]) place(pt[m].win, p, Math.floor(pix / p.W), pix % p.W, Math.floor(pix / p.W), pix % p.W);
  } else {
    pt.forEach(function (tt) { tt.button.classList.add("feeds"); });
  }
}

// ---- selection and keyboard ----------------------------------------------------------------
// how: "replace" (default: the address follows the selection), "push" (following a link: a new
// history entry, so that Back returns here) or "none" (restoring an entry).
function select(k, m, pos, how) {
  if (how === "push") snapshot();
  const l = L[k];
  if (GRAPH) ensureShown(k);
  let r, c;
  if (pos) { r = pos[0]; c = pos[1]; }
  else if (sel && sel.k === k) { r = sel.r; c = sel.c; }
  else { const a = argmaxOf(l, m); r = a[0]; c = a[1]; }
  r = Math.max(0, Math.min(l.H - 1, r)); c = Math.max(0, Math.min(l.W - 1, c));
  if (!inRange(l, r, c)) { const u = l.F - 1; r = Math.floor(u / l.W); c = u % l.W; }
  sel = { k: k, m: m, r: r, c: c };
  highlight();
  renderPanel();
  record(how || "replace");
}
const MOVES = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
function arrowKey(ev, k, m) {
  const d = MOVES[ev.key];
  if (!d) return;
  ev.preventDefault();
  const l = L[k];
  if (l.strip) {   // a strip of 1×1 maps: the arrows walk the cells (up/down by a row of the strip)
    const to = Math.max(0, Math.min(l.C - 1, m + d[1] + d[0] * l.cols));
    select(k, to, [0, 0]);
    tiles[k][to].button.focus();
    return;
  }
  if (!sel || sel.k !== k || sel.m !== m) { select(k, m, null); return; }
  move(d);
}
function move(d) {
  const l = L[sel.k];
  let r = sel.r + d[0], c = sel.c + d[1];
  if (!l.isMap && d[1] !== 0) {   // vectors: left/right walk the units in order
    const u = Math.max(0, Math.min(l.F - 1, unitOf(l, sel.r, sel.c) + d[1]));
    r = Math.floor(u / l.W); c = u % l.W;
  }
  if (r < 0 || c < 0 || r >= l.H || c >= l.W || !inRange(l, r, c)) return;
  select(sel.k, sel.m, [r, c]);
}
function narrow() { return window.matchMedia("(max-width: 900px)").matches; }   // the CSS breakpoint

// ---- history: the address names the selection (#layer/map/row,col); following a link (and, on a
// narrow screen, a click on a map) pushes an entry, so that the page's Back button and the
// browser's both return to the previous selection and scroll position.
const views = {};    // history entry id -> {k, m, r, c, y, py}: what to restore when it is shown again
const trail = [];    // trail[d]: the selection at depth d of this page's own history (for Back's label)
let entry = Date.now(), nextEntry = entry + 1, depth = 0, restoring = false, historyOK = true;
const panelEl = document.getElementById("panel");
function hashOf(s) { return "#" + encodeURIComponent(L[s.k].name) + "/" + s.m + "/" + s.r + "," + s.c; }
function parseHash(h) {
  const g = /^#([^/]+)\/(\d+)\/(\d+),(\d+)$/.exec(h || "");
  if (!g) return null;
  let name;
  try { name = decodeURIComponent(g[1]); } catch (e) { return null; }
  const l = byName[name], m = Number(g[2]), r = Number(g[3]), c = Number(g[4]);
  if (!l || m >= (l.isMap ? l.C : 1) || !inRange(l, r, c)) return null;
  return { k: L.indexOf(l), m: m, r: r, c: c };
}
function snapshot() {
  if (!sel || restoring) return;
  views[entry] = { k: sel.k, m: sel.m, r: sel.r, c: sel.c, y: window.scrollY, py: panelEl.scrollTop };
}
function record(how) {
  if (how === "none") return;
  if (how === "push") { entry = nextEntry++; depth++; trail.length = depth; }
  trail[depth] = { k: sel.k, m: sel.m, r: sel.r, c: sel.c };
  writeHistory(how, { fm: 1, entry: entry, depth: depth, k: sel.k, m: sel.m, r: sel.r, c: sel.c }, hashOf(sel));
  snapshot();
  updateBack();
}
// Browsers refuse more than a few hundred history updates in 10 s, and a held arrow key selects 30
// units a second: the address follows the selection at most every 250 ms (the last one always
// lands, and before any new entry is pushed).
let pendingWrite = null, lastWrite = -Infinity;
function writeHistory(how, state, hash) {
  const replace = function () {
    pendingWrite = null; lastWrite = performance.now();
    try { history.replaceState(state, "", hash); } catch (e) { /* no history here: the address stays */ }
  };
  if (how === "push") {
    if (pendingWrite) { clearTimeout(pendingWrite.timer); pendingWrite.run(); }
    try { history.pushState(state, "", hash); lastWrite = performance.now(); }
    catch (e) { historyOK = false; }   // no history here (a sandbox): the page's Back still works
    return;
  }
  if (pendingWrite) clearTimeout(pendingWrite.timer);
  const wait = lastWrite + 250 - performance.now();
  if (wait <= 0) { replace(); return; }
  pendingWrite = { run: replace, timer: setTimeout(replace, wait) };
}
function restore(v) {
  restoring = true;
  select(v.k, v.m, [v.r, v.c], "none");
  trail[depth] = { k: v.k, m: v.m, r: v.r, c: v.c };
  const tile = (tiles[v.k][v.m] || { button: sections[v.k] }).button;
  tile.focus({ preventScroll: true });
  if (v.y !== undefined) window.scrollTo(0, v.y);
  else tile.scrollIntoView({ block: "center" });   // an entry from before a reload: no scroll was kept
  if (v.py !== undefined) panelEl.scrollTop = v.py;
  restoring = false;
  snapshot();
  updateBack();
}
function updateBack() {
  const b = document.getElementById("back"), prev = trail[depth - 1];
  b.hidden = depth <= 0;
  const same = prev && sel && prev.k === sel.k && prev.m === sel.m && prev.r === sel.r && prev.c === sel.c;
  b.textContent = "← Back" + (!prev ? "" : same ? " to the layers"
    : " to " + posLabel(L[prev.k], prev.m, prev.r, prev.c));
}
function goBack() {
  if (depth <= 0) return;
  if (historyOK) { history.back(); return; }
  depth--;   // no history API here: step back along the page's own trail
  restore(trail[depth]);
}
window.addEventListener("popstate", function (ev) {
  if (pendingWrite) { clearTimeout(pendingWrite.timer); pendingWrite = null; }   // it was for the entry left
  const st = ev.state;
  if (st && st.fm === 1) {
    entry = st.entry; depth = st.depth;
    restore(views[st.entry] || st);
    return;
  }
  const want = parseHash(location.hash);   // an address typed by hand: a new entry of our own
  if (!want) return;
  entry = nextEntry++; depth++; trail.length = depth;
  select(want.k, want.m, [want.r, want.c], "replace");
});
window.addEventListener("scroll", snapshot, { passive: true });
panelEl.addEventListener("scroll", snapshot, { passive: true });
if ("scrollRestoration" in history) history.scrollRestoration = "manual";

// ---- the panel -----------------------------------------------------------------------------
function zoomView(l, m) {
  const cell = Math.max(4, Math.min(48, Math.floor(240 / Math.max(l.W, l.H))));
  const zc = el("canvas", { id: "zoom", tabindex: "0", role: "application",
    "aria-roledescription": "feature map",
    "aria-label": "Map " + m + " of " + l.name + ". Selected " + posLabel(l, m, sel.r, sel.c) + " = " +
      fmt(val(l, m, sel.r, sel.c)) + ". Arrow keys move the selected pixel." });
  zc.width = l.W * cell; zc.height = l.H * cell;
  const src = el("canvas");
  paint(src, l.W, l.H, function (r, c) { return inRange(l, r, c) ? val(l, m, r, c) : undefined; }, colourFn(l));
  const ctx = zc.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, zc.width, zc.height);
  ctx.lineWidth = 3; ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(sel.c * cell + 1.5, sel.r * cell + 1.5, cell - 3, cell - 3);
  ctx.lineWidth = 2; ctx.strokeStyle = "#0b57d0";
  ctx.strokeRect(sel.c * cell + 1, sel.r * cell + 1, cell - 2, cell - 2);
  zc.addEventListener("click", function (ev) {
    const rc = zc.getBoundingClientRect();
    const r = Math.floor((ev.clientY - rc.top) / rc.height * l.H), c = Math.floor((ev.clientX - rc.left) / rc.width * l.W);
    if (inRange(l, r, c)) { select(sel.k, sel.m, [r, c]); focusZoom(); }
  });
  zc.addEventListener("keydown", function (ev) {
    const d = MOVES[ev.key];
    if (!d) return;
    ev.preventDefault(); move(d); focusZoom();
  });
  return zc;
}
function focusZoom() { const z = document.getElementById("zoom"); if (z) z.focus(); }

function renderPanel() {
  const l = L[sel.k], m = sel.m, r = sel.r, c = sel.c;
  const zoomHadFocus = document.activeElement && document.activeElement.id === "zoom";
  document.getElementById("panel-h").textContent = l.isMap ? l.name + " · map " + m : l.name + " · unit " + unitOf(l, r, c);
  const body = document.getElementById("panel-body");
  body.textContent = "";
  const v = val(l, m, r, c);
  body.append(el("p", {},
    el("strong", { text: l.kind === "input" ? "input" : l.kind }), " · " + fmtShape(l.shape) +
    (l.isMap ? " · map " + m + " of " + l.C : "")));
  if (!l.exact) { previewPanel(body, l, m); return; }
  body.append(el("div", { class: "zoomwrap" }, zoomView(l, m),
    el("div", {},
      el("p", { id: "pixel-status" },
        "Selected ", el("span", { class: "mono", text: posLabel(l, m, r, c) }), " = ",
        el("span", { class: "num", id: "pixel-value", "data-value": String(v), text: fmt(v) })),
      el("p", { class: "hint", text: "Click a pixel, or focus the map and use the arrow keys." }))));
  document.getElementById("announce").textContent = posLabel(l, m, r, c) + " = " + fmt(v);
  const op = l.op;
  if (GRAPH) { body.append(inputsLine(l)); sourcesBlock(body, l); }
  if (!l.ins.length) {
    body.append(el("p", { text: "This is the (preprocessed) input the model saw." }));
    if (rgbIn(l)) rgbInputPanel(body, l);
  }
  else if (!op) body.append(el("p", { class: "hint",
    text: "The report shows no decomposition for " + l.kind + " layers; use `featuremaps explain` in a terminal." }));
  else if (op.type === "conv") explainConv(body);
  else if (op.type === "dense") explainDense(body);
  else if (op.type === "pool") explainPool(body);
  else if (op.type === "global_pool") explainGlobal(body);
  else if (op.type === "elementwise") explainElementwise(body);
  else if (op.type === "flatten") explainFlatten(body);
  else if (op.type === "zeropad") explainZeroPad(body);
  else if (op.type === "merge") explainMerge(body);
  else if (op.type === "omitted") body.append(el("p", { class: "hint", text: "No decomposition: " + op.reason + "." }));
  if (zoomHadFocus) focusZoom();
}

// The selected pixel of a colour input: the picture, and its three channel values.
function rgbInputPanel(body, l) {
  const p = el("p", { id: "rgb-pixel" }, "Channel " + CH[sel.m] + " (map " + sel.m + ") of the colour image. At row " +
    sel.r + ", column " + sel.c + ": ");
  CH.forEach(function (name, i) {
    if (i) p.append(", ");
    p.append(name + " = ", el("span", { class: "num", "data-channel": name, "data-value": String(val(l, i, sel.r, sel.c)),
      text: fmt(val(l, i, sel.r, sel.c)) }));
  });
  p.append(".");
  body.append(figureOf("the image in colour", rgbCanvas(l, 160), { class: "rgbpic" }), p);
}

function goButton(k, m, pos, text, label) {
  return el("button", { type: "button", class: "linkish", text: text, "aria-label": label ? "go to " + label : null,
    onclick: function () { select(k, m, pos, "push"); if (tiles[k][m]) tiles[k][m].button.focus(); } });
}

// What happens to this unit's value in the layers right after it (activation, then pooling).
function chained(j) {   // entry j reads only entry j - 1 and has its values
  return j < L.length && L[j].exact && L[j].ins.length === 1 && L[j].ins[0] === j - 1;
}
function downstream(tbody) {
  let j = sel.k + 1;
  while (chained(j) && L[j].op && L[j].op.type === "elementwise" && L[j].isMap === L[sel.k].isMap) {
    const a = val(L[j], sel.m, sel.r, sel.c);
    tbody.append(el("tr", { class: "after", "data-layer": L[j].name },
      el("th", { text: "after " + L[j].name + " (" + L[j].kind + ")" }), num(a, { id: "ex-activation" })));
    j++;
  }
  if (chained(j) && L[j].op && L[j].op.type === "pool" && L[sel.k].isMap) {
    const q = L[j], op = q.op;
    for (let pr = 0; pr < q.H; pr++) for (let pc = 0; pc < q.W; pc++) {
      const w = windowOf(op, pr, pc);
      if (sel.r < w[0] || sel.r > w[2] || sel.c < w[1] || sel.c > w[3]) continue;
      if ((sel.r - w[0]) % op.dilation[0] || (sel.c - w[1]) % op.dilation[1]) continue;
      const pv = val(q, sel.m, pr, pc);
      tbody.append(el("tr", { class: "after", "data-layer": q.name },
        el("th", {}, "feeds ", goButton(j, sel.m, [pr, pc], posLabel(q, sel.m, pr, pc)), " (" + op.mode + " pool)"),
        num(pv, { id: "ex-pooled" })));
      for (let a = j + 1; chained(a) && L[a].op && L[a].op.type === "elementwise" && L[a].isMap; a++) {
        tbody.append(el("tr", { class: "after", "data-layer": L[a].name },
          el("th", { text: "then after " + L[a].name + " (" + L[a].kind + ")" }),
          num(val(L[a], sel.m, pr, pc), { id: "ex-pooled-activation" })));
      }
      return;
    }
  }
}

function refFor() {
  const l = L[sel.k];
  for (const ref of D.references) {
    if (ref.layer !== l.name || ref.out_map !== (l.isMap ? sel.m : unitOf(l, sel.r, sel.c))) continue;
    if (l.isMap && !(ref.position && ref.position[0] === sel.r && ref.position[1] === sel.c)) continue;
    return ref;
  }
  return null;
}
const NONFINITE = { nan: NaN, NaN: NaN, inf: Infinity, Infinity: Infinity, "-inf": -Infinity, "-Infinity": -Infinity };
function asNum(v) { return typeof v === "string" ? (v in NONFINITE ? NONFINITE[v] : Number(v)) : v; }
function close(a, b, scale) {
  if (Number.isNaN(a) && Number.isNaN(b)) return true;
  return Math.abs(a - b) <= 1e-5 * Math.max(1e-6, scale);
}
function checkAgainst(body, shown) {
  const ref = refFor();
  if (!ref) {
    body.append(el("p", { class: "check info", id: "ref-check",
      text: "Computed in this page from the embedded weights and maps. featuremaps.inspect.explain() was also run " +
        "at build time on the first unit this page selects in each layer; select it to see the comparison." }));
    return;
  }
  const pairs = [["engine value", shown.engine, asNum(ref.engine_value)],
                 ["pre-activation", shown.pre, asNum(ref.pre_activation)]];
  if (ref.bias !== undefined && ref.bias !== null) pairs.push(["bias", shown.bias, asNum(ref.bias)]);
  if (Array.isArray(ref.terms) && shown.terms) {
    for (const t of ref.terms) {
      if (t.input_map === undefined || !(t.input_map in shown.terms)) continue;
      pairs.push(["partial sum of " + (readsRGB(L[sel.k]) ? CH[t.input_map] : "input " + t.input_map),
        shown.terms[t.input_map], asNum(t.partial_sum)]);
    }
  }
  let worst = 0, ok = true;
  for (const p of pairs) {
    const d = Math.abs(p[1] - p[2]);
    if (!close(p[1], p[2], shown.scale)) ok = false;
    if (Number.isFinite(d)) worst = Math.max(worst, d);
  }
  body.append(el("p", { class: "check " + (ok ? "ok" : "bad"), id: "ref-check", "data-ok": ok ? "true" : "false" },
    (ok ? "✓ Same as " : "✗ Differs from ") + "featuremaps.inspect.explain(), run on this unit when the report was built: " +
    pairs.length + " numbers compared, largest difference " + worst.toExponential(1) + "."));
}

function numberGrid(caption, vals, pad, kh, kw) {
  const grid = el("table", { class: "grid" });
  for (let pp = 0; pp < kh; pp++) {
    const tr = el("tr");
    for (let q = 0; q < kw; q++) {
      const j = pp * kw + q, isPad = pad && pad[j];
      tr.append(el("td", { class: isPad ? "pad" : null, text: isPad ? "pad" : fmt(vals[j]) }));
    }
    grid.append(tr);
  }
  return el("figure", {}, el("figcaption", { text: caption }), grid);
}

function explainConv(body) {
  const l = L[sel.k], p = L[IN(sel.k)], op = l.op, m = sel.m, r = sel.r, c = sel.c;
  const kh = op.kernel[0], kw = op.kernel[1], cin = op.in_maps, cout = l.C, fed = op.fed[m];
  const unfed = [];
  for (let i = 0; i < cin; i++) if (fed.indexOf(i) < 0) unfed.push(i);
  body.append(el("p", { class: "fedby", id: "fed-by", "data-inputs": fed.join(",") },
    "Fed by " + fed.length + " of " + cin + " maps of " + p.name + (fed.length < cin ? ": " + fed.join(", ") : " (all)") +
    ". These are highlighted in the layer column; the box marks the window this pixel reads."));
  body.append(el("h3", { text: "Why " + posLabel(l, m, r, c) + " = " + fmt(val(l, m, r, c)) }));
  const tpad = op.pad[0][0], lpad = op.pad[1][0];
  body.append(el("p", { class: "formula",
    text: "y = b[" + m + "] + Σ_i Σ_p,q w[p, q, i, " + m + "] · x_i[" + r + "·" + op.stride[0] + " + p·" + op.dilation[0] +
      " − " + tpad + ", " + c + "·" + op.stride[1] + " + q·" + op.dilation[1] + " − " + lpad + "]   (p < " + kh + ", q < " + kw + ")" }));
  const inColour = colourFn(p), kColour = function (v) { return diverging(v / (op.kabs || 1)); };
  const rgb = readsRGB(l);
  if (rgb) rgbKernelBlock(body, l, p, op, m, r, c);
  const tbody = el("tbody");
  const shown = { terms: {}, scale: 0 };
  let total = 0;
  const cellPx = Math.max(36, Math.min(72, 9 * Math.max(kh, kw)));
  // zeros added by a ZeroPad2D layer right before this conv are padding too (as explain() shows them)
  const zp = p.op && p.op.type === "zeropad" ? p.op.pad : [[0, 0], [0, 0]];
  for (const i of fed) {
    const win = new Array(kh * kw), pad = new Array(kh * kw), ker = new Array(kh * kw);
    let s = 0;
    for (let pp = 0; pp < kh; pp++) for (let q = 0; q < kw; q++) {
      const y = r * op.stride[0] + pp * op.dilation[0] - tpad, x = c * op.stride[1] + q * op.dilation[1] - lpad;
      const inside = y >= 0 && y < p.H && x >= 0 && x < p.W;
      const xv = inside ? p.v[(y * p.W + x) * cin + i] : 0;
      const wv = op.K[((pp * kw + q) * cin + i) * cout + m];
      win[pp * kw + q] = xv; ker[pp * kw + q] = wv;
      pad[pp * kw + q] = !inside || y < zp[0][0] || y >= p.H - zp[0][1] || x < zp[1][0] || x >= p.W - zp[1][1];
      s += xv * wv;
      shown.scale += Math.abs(xv * wv);
    }
    shown.terms[i] = s;
    total += s;
    const open = fed.length === 1;
    const numbersRow = el("tr", { class: "term-numbers", id: "numbers-" + i, hidden: !open },
      el("td", { colspan: "4" }, el("div", { class: "numgrids" },
        numberGrid("window x of " + p.name + " map " + i + (rgb ? " (" + CH[i] + ")" : ""), win, pad, kh, kw),
        numberGrid("kernel w[:, :, " + i + ", " + m + "]", ker, null, kh, kw))));
    const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": open ? "true" : "false",
      "aria-controls": "numbers-" + i, text: "numbers" });
    toggle.addEventListener("click", function () {
      const show = numbersRow.hidden;
      numbersRow.hidden = !show;
      toggle.setAttribute("aria-expanded", show ? "true" : "false");
    });
    tbody.append(el("tr", { class: "term", "data-input-map": i, "data-channel": rgb ? CH[i] : null },
      el("th", {}, rgb ? el("span", { class: "chan chan-" + CH[i], text: CH[i] }) : null, rgb ? " " : null, goButton(IN(sel.k), i, [Math.max(0, Math.min(p.H - 1, r * op.stride[0] - tpad)),
        Math.max(0, Math.min(p.W - 1, c * op.stride[1] - lpad))], "map " + i, p.name + " map " + i), el("br"), toggle),
      el("td", {}, gridCanvas(win, kh, kw, inColour, cellPx)),
      el("td", {}, gridCanvas(ker, kh, kw, kColour, cellPx)),
      num(s, { class: "num partial" })));
    tbody.append(numbersRow);
  }
  const bias = op.B ? op.B[m] : 0;
  const pre = bias + total;
  const engine = val(l, m, r, c);
  shown.bias = bias; shown.pre = pre; shown.engine = engine; shown.scale += Math.abs(bias);
  const foot = el("tbody");
  foot.append(el("tr", {}, el("th", { colspan: "3", text: "Σ of the " + fed.length + " partial sums" +
    (rgb ? " (" + fed.map(function (i) { return CH[i]; }).join(" + ") + ")" : "") }), num(total, { id: "ex-sum" })));
  foot.append(el("tr", {}, el("th", { colspan: "3", text: op.B ? "bias b[" + m + "]" : "bias (none)" }), num(bias, { id: "ex-bias" })));
  foot.append(el("tr", { class: "total" }, el("th", { colspan: "3", text: "pre-activation = bias + Σ" }), num(pre, { id: "ex-pre" })));
  foot.append(el("tr", { class: "engine" }, el("th", { colspan: "3", text: "engine value " + posLabel(l, m, r, c) }), num(engine, { id: "ex-engine" })));
  foot.append(el("tr", {}, el("th", { colspan: "3", text: "|pre-activation − engine value|" }), num(Math.abs(pre - engine), { id: "ex-diff" })));
  const fdown = el("tbody");
  downstream(fdown);
  fdown.querySelectorAll("tr").forEach(function (tr) { tr.firstChild.setAttribute("colspan", "3"); });
  const table = el("table", { class: "ex", id: "explain-table" },
    el("caption", { class: "visually-hidden", text: "Decomposition of " + posLabel(l, m, r, c) }),
    el("thead", {}, el("tr", {}, el("th", { text: "input: " + p.name }), el("th", { text: "window x" }),
      el("th", { text: "kernel w" }), el("th", { class: "num", text: "Σ x·w" }))),
    tbody, foot, fdown);
  body.append(el("div", { class: "scrollx" }, table));
  if (rgb) {   // one 3-D kernel = three 2-D slices: the value is the bias plus the channels' partial sums
    const line = el("p", { class: "formula", id: "rgb-sum" }, "One 3-D kernel w[:, :, :, " + m + "] is three 2-D slices, " +
      "one per colour channel; each slice meets its channel's window, and the value is the bias plus the three " +
      "channels' partial sums: " + fmt(pre) + " = " + fmt(bias) + " (bias)");
    fed.forEach(function (i) { line.append(" + " + fmt(shown.terms[i]) + " (" + CH[i] + ")"); });
    body.append(line);
  }
  checkAgainst(body, shown);
}
// A conv reading a colour input: the window and the kernel w[:, :, :, m] as RGB pictures, and the
// kernel's three channel slices on the diverging scale (all per filter: ±max|w| of w[:, :, :, m]).
function rgbKernelBlock(body, l, p, op, m, r, c) {
  const kh = op.kernel[0], kw = op.kernel[1], px = Math.max(48, Math.min(96, 12 * Math.max(kh, kw)));
  const level = rgbLevel(p), win = new Array(kh * kw), cout = l.C, s = filterAbs(op, m);
  for (let pp = 0; pp < kh; pp++) for (let q = 0; q < kw; q++) {
    const y = r * op.stride[0] + pp * op.dilation[0] - op.pad[0][0], x = c * op.stride[1] + q * op.dilation[1] - op.pad[1][0];
    const inside = y >= 0 && y < p.H && x >= 0 && x < p.W;
    win[pp * kw + q] = inside ? rgbPixel(level, val(p, 0, y, x), val(p, 1, y, x), val(p, 2, y, x)) : rgbPixel(level, 0, 0, 0);
  }
  const wcv = gridCanvas(win, kh, kw, same, px), kcv = gridCanvas(kernelRGB(op, m), kh, kw, same, px);
  wcv.id = "window-rgb"; kcv.id = "kernel-rgb"; kcv.setAttribute("data-scale", String(s));
  [wcv, kcv].forEach(function (cv) { cv.style.imageRendering = "pixelated"; });
  const figs = el("div", { class: "numgrids rgbkernel", id: "rgb-kernel", "data-map": m },
    figureOf("window x in colour", wcv), figureOf("kernel w[:, :, :, " + m + "] in colour (mid-grey = 0)", kcv));
  const sc = function (v) { return diverging(v / (s || 1)); };
  for (let i = 0; i < 3; i++) {
    const sl = new Array(kh * kw);
    for (let j = 0; j < kh * kw; j++) sl[j] = op.K[(j * 3 + i) * cout + m];
    const cv = gridCanvas(sl, kh, kw, sc, px);
    cv.classList.add("kernel-slice"); cv.setAttribute("data-channel", CH[i]); cv.style.imageRendering = "pixelated";
    figs.append(figureOf(CH[i] + " slice w[:, :, " + i + ", " + m + "]", cv));
  }
  body.append(el("p", { class: "hint", text: "The kernel reads all three colour channels: in colour, each pixel of " +
    "the tile is (0.5 + w / (2·" + fmt(s) + ")) per channel, so zero is mid-grey; the slices are on the blue–red scale (±" +
    fmt(s) + ", this filter's largest |w|)." }), figs);
}

function explainDense(body) {
  const l = L[sel.k], p = L[IN(sel.k)], op = l.op, u = unitOf(l, sel.r, sel.c), n = op.in_features, out = l.F;
  const contrib = new Array(n);
  let total = 0, scale = 0;
  for (let i = 0; i < n; i++) { const t = p.v[i] * op.Wt[i * out + u]; contrib[i] = t; total += t; scale += Math.abs(t); }
  const order = Array.from({ length: n }, function (_, i) { return i; });
  order.sort(function (a, b) { return Math.abs(contrib[b]) - Math.abs(contrib[a]); });
  const top = order.slice(0, Math.min(10, n));
  body.append(el("h3", { text: "Why " + l.name + "[" + u + "] = " + fmt(val(l, 0, sel.r, sel.c)) }));
  body.append(el("p", { class: "formula", text: "y = b[" + u + "] + Σ_i x[i] · W[i, " + u + "]   (" + n + " inputs from " + p.name + ")" }));
  const src = p.op && p.op.type === "flatten" ? L[IN(IN(sel.k))] : null;
  const tbody = el("tbody");
  let topSum = 0;
  for (const i of top) {
    topSum += contrib[i];
    const head = el("th", { class: "mono" }, p.name + "[" + i + "]");
    if (src && src.isMap) {
      const m = i % src.C, pix = Math.floor(i / src.C);
      head.append(el("span", { class: "src", text: "= " + posLabel(src, m, Math.floor(pix / src.W), pix % src.W) }));
    }
    tbody.append(el("tr", { class: "term", "data-input": i }, head,
      num(p.v[i]), num(op.Wt[i * out + u]), num(contrib[i], { class: "num partial" })));
  }
  const bias = op.B ? op.B[u] : 0, pre = bias + total, engine = val(l, 0, sel.r, sel.c);
  const foot = el("tbody");
  foot.append(el("tr", {}, el("th", { colspan: "3", text: "the other " + (n - top.length) + " inputs" }), num(total - topSum, { id: "ex-rest" })));
  foot.append(el("tr", {}, el("th", { colspan: "3", text: "Σ over all " + n + " inputs" }), num(total, { id: "ex-sum" })));
  foot.append(el("tr", {}, el("th", { colspan: "3", text: op.B ? "bias b[" + u + "]" : "bias (none)" }), num(bias, { id: "ex-bias" })));
  foot.append(el("tr", { class: "total" }, el("th", { colspan: "3", text: "pre-activation = bias + Σ" }), num(pre, { id: "ex-pre" })));
  foot.append(el("tr", { class: "engine" }, el("th", { colspan: "3", text: "engine value " + l.name + "[" + u + "]" }), num(engine, { id: "ex-engine" })));
  foot.append(el("tr", {}, el("th", { colspan: "3", text: "|pre-activation − engine value|" }), num(Math.abs(pre - engine), { id: "ex-diff" })));
  const fdown = el("tbody");
  downstream(fdown);
  fdown.querySelectorAll("tr").forEach(function (tr) { tr.firstChild.setAttribute("colspan", "3"); });
  body.append(el("div", { class: "scrollx" }, el("table", { class: "ex", id: "explain-table" },
    el("caption", { class: "visually-hidden", text: "Largest contributions to " + l.name + "[" + u + "]" }),
    el("thead", {}, el("tr", {}, el("th", { text: "input (top 10 by |x·w|)" }), el("th", { class: "num", text: "x" }),
      el("th", { class: "num", text: "w" }), el("th", { class: "num", text: "x·w" }))),
    tbody, foot, fdown)));
  checkAgainst(body, { bias: bias, pre: pre, engine: engine, scale: scale + Math.abs(bias), terms: null });
}

function explainPool(body) {
  const l = L[sel.k], p = L[IN(sel.k)], op = l.op, m = sel.m, r = sel.r, c = sel.c;
  const kh = op.kernel[0], kw = op.kernel[1], w = windowOf(op, r, c);
  const vals = [], pads = [];
  for (let pp = 0; pp < kh; pp++) for (let q = 0; q < kw; q++) {
    const y = w[0] + pp * op.dilation[0], x = w[1] + q * op.dilation[1];
    const inside = y >= 0 && y < p.H && x >= 0 && x < p.W;
    vals.push(inside ? val(p, m, y, x) : NaN); pads.push(!inside);
  }
  let result, win = -1, label;
  if (op.mode === "max") {
    result = -Infinity;
    vals.forEach(function (v, j) {   // the engine's rule: the first maximum wins, a NaN (the last one) beats all
      if (pads[j]) return;
      if (Number.isNaN(v)) { result = v; win = j; return; }
      if (!Number.isNaN(result) && v > result) { result = v; win = j; }
    });
    label = "max of the window";
  } else {
    let s = 0, n = 0;
    vals.forEach(function (v, j) { if (!pads[j]) { s += v; n++; } });
    const count = op.mode === "avg" && op.count_include_pad === false ? n : kh * kw;
    result = s / count;
    label = "mean of the window (÷" + count + ")";
    if (op.mode === "subsampling") { result = result * op.coef[m] + op.bias[m]; label = "mean × " + fmt(op.coef[m]) + " + " + fmt(op.bias[m]); }
  }
  body.append(el("h3", { text: "Why " + posLabel(l, m, r, c) + " = " + fmt(val(l, m, r, c)) }));
  body.append(el("p", {}, "It reads a " + kh + "×" + kw + " window of ", goButton(IN(sel.k), m, [Math.max(0, w[0]), Math.max(0, w[1])], p.name + " map " + m),
    " starting at row " + w[0] + ", column " + w[1] + "."));
  const grid = el("table", { class: "grid", id: "pool-window" });
  for (let pp = 0; pp < kh; pp++) {
    const tr = el("tr");
    for (let q = 0; q < kw; q++) {
      const j = pp * kw + q;
      tr.append(el("td", { class: pads[j] ? "pad" : (j === win ? "win" : null), text: pads[j] ? "pad" : fmt(vals[j]) }));
    }
    grid.append(tr);
  }
  body.append(grid);
  const engine = val(l, m, r, c);
  const t = el("tbody");
  t.append(el("tr", { class: "total" }, el("th", { text: label }), num(result, { id: "ex-pre" })));
  t.append(el("tr", { class: "engine" }, el("th", { text: "engine value " + posLabel(l, m, r, c) }), num(engine, { id: "ex-engine" })));
  downstream(t);
  body.append(el("div", { class: "scrollx" }, el("table", { class: "ex", id: "explain-table" }, t)));
}

function explainGlobal(body) {
  const l = L[sel.k], p = L[IN(sel.k)], u = unitOf(l, sel.r, sel.c);
  let s = 0, best = -Infinity, br = 0, bc = 0;
  for (let r = 0; r < p.H; r++) for (let c = 0; c < p.W; c++) {
    const v = val(p, u, r, c); s += v;
    if (v > best) { best = v; br = r; bc = c; }
  }
  const result = l.op.mode === "max" ? best : s / (p.H * p.W);
  body.append(el("p", {}, (l.op.mode === "max" ? "Max" : "Mean") + " of the whole ", goButton(IN(sel.k), u, [br, bc], p.name + " map " + u),
    l.op.mode === "max" ? " (reached at row " + br + ", column " + bc + ")." : "."));
  const t = el("tbody");
  t.append(el("tr", { class: "total" }, el("th", { text: l.op.mode + " of the map" }), num(result, { id: "ex-pre" })));
  t.append(el("tr", { class: "engine" }, el("th", { text: "engine value " + l.name + "[" + u + "]" }), num(val(l, 0, sel.r, sel.c), { id: "ex-engine" })));
  body.append(el("div", { class: "scrollx" }, el("table", { class: "ex", id: "explain-table" }, t)));
}

function explainElementwise(body) {
  const l = L[sel.k], p = L[IN(sel.k)], m = sel.m, r = sel.r, c = sel.c;
  const t = el("tbody");
  t.append(el("tr", {}, el("th", {}, "input ", goButton(IN(sel.k), m, [r, c], posLabel(p, m, r, c))), num(val(p, m, r, c), { id: "ex-input" })));
  t.append(el("tr", { class: "engine" }, el("th", { text: "after " + l.kind + ": " + posLabel(l, m, r, c) }), num(val(l, m, r, c), { id: "ex-engine" })));
  body.append(el("p", { text: l.kind + " is applied to each value on its own." }));
  body.append(el("div", { class: "scrollx" }, el("table", { class: "ex", id: "explain-table" }, t)));
}

function explainFlatten(body) {
  const l = L[sel.k], p = L[IN(sel.k)], u = unitOf(l, sel.r, sel.c);
  if (!p.isMap) { body.append(el("p", { text: "Unit " + u + " is unit " + u + " of " + p.name + "." })); return; }
  const m = u % p.C, pix = Math.floor(u / p.C), r = Math.floor(pix / p.W), c = pix % p.W;
  body.append(el("p", {}, "Unit " + u + " is ", goButton(IN(sel.k), m, [r, c], posLabel(p, m, r, c)),
    " (row-major over height, width, maps)."));
}

function explainZeroPad(body) {
  const l = L[sel.k], p = L[IN(sel.k)], m = sel.m, r = sel.r - l.op.pad[0][0], c = sel.c - l.op.pad[1][0];
  if (r < 0 || c < 0 || r >= p.H || c >= p.W) {
    body.append(el("p", { text: "This pixel is padding: it is 0, not read from " + p.name + "." }));
  } else {
    body.append(el("p", {}, "This pixel is a copy of ", goButton(IN(sel.k), m, [r, c], posLabel(p, m, r, c)), "."));
  }
}

// ---- header --------------------------------------------------------------------------------
function summary() {
  const s = document.getElementById("summary");
  const inp = L[0];
  const parts = [el("span", {}, "Input " + fmtShape(inp.shape) + " · " + (L.length - 1) + " layers")];
  if (D.prediction) {
    const k = D.prediction.class, name = D.classes ? String(D.classes[k]) : String(k);
    parts.push(el("span", {}, " · prediction ", el("strong", { id: "prediction", text: name }),
      " (" + (100 * D.prediction.probs[k]).toFixed(1) + "%)"));
  }
  if (D.label !== null && D.label !== undefined) {
    const name = D.classes && typeof D.label === "number" ? String(D.classes[D.label]) : String(D.label);
    parts.push(el("span", {}, " · true label ", el("strong", { text: name })));
  }
  parts.push(el("span", {}, " · click a map or a pixel; Tab to a map, Enter to select, arrows to move"));
  parts.push(el("span", { class: "narrow-only" }, " · the explanation is below the layers; a click takes you there"));
  parts.forEach(function (p) { s.append(p); });
}

function initial() {
  const st = history.state;
  if (st && st.fm === 1) { entry = st.entry; depth = st.depth; nextEntry = Math.max(nextEntry, entry + 1); }
  const linked = parseHash(location.hash);   // a link to a unit (or a reload) opens on it
  if (linked) {
    select(linked.k, linked.m, [linked.r, linked.c]);
    (tiles[linked.k][linked.m] || { button: sections[linked.k] }).button.scrollIntoView({ block: "center" });
    return;
  }
  const want = D.initial;
  if (want && byName[want.layer]) {
    const l = byName[want.layer];
    if (l.isMap) { select(l.index, want.out_map, want.position); return; }
    select(l.index, 0, [Math.floor(want.out_map / l.W), want.out_map % l.W]);
    return;
  }
  let k = -1;   // the last conv layer whose maps have more than one pixel (else the last conv layer)
  L.forEach(function (l, j) { if (l.op && l.op.type === "conv" && (k < 0 || l.H * l.W > 1)) k = j; });
  if (k < 0) L.forEach(function (l, j) { if (k < 0 && l.op && l.op.type === "dense") k = j; });
  if (k < 0) k = L.length - 1;
  const m = L[k].isMap ? strongestMap(L[k]) : 0;
  select(k, m, null);
}

// ---- graph models: the DAG overview, folding blocks, maps drawn on demand --------------------
// Blocks (featuremaps/report/_graph.py) fold in the DAG and in the layer column; a layer's tiles are
// drawn when its block opens, as thumbnails, and at full size only for the selected layer.
const THUMB = 28;   // css pixels of a thumbnail map
const blockOf = {}, openBlocks = new Set(), blockEls = [];
let fullLayer = -1;
// the SVG namespace, as the HTML parser assigns it (so that the page holds no address at all)
const SVGNS = (function () { const d = document.createElement("div"); d.innerHTML = "<svg></svg>"; return d.firstChild.namespaceURI; })();
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, String(v));
  }
  for (const kid of kids) if (kid) e.append(kid);
  return e;
}
function consumers(k) { const out = []; L.forEach(function (l, j) { if (l.ins.indexOf(k) >= 0) out.push(j); }); return out; }
function buildGraphLayers(host) {
  GRAPH.blocks.forEach(function (b, bi) { b.members.forEach(function (k) { blockOf[k] = bi; }); });
  host.append(el("figure", { class: "dagwrap", id: "dag-figure" },
    el("figcaption", { class: "hint", text: "The graph, in execution order (top to bottom); arrows run from each " +
      "layer to the layers that read it. Click a block to unfold it, a layer to show its maps." }),
    el("div", { class: "dagscroll" }, svg("svg", { id: "dag", role: "img", "aria-label": "the model's graph" }))));
  L.forEach(function (l, k) {   // sections exist for every layer; their tiles are drawn on demand
    sections[k] = layerSection(l, k);
    if (blockOf[k] === undefined) { host.append(sections[k]); fillTiles(k, THUMB); }
  });
  GRAPH.blocks.forEach(function (b, bi) {
    const last = L[b.members[b.members.length - 1]];
    const d = el("details", { class: "block", id: "block-" + bi, "data-block": b.name },
      el("summary", {}, el("span", { class: "lname", text: b.name }),
        el("span", { class: "kind", text: " · " + b.members.length + " layer" + (b.members.length > 1 ? "s" : "") +
          " · out " + fmtShape(last.shape) })));
    b.members.forEach(function (k) { d.append(sections[k]); });
    d.addEventListener("toggle", function () {
      if (d.open) { openBlocks.add(bi); b.members.forEach(function (k) { if (!tiles[k].length) fillTiles(k, THUMB); }); }
      else openBlocks.delete(bi);
      drawDag();
    });
    blockEls[bi] = d;
    host.append(d);
  });
  drawDag();
}
function openBlock(bi) {
  if (bi === undefined || openBlocks.has(bi)) return;
  openBlocks.add(bi);
  blockEls[bi].open = true;
  GRAPH.blocks[bi].members.forEach(function (k) { if (!tiles[k].length) fillTiles(k, THUMB); });
}
// The selected layer, its inputs and its block are shown; its maps full size, the others' as thumbnails.
function ensureShown(k) {
  openBlock(blockOf[k]);
  L[k].ins.forEach(function (i) { openBlock(blockOf[i]); if (!tiles[i].length) fillTiles(i, THUMB); });
  if (fullLayer !== k) {
    if (fullLayer >= 0 && tileSize[fullLayer] !== THUMB) fillTiles(fullLayer, THUMB);
    fullLayer = k;
  }
  if (tileSize[k] !== fullPx(L[k]) || !tiles[k].length) fillTiles(k, fullPx(L[k]));
  drawDag();
}

// A layered layout: a unit (a layer, or a folded block) sits one row below the lowest unit it reads,
// in the column of its first input when that is free there; an edge spanning more rows arcs on the right.
const BOX_W = 150, BOX_H = 20, COL_W = 172, ROW_H = 30, GUTTER = 22;
function dagUnits() {
  const units = [], at = {}, unitOf = {};
  L.forEach(function (l, k) {
    const bi = blockOf[k], folded = bi !== undefined && !openBlocks.has(bi) && GRAPH.blocks[bi].members.length > 1;
    const id = folded ? "b" + bi : "n" + k;
    if (!(id in at)) { at[id] = units.length; units.push({ id: id, k: folded ? -1 : k, block: folded ? bi : -1, preds: [] }); }
    unitOf[k] = at[id];
  });
  L.forEach(function (l, k) {
    l.ins.forEach(function (i) {
      const u = unitOf[i], v = unitOf[k];
      if (u !== v && units[v].preds.indexOf(u) < 0) units[v].preds.push(u);
    });
  });
  const taken = {};
  units.forEach(function (u) {
    u.row = u.preds.reduce(function (r, p) { return Math.max(r, units[p].row + 1); }, 0);
    let col = u.preds.length ? units[u.preds[0]].col : 0;
    while (taken[u.row + "," + col]) col++;
    taken[u.row + "," + col] = true;
    u.col = col;
  });
  return { units: units, unitOf: unitOf };
}
function drawDag() {
  const host = document.getElementById("dag");
  if (!host) return;
  const lay = dagUnits(), units = lay.units;
  host.textContent = "";
  let rows = 0, cols = 0;
  units.forEach(function (u) { rows = Math.max(rows, u.row + 1); cols = Math.max(cols, u.col + 1); });
  const W = GUTTER + cols * COL_W + 40, H = rows * ROW_H + 8;
  host.setAttribute("width", W); host.setAttribute("height", H); host.setAttribute("viewBox", "0 0 " + W + " " + H);
  const x = function (u) { return GUTTER + u.col * COL_W; }, y = function (u) { return 4 + u.row * ROW_H; };
  GRAPH.blocks.forEach(function (b, bi) {   // an unfolded block: a band behind its layers, and a fold button
    if (!openBlocks.has(bi) || b.members.length < 2) return;
    const us = b.members.map(function (k) { return units[lay.unitOf[k]]; });
    const top = Math.min.apply(null, us.map(y)) - 3, bottom = Math.max.apply(null, us.map(y)) + BOX_H + 3;
    const right = Math.max.apply(null, us.map(x)) + BOX_W + 4;
    host.append(svg("rect", { class: "band", x: GUTTER - 4, y: top, width: right - GUTTER + 8, height: bottom - top, rx: 4 }));
    const fold = svg("g", { class: "fold", "data-block": bi, tabindex: 0, role: "button", "aria-label": "fold " + b.name },
      svg("rect", { x: 2, y: top, width: 16, height: 16, rx: 3 }), svg("text", { x: 10, y: top + 12, text: "−" }),
      svg("title", { text: "fold " + b.name }));
    fold.addEventListener("click", function () { openBlocks.delete(bi); blockEls[bi].open = false; drawDag(); });
    host.append(fold);
  });
  units.forEach(function (v) {
    v.preds.forEach(function (pi) {
      const u = units[pi];
      let d;
      if (v.row - u.row === 1 || u.col !== v.col) {
        d = "M" + (x(u) + BOX_W / 2) + "," + (y(u) + BOX_H) + " L" + (x(v) + BOX_W / 2) + "," + y(v);
        if (v.row - u.row > 1) {   // down its own column, then across
          d = "M" + (x(u) + BOX_W / 2) + "," + (y(u) + BOX_H) + " L" + (x(u) + BOX_W / 2) + "," + (y(v) - 6) +
            " L" + (x(v) + BOX_W / 2) + "," + y(v);
        }
      } else {   // a skip connection: an arc on the right of the column
        const xr = x(u) + BOX_W, bulge = xr + 12 + 4 * Math.min(4, v.row - u.row);
        d = "M" + xr + "," + (y(u) + BOX_H / 2) + " C" + bulge + "," + (y(u) + BOX_H / 2) + " " + bulge + "," +
          (y(v) + BOX_H / 2) + " " + xr + "," + (y(v) + BOX_H / 2);
      }
      host.append(svg("path", { class: "edge", d: d, "data-from": u.id, "data-to": v.id }));
    });
  });
  units.forEach(function (u) {
    const folded = u.block >= 0, l = folded ? null : L[u.k];
    const label = folded ? "▸ " + GRAPH.blocks[u.block].name + " (" + GRAPH.blocks[u.block].members.length + ")" : l.name;
    const cls = "node" + (folded ? " folded" : "") + (l && l.ins.length > 1 ? " merge" : "") + (l && !l.ins.length ? " input" : "");
    const g = svg("g", { class: cls, tabindex: 0, role: "button", "data-unit": u.id,
      [folded ? "data-block" : "data-name"]: folded ? GRAPH.blocks[u.block].name : l.name, "data-inputs": u.preds.length },
      svg("rect", { x: x(u), y: y(u), width: BOX_W, height: BOX_H, rx: folded ? 9 : 3 }),
      svg("text", { x: x(u) + 6, y: y(u) + 14, text: label.length > 22 ? label.slice(0, 21) + "…" : label }),
      svg("title", { text: folded ? "unfold " + GRAPH.blocks[u.block].name : l.name + " (" + l.kind + ") " +
        fmtShape(l.shape) + (l.ins.length ? " ← " + l.inputs.join(", ") : "") }));
    const act = function () {
      if (folded) { openBlock(u.block); drawDag(); return; }
      select(u.k, l.isMap ? strongestMap(l) : 0, null);
      sections[u.k].scrollIntoView({ block: "nearest" });
    };
    g.addEventListener("click", act);
    g.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); act(); } });
    host.append(g);
  });
  markDag();
}
function markDag() {
  const host = document.getElementById("dag");
  if (!host || !sel) return;
  const lay = dagUnits(), me = lay.units[lay.unitOf[sel.k]].id;
  const feeds = L[sel.k].ins.map(function (i) { return lay.units[lay.unitOf[i]].id; });
  host.querySelectorAll("g.node").forEach(function (g) {
    const id = g.getAttribute("data-unit");
    g.classList.toggle("selected", id === me);
    g.classList.toggle("feeds", id !== me && feeds.indexOf(id) >= 0);
  });
  host.querySelectorAll("path.edge").forEach(function (e) {
    e.classList.toggle("into", e.getAttribute("data-to") === me && feeds.indexOf(e.getAttribute("data-from")) >= 0);
  });
}

// The source of map m of a merge in input j: the same map (elementwise) or its place in a concatenation.
function mergeSource(l, j, m) {
  if (l.op.how !== "concat") return m;
  const off = l.op.offsets;
  return m >= off[j] && m < off[j + 1] ? m - off[j] : -1;
}
function highlightMerge(l) {
  l.ins.forEach(function (i, j) {
    const src = mergeSource(l, j, sel.m);
    tiles[i].forEach(function (tt, mm) {
      if (mm === src) { tt.button.classList.add("feeds"); if (L[i].isMap) place(tt.win, L[i], sel.r, sel.c, sel.r, sel.c); }
      else tt.button.classList.add("unfed");
    });
  });
}
function inputsLine(l) {
  const p = el("p", { id: "node-inputs", class: "inputs", "data-inputs": l.inputs.join(",") });
  if (!l.ins.length) p.append("A graph input.");
  else {
    p.append(l.ins.length > 1 ? "Reads " + l.ins.length + " inputs: " : "Reads ");
    l.ins.forEach(function (i, j) {
      if (j) p.append(", ");
      const m = l.isMap && L[i].isMap ? Math.max(0, mergeSourceOr(l, j, sel.m)) : 0;
      p.append(goButton(i, Math.min(m, shownMaps(L[i]) - 1), null, L[i].name, "input " + L[i].name));
    });
    p.append(".");
  }
  const out = consumers(sel.k);
  if (out.length) p.append(" Read by " + out.map(function (j) { return L[j].name; }).join(", ") + ".");
  return p;
}
function mergeSourceOr(l, j, m) { return l.op && l.op.type === "merge" ? mergeSource(l, j, m) : (L[l.ins[j]].C > m ? m : 0); }

function explainMerge(body) {
  const l = L[sel.k], m = sel.m, r = sel.r, c = sel.c, op = l.op;
  const t = el("tbody");
  if (op.how === "concat") {
    l.ins.forEach(function (i, j) {
      const src = mergeSource(l, j, m);
      if (src < 0) return;
      body.append(el("p", { id: "merge-source" }, "Map " + m + " is map " + src + " of input " + (j + 1) + ", ",
        goButton(i, src, [r, c], L[i].name + " map " + src), " (maps " + op.offsets[j] + "–" + (op.offsets[j + 1] - 1) +
        " of " + l.name + " come from " + L[i].name + ")."));
      t.append(el("tr", { class: "merge-in", "data-input": L[i].name }, el("th", { text: posLabel(L[i], src, r, c) }),
        num(val(L[i], src, r, c))));
    });
  } else if (op.how === "elementwise") {
    body.append(el("p", { text: l.kind + " combines the value at the same place of each of its " + l.ins.length + " inputs." }));
    l.ins.forEach(function (i) {
      t.append(el("tr", { class: "merge-in", "data-input": L[i].name },
        el("th", {}, goButton(i, m, [r, c], posLabel(L[i], m, r, c))), num(val(L[i], m, r, c))));
    });
  } else {
    body.append(el("p", { class: "hint", text: "This merge broadcasts its inputs; see its inputs above." }));
  }
  t.append(el("tr", { class: "engine" }, el("th", { text: "engine value " + posLabel(l, m, r, c) }), num(val(l, m, r, c), { id: "ex-engine" })));
  downstream(t);
  body.append(el("div", { class: "scrollx" }, el("table", { class: "ex", id: "explain-table" }, t)));
}

// ---- map sources (featuremaps/report/_sources.py): which maps of which earlier layers feed the
// selected map of a concatenation, a channel shuffle or a grouped conv, as map_sources() answers
function runsOf(flat) {   // [first, last, first, last, ...] -> every map
  const out = [];
  for (let i = 0; i < flat.length; i += 2) for (let m = flat[i]; m <= flat[i + 1]; m++) out.push(m);
  return out;
}
function runsText(flat) {
  const parts = [];
  for (let i = 0; i < flat.length && parts.length < 12; i += 2) {
    parts.push(flat[i] === flat[i + 1] ? String(flat[i]) : flat[i] + "–" + flat[i + 1]);
  }
  return parts.join(", ") + (flat.length > 24 ? ", …" : "");
}
function srcPos(k) {   // the selected pixel, when the source has the same map size
  const s = L[k], l = L[sel.k];
  return s.isMap && l.isMap && s.H === l.H && s.W === l.W ? [sel.r, sel.c] : null;
}
function srcButton(k, m, text) {
  const b = goButton(k, Math.min(m, shownMaps(L[k]) - 1), srcPos(k), text, L[k].name + " map " + m);
  b.classList.add("src-go"); b.setAttribute("data-layer", L[k].name); b.setAttribute("data-map", m);
  return b;
}
function sourcesBlock(body, l) {
  const S = GRAPH.nodes && GRAPH.nodes[l.name], rec = S && S.maps[sel.m];
  if (!rec) return;
  const flat = rec[1], path = GRAPH.paths[rec[0]], srcs = [];
  for (let i = 0; i < flat.length; i += 2) srcs.push({ k: flat[i], runs: flat[i + 1], maps: runsOf(flat[i + 1]) });
  const box = el("div", { class: "sources", id: "map-sources", "data-sources": srcs.map(function (s) {
    return L[s.k].name + "[" + s.maps.join(",") + "]"; }).join(" ") });
  box.append(el("h3", { text: "Where map " + sel.m + " of " + l.name + " comes from" }));
  if (S.perm) {   // a channel shuffle: the permutation, with this map's entry marked
    const from = L[S.from], pm = S.perm[sel.m];
    box.append(el("p", { id: "sources-step" }, "Channel shuffle of " + from.name + ": map j ← map π(j); map " +
      sel.m + " ← ", srcButton(S.from, pm, from.name + " map " + pm), "."));
    const pi = el("p", { class: "mono perm", id: "sources-perm" }, "π = [");
    S.perm.forEach(function (v, j) {
      if (j) pi.append(", ");
      pi.append(j === sel.m ? el("strong", { text: String(v) }) : String(v));
    });
    pi.append("]");
    box.append(pi);
  } else {
    box.append(el("p", { id: "sources-step", text: "Its step: " + S.rule + "." }));
  }
  if (srcs.length === 1 && srcs[0].maps.length === 1) {
    const s = srcs[0];
    box.append(el("p", { id: "sources-equal" }, "Map " + sel.m + " of " + l.name + " = ",
      srcButton(s.k, s.maps[0], "map " + s.maps[0] + " of " + L[s.k].name),
      " (" + L[s.k].kind + ")."));
  } else {
    const ul = el("ul", { id: "sources-list" });
    srcs.forEach(function (s) {
      const li = el("li", { "data-layer": L[s.k].name }, srcButton(s.k, s.maps[0], L[s.k].name), " (" + L[s.k].kind + "): ");
      if (s.maps.length <= 16) {
        li.append(s.maps.length === 1 ? "map " : "maps ");
        s.maps.forEach(function (m, j) { if (j) li.append(", "); li.append(srcButton(s.k, m, String(m))); });
      } else li.append("maps " + runsText(s.runs));
      li.append(" (" + s.maps.length + " of " + L[s.k].C + ")");
      ul.append(li);
    });
    box.append(el("p", { text: "Map " + sel.m + " reads, from the nearest conv/dense layers and inputs:" }), ul);
  }
  if (path.length) {
    const via = el("p", { class: "hint", id: "sources-via" }, "Through ");
    path.forEach(function (h, j) {
      if (j) via.append(" → ");
      via.append(el("span", { class: "mono", title: h[1], text: L[h[0]].name }), " (" + h[1] + ")");
    });
    box.append(via);
  }
  body.append(box);
}

function previewPanel(body, l, m) {
  const cv = el("canvas", { id: "zoom-preview", "aria-label": "preview of map " + m + " of " + l.name });
  paintMap(cv, l, m);
  const w = l.isMap ? l.preview.w : l.W, h = l.isMap ? l.preview.h : l.H, s = 240 / Math.max(w, h);
  cv.style.width = Math.round(w * s) + "px"; cv.style.height = Math.round(h * s) + "px";
  cv.style.imageRendering = "pixelated";
  body.append(el("div", { class: "zoomwrap" }, cv));
  if (GRAPH) { body.append(inputsLine(l)); sourcesBlock(body, l); }
  body.append(el("p", { class: "hint", id: "preview-only", text: "Only an 8-bit preview of this layer is embedded (the " +
    "report's value budget), so the page shows no values or decomposition for it. `featuremaps report --layer " +
    l.name + "` builds a page that embeds it exactly; `featuremaps explain` decomposes any unit." }));
}

summary();
buildLayers();
document.getElementById("back").addEventListener("click", goBack);
initial();
document.documentElement.setAttribute("data-ready", "true");
})();
"""
