"""`load(path)`: a Keras 3 `.keras` file or a legacy `.h5` file as a featuremaps `Sequential` or `Graph`.

The config is read as data (`_read`), checked for anything that would need code (`check_safe`), and
walked layer call by layer call: each becomes the nodes its converter (`_layers`) gives, with its
variables from the weights file. A nested model is flattened: its layers become nodes named
`<model>_<layer>`, wired to the tensors the outer model passes in. A layer called several times (shared
weights) becomes one node per call (`<layer>_call<k>`, the weights copied). A Keras Sequential gives a
`Sequential`, any other model a `Graph`; the model is in eval mode and `model.import_log` lists every
convention applied, one line per step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import nn
from ..layouts import flatten_permutation
from ..nn.module import ShapeError
from ._layers import CONVERTERS, Layer, convert
from ._read import DEFAULT_MAX_BYTES, KerasFileError, read, snake_case

__all__ = ["load", "check_safe", "KerasFileError"]

_MODELS = ("Sequential", "Functional", "Model")
_CODE = ("Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__", "function")


# --- safety -------------------------------------------------------------------------------------------------
def _foreign(obj) -> str | None:
    """Why a serialised object (a dict anywhere in a layer's config) needs code, or None."""
    if not isinstance(obj, dict):
        return None
    if "function_type" in obj or obj.get("class_name") in _CODE:
        return f"a {obj.get('class_name', 'function')} (Python code)"
    module, registered = obj.get("module"), obj.get("registered_name")
    if module is not None and not (module == "keras" or str(module).startswith("keras.")):
        return f"module {module!r} (outside keras)"
    if registered is not None and registered != obj.get("class_name") and (">" in str(registered) or module is None):
        return f"registered_name {registered!r} (a custom object)"
    return None


def _scan(value, found: list) -> None:
    if isinstance(value, dict):
        why = _foreign(value)
        if why:
            found.append(why)
            return
        for v in value.values():
            _scan(v, found)
    elif isinstance(value, list):
        for v in value:
            _scan(v, found)


def _layers_of(model_cfg: dict) -> list:
    cfg = model_cfg.get("config", {})
    return cfg if isinstance(cfg, list) else cfg.get("layers", [])


def _layer_name(entry: dict) -> str:
    return str(entry.get("name") or entry.get("config", {}).get("name") or "?")


def check_safe(config: dict, path) -> None:
    """Refuse, in one error naming every such layer, a config with a Lambda layer, a custom or registered
    object, or an object from a module outside keras; then, in one error, the layer kinds with no mapping."""
    code, unmapped = [], []

    def walk(model_cfg: dict, prefix: str):
        for entry in _layers_of(model_cfg):
            name, kind = prefix + _layer_name(entry), entry.get("class_name")
            found: list = []
            why = _foreign(entry)
            if why is None:
                _scan({k: v for k, v in entry.get("config", {}).items() if k != "layers"}, found)
            else:
                found.append(why)
            if found:
                code.append(f"{name!r} ({kind}: {found[0]})")
            elif kind in _MODELS:
                walk(entry, f"{name}/")
            elif kind not in CONVERTERS and kind != "InputLayer":
                unmapped.append(f"{name!r} ({kind})")

    top = _foreign(config)
    if top:
        raise KerasFileError(f"{path}: the model itself is {top}; featuremaps runs no code from a file")
    walk(config, "")
    if code:
        raise KerasFileError(f"{path}: refused: {len(code)} layer(s) would need code to run, and featuremaps never "
                             f"runs code from a file (as Keras's safe_mode): {', '.join(code)}")
    if unmapped:
        raise KerasFileError(f"{path}: {len(unmapped)} layer(s) of a kind with no featuremaps mapping: "
                             f"{', '.join(unmapped)}; supported: {', '.join(sorted(CONVERTERS))}")


# --- config forms (Keras 3 and Keras 2) -----------------------------------------------------------------
def _refs(value, out: list) -> list:
    """The (layer, node index, tensor index) of every tensor in a Keras 3 call's args, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, tensor = value["config"]["keras_history"]
            out.append((name, int(node), int(tensor)))
        else:
            for v in value.values():
                _refs(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _refs(v, out)
    return out


def _calls(entry: dict) -> list:
    """Each call of a functional layer, as the list of tensors it reads."""
    calls = []
    for node in entry.get("inbound_nodes") or []:
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            kwargs = {k: v for k, v in node.get("kwargs", {}).items() if k not in ("mask", "training")}
            if _refs(kwargs, []):
                raise KerasFileError(f"layer {_layer_name(entry)!r}: a tensor passed by keyword is not supported")
            calls.append(_refs(node.get("args", []), []))
        else:  # Keras 2: [[name, node index, tensor index, kwargs], ...]
            calls.append([(str(r[0]), int(r[1]), int(r[2])) for r in node])
    return calls


def _endpoints(value) -> list:
    if not value:
        return []
    if isinstance(value[0], str):
        value = [value]
    return [(str(v[0]), int(v[1]), int(v[2])) for v in value]


def _batch_shape(cfg: dict):
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if shape is None and cfg.get("input_shape") is not None:
        shape = [None, *cfg["input_shape"]]
    if shape is None:
        return None
    per = tuple(shape[1:])
    return None if any(s is None for s in per) else tuple(int(s) for s in per)



# --- channels_first models: converted at the edge to channels-last ----------------------------------------
# A value's layout: None (as Keras holds it), NCHW (Keras holds (C, H, W) maps; featuremaps holds them as
# (H, W, C)), or ("chw", h, w, c) (a flat vector in featuremaps's (h, w, c) order where Keras's is (c, h, w)).
NCHW = "nchw"
_SPATIAL = {"Conv2D", "Convolution2D", "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D",
            "Conv2DTranspose", "Convolution2DTranspose", "MaxPooling2D", "MaxPool2D", "AveragePooling2D",
            "AvgPool2D", "ZeroPadding2D", "Cropping2D"}
_GLOBAL = {"GlobalAveragePooling2D", "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D"}
_POINTWISE = {"ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout", "Identity", "Rescaling", "Activation",
              "Add", "Multiply", "Average", "Maximum"}
_ALONG_AXIS = {"softmax", "log_softmax", "glu", "sparsemax"}  # activations that read Keras's last axis whole
_REORDER_SAFE = {"softmax", "log_softmax", "sparsemax"}  # ... and give the same values on a permuted vector


def _is_channels_first(model_cfg: dict) -> bool:
    for entry in _layers_of(model_cfg):
        if entry.get("class_name") in _MODELS and _is_channels_first(entry):
            return True
        if entry.get("config", {}).get("data_format") == "channels_first":
            return True
    return False


def _axis(value):
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _act_name(act):
    if isinstance(act, dict):
        return act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
    return act


class _Layouts:
    """Which values of a channels_first model featuremaps holds in another order than Keras, and the
    rewrite of each layer call that reads them (`relayout`); every rewrite is a line of `log`."""

    def __init__(self, log: list):
        self.of, self.log = {}, log

    def relayout(self, kind, name, cfg, variables, inputs, shapes):
        """(config, variables, the output's layout) of a layer call on `inputs`."""
        states = [self.of.get(v) for v in inputs]
        first = cfg.get("data_format") == "channels_first"
        if not any(states) and not first:
            return cfg, variables, None

        def refuse(why):
            raise KerasFileError(f"layer {name!r} ({kind}): {why}; featuremaps converts channels_first models to "
                                 "channels-last only where the result is exact")

        state, cfg = states[0], dict(cfg)
        if any(s != state for s in states):
            refuse(f"its inputs are held in different layouts ({states})")
        if first and state != NCHW:
            refuse("data_format 'channels_first' on a tensor that is not a (C, H, W) map of the model's input")
        if state == NCHW:
            return self._maps(kind, name, cfg, variables, shapes[0], first, refuse)
        return self._flat(kind, name, cfg, variables, state, refuse)

    def _maps(self, kind, name, cfg, variables, shape, first, refuse):
        """A layer reading (C, H, W) maps that featuremaps holds as (H, W, C)."""
        act = _act_name(cfg.get("activation"))
        if act in _ALONG_AXIS:
            refuse(f"activation {act!r} on (C, H, W) maps reads the W axis whole, and featuremaps's reads channels")
        if kind in _SPATIAL or kind in _GLOBAL:
            if not first:
                refuse(f"data_format {cfg.get('data_format')!r} in a channels_first model")
            cfg["data_format"] = "channels_last"
            same = "; its kernel unchanged (Keras stores (kh, kw, ...) in both formats)" if variables else ""
            self.log.append(f"{name} ({kind}): data_format 'channels_first' → channels-last{same}")
            flat = kind in _GLOBAL and not cfg.get("keepdims")
            return cfg, variables, None if flat else NCHW
        if kind == "BatchNormalization":
            if _axis(cfg.get("axis", -1)) not in (1, -3):
                refuse(f"axis {cfg.get('axis')!r} on (C, H, W) maps; only the channel axis 1 has a featuremaps form")
            cfg["axis"] = -1
            self.log.append(f"{name} (BatchNormalization): axis 1 (the channels of NCHW) → the last axis of NHWC")
            return cfg, variables, NCHW
        if kind == "Softmax":
            if _axis(cfg.get("axis", -1)) not in (1, -3):
                refuse(f"axis {cfg.get('axis')!r} on (C, H, W) maps; only the channel axis 1 has a featuremaps form")
            cfg["axis"] = -1
            return cfg, variables, NCHW
        if kind == "Concatenate":
            axis = int(cfg.get("axis", -1)) % 4
            cfg["axis"] = (0, 3, 1, 2)[axis]  # NCHW axis → the same axis of NHWC
            return cfg, variables, NCHW
        if kind == "Flatten":
            return self._flatten(name, cfg, variables, shape, first, refuse)
        if kind == "PReLU":
            variables = [np.transpose(a, (1, 2, 0)) if np.ndim(a) == 3 else a for a in variables]  # (C, H, W) → HWC
            self.log.append(f"{name} (PReLU): alpha (C, H, W) → (H, W, C)")
        if kind == "Rescaling" and any(np.ndim(cfg.get(k, 0.0)) for k in ("scale", "offset")):
            refuse("a per-axis scale or offset on (C, H, W) maps broadcasts along W")
        if kind in _POINTWISE:
            return cfg, variables, NCHW
        refuse("it reads (C, H, W) maps by position (featuremaps holds them as (H, W, C))")

    def _flatten(self, name, cfg, variables, shape, first, refuse):
        cfg["data_format"] = None  # the order is logged here, not by the converter
        if first:
            self.log.append(f"{name} (Flatten): data_format 'channels_first' flattens in (h, w, c) order, as "
                            "featuremaps: no permutation")
            return cfg, variables, None
        if shape is None:
            refuse("flattening (C, H, W) maps of unknown size; give the Keras Input a fixed shape")
        h, w, c = shape
        self.log.append(f"{name} (Flatten): Keras flattens these (C, H, W) maps in (c, h, w) order, featuremaps in "
                        "(h, w, c): the Dense reading it gets its rows permuted")
        return cfg, variables, ("chw", h, w, c)

    def _flat(self, kind, name, cfg, variables, state, refuse):
        """A layer reading a vector that featuremaps holds in (h, w, c) order where Keras's is (c, h, w)."""
        _, h, w, c = state
        act = _act_name(cfg.get("activation"))
        if kind == "Dense":
            order = flatten_permutation(h, w, c, source="CHW", target="HWC")
            if not variables or np.shape(variables[0])[0] != order.size:
                refuse(f"its kernel does not have {order.size} rows, the flattened {h}×{w}×{c} maps")
            variables = [np.asarray(variables[0])[order], *variables[1:]]  # (in, out): W_hwc = W_chw[perm]
            self.log.append(f"{name} (Dense): kernel rows permuted from the (c, h, w) flatten order to (h, w, c) "
                            f"(flatten_permutation({h}, {w}, {c}, source='CHW', target='HWC'))")
            return cfg, variables, None
        if act in _ALONG_AXIS - _REORDER_SAFE or (kind == "Rescaling" and any(
                np.ndim(cfg.get(k, 0.0)) for k in ("scale", "offset"))):
            refuse("it reads the flattened vector by position, which featuremaps holds in (h, w, c) order")
        if kind in _POINTWISE or kind == "Softmax":
            return cfg, variables, state
        refuse("it reads the flattened vector by position, which featuremaps holds in (h, w, c) order, not "
               "Keras's (c, h, w); only a Dense (its rows permuted) or an elementwise layer may read it")

    def restore(self, b, value: str) -> str:
        """A model output held in another order than Keras's, put back (flat) or logged (maps)."""
        state = self.of.get(value)
        if state == NCHW:
            self.log.append(f"output {value!r}: (H, W, C) maps, channels-last; Keras's predict gives them as "
                            "(C, H, W)")
        if not isinstance(state, tuple):
            return value
        _, h, w, c = state
        for suffix, module in (("as_maps", nn.Reshape((h, w, c))), ("chw", nn.Transpose((2, 0, 1))),
                               ("chw_flat", nn.Flatten())):
            name = b.unique(f"{value}_{suffix}")
            b.shapes[name] = tuple(module.compute_output_shape(b.shapes[value]))
            b.nodes.append((name, module.eval(), value))
            value = name
        self.log.append(f"output {value!r}: Reshape, Transpose (2, 0, 1) and Flatten put the output back in Keras's "
                        "(c, h, w) order")
        return value


class _Builder:
    def __init__(self, weights, path):
        self.weights, self.path = weights, path
        self.nodes, self.shapes, self.log, self.used = [], {}, [], set()
        self.layouts = _Layouts(self.log)

    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def emit_layer(self, entry, kind, name, inputs, names, keys) -> str:
        variables = [a for _, a in self.weights.get(names, keys)]
        shapes = [self.shapes.get(v) for v in inputs]
        cfg, variables, layout = self.layouts.relayout(kind, name, entry.get("config", {}), variables, inputs, shapes)
        layer = Layer(kind, name, cfg, shapes, variables, self.log)
        value, reads = None, list(inputs)
        for node_name, module in convert(layer):
            value = self.unique(node_name)
            shapes = [self.shapes.get(v) for v in reads]
            if all(s is not None for s in shapes):
                try:
                    out = module.compute_output_shape(shapes if module.role == "merge" else shapes[0])
                except ShapeError as e:
                    raise KerasFileError(f"{self.path}: layer {name!r} ({kind}): {e}") from None
                self.shapes[value] = tuple(out)
            self.nodes.append((value, module, reads if module.role == "merge" else reads[0]))
            reads = [value]
        if layout is not None:
            self.layouts.of[value] = layout
        return value

    def emit(self, entry, kind, name, inputs, names, keys) -> list:
        """The values a layer call produces (a nested model: its outputs)."""
        if kind == "Sequential":
            return [self.sequential(entry, inputs[0], f"{name}_", names, keys)]
        if kind in _MODELS:
            return self.functional(entry, inputs, f"{name}_", names, keys)
        return [self.emit_layer(entry, kind, name, inputs, names, keys)]

    def sequential(self, model_cfg, value, prefix, names, keys) -> str:
        counts: dict = {}
        for entry in _layers_of(model_cfg):
            kind, lname = entry.get("class_name"), _layer_name(entry)
            if kind == "InputLayer":
                continue
            key = _key(kind, counts)
            value = self.emit(entry, kind, prefix + lname, [value], names + (lname,), keys + (key,))[0]
        return value

    def functional(self, model_cfg, inputs, prefix, names, keys) -> list:
        cfg = model_cfg.get("config", {})
        entries, counts, produced = cfg.get("layers", []), {}, {}
        for (iname, _, _), value in zip(_endpoints(cfg.get("input_layers")), inputs):
            produced[(iname, 0, 0)] = value
        pending = []
        for entry in entries:
            kind, lname = entry.get("class_name"), _layer_name(entry)
            key = _key(kind, counts)
            if kind != "InputLayer":
                pending += [(entry, kind, lname, key, k, refs) for k, refs in enumerate(_calls(entry))]
        while pending:
            ready = [p for p in pending if all(r in produced for r in p[5])]
            if not ready:
                missing = sorted({r[0] for p in pending for r in p[5] if r not in produced})
                raise KerasFileError(f"{self.path}: layers {[p[2] for p in pending]} read tensors no layer produces "
                                     f"({missing}): the config is inconsistent")
            for p in ready:
                entry, kind, lname, key, k, refs = p
                node = prefix + lname + (f"_call{k}" if k else "")
                if k == 1:
                    self.log.append(f"{lname} ({kind}): called {len(_calls(entry))} times (shared weights) → one node "
                                    "per call, the weights copied (training them would untie them)")
                outs = self.emit(entry, kind, node, [produced[r] for r in refs], names + (lname,), keys + (key,))
                for t, value in enumerate(outs):
                    produced[(lname, k, t)] = value
                pending.remove(p)
        return [produced[r] for r in _endpoints(cfg.get("output_layers"))]


def _key(kind: str, counts: dict) -> str:
    base = snake_case(kind)
    n = counts.get(base, -1) + 1
    counts[base] = n
    return base if n == 0 else f"{base}_{n}"


def _sequential_shape(config: dict):
    layers = _layers_of(config)
    for entry in layers[:1]:
        shape = _batch_shape(entry.get("config", {}))
        if shape is not None:
            return shape
    built = config.get("config", {}).get("build_input_shape") if isinstance(config.get("config"), dict) else None
    return _batch_shape({"batch_shape": built}) if built else None


def _rank(cfg: dict):
    """The per-example rank of an input config's shape (None dims allowed), or None when it has none."""
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    return len(cfg["input_shape"]) if shape is None and cfg.get("input_shape") is not None else (
        None if shape is None else len(shape) - 1)


def _sequential_rank(config: dict):
    first = _layers_of(config)[:1]
    rank = _rank(first[0].get("config", {})) if first else None
    built = config.get("config", {}).get("build_input_shape") if isinstance(config.get("config"), dict) else None
    return rank if rank is not None or not built else len(built) - 1


def _input(b, value: str, shape, rank, channels_first: bool):
    """The featuremaps shape of a model input: a channels_first model's (C, H, W) input is held as (H, W, C)."""
    if not channels_first or rank != 3:
        return shape
    b.layouts.of[value] = NCHW
    nhwc = None if shape is None else (shape[1], shape[2], shape[0])
    b.log.append(f"input {value!r}: a channels_first model, converted at the edge to channels-last: the input is "
                 f"NHWC {nhwc or '(H, W, C)'}, Keras's is NCHW {shape or '(C, H, W)'} (feed x.transpose(0, 2, 3, 1))")
    return nhwc


def _build(config: dict, weights, path):
    b = _Builder(weights, path)
    kind = config.get("class_name")
    first = _is_channels_first(config)
    if kind == "Sequential":
        shape = _input(b, "input", _sequential_shape(config), _sequential_rank(config), first)
        if shape is not None:
            b.shapes["input"] = shape
        b.used.add("input")
        out = b.layouts.restore(b, b.sequential(config, "input", "", (), ()))
        return nn.Sequential([(n, m) for n, m, _ in b.nodes], input_shape=shape), b.log, out
    if kind not in _MODELS:
        raise KerasFileError(f"{path}: the top-level object is a {kind!r}, not a Keras model (Sequential or "
                             "Functional)")
    inputs = {}
    by_name = {_layer_name(e): e for e in config.get("config", {}).get("layers", [])}
    for iname, _, _ in _endpoints(config["config"].get("input_layers")):
        icfg = by_name.get(iname, {}).get("config", {})
        shape = _input(b, iname, _batch_shape(icfg), _rank(icfg), first)
        inputs[iname] = shape
        b.used.add(iname)
        if shape is not None:
            b.shapes[iname] = shape
    outs = [b.layouts.restore(b, v) for v in b.functional(config, list(inputs), "", (), ())]
    return nn.Graph(inputs, b.nodes, outs), b.log, outs


def load(path, *, max_bytes=DEFAULT_MAX_BYTES):
    """The Keras model in `path` (a Keras 3 `.keras` zip or a legacy `.h5`/`.hdf5` file) as a featuremaps
    `Sequential` (a Keras Sequential) or `Graph` (a functional model), in eval mode, with its weights.

    Needs h5py only; no Keras, no TensorFlow, and no code from the file runs: a Lambda layer, a custom
    or registered object, or anything from a module outside keras is refused, naming every such layer.
    `max_bytes` bounds the file, the archive's members and the weights, checked before reading.
    `model.import_log` lists each conversion step (layer, what, which convention).
    """
    p = Path(path)
    config, weights, fmt = read(p, max_bytes)
    try:
        check_safe(config, p)
        model, log, _ = _build(config, weights, p)
    except KerasFileError as e:
        msg = str(e)
        raise KerasFileError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    except (TypeError, ValueError, ArithmeticError) as e:  # a config value of the wrong type or range, met
        # by a layer's constructor or a shape rule: the file is at fault, so say which file
        raise KerasFileError(f"{p}: its model config cannot be built: {e}") from None
    finally:
        weights.close()
    what = {"keras-h5": "Keras 3 .keras file (model.weights.h5)", "keras-npz": "Keras 3 .keras file (npz weights)",
            "h5": "legacy HDF5 Keras file (model_config + model_weights)"}[fmt]
    how = ("a channels_first model: kernels stay HWIO (Keras stores them so in both formats), activations become NHWC"
           if _is_channels_first(config) else "kernels stay HWIO and activations NHWC (Keras is channels-last, as "
           "featuremaps)")
    model.import_log = [f"read {p.name}: a {what}; {how}"] + log
    return model.eval()
