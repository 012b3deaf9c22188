"""Keras 3's npz weight store, read as data: the `.npy` members are parsed, and the pickle streams inside them
are walked opcode by opcode; nothing is unpickled.

What Keras writes (`keras.src.saving.saving_lib.NpzIOStore`, `np.savez` of one dict per layer path): each member
`<layer path>.npy` (`__root__.npy` for the model itself) is a 0-d object array whose one element is a dict
`{"0": variable, "1": variable, ...}`. NumPy stores an object array as a pickle stream after the `.npy` header.
With the torch backend each variable is a pickled `keras.src.backend.Variable`: an object built with no
arguments whose state dict holds `_value`, a `torch.nn.Parameter`, itself pickled as
`torch._utils._rebuild_parameter(torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(b), offset,
size, stride, ...), ...)`, where `b` is a legacy `torch.save` byte string (three small header pickles, a
pickle naming the storage by a persistent id, a pickle of the storage keys, then each storage's element count
and raw bytes). Optimizer variables are plain NumPy arrays (`numpy._core.multiarray._reconstruct` plus a
state tuple with the raw bytes).

Why this is safe, and how it differs from unpickling: the standard unpickler is a virtual machine that imports any
module a stream names and calls any callable with any arguments (`REDUCE`, `BUILD` calling `__setstate__`,
`NEWOBJ`...), so a file can run code. Here the stream is only *tokenised* by `pickletools.genops`, a pure
parser in the standard library that reads opcodes and their arguments and executes nothing. The stack
machine below (`_Stream`) is our own: it accepts a fixed list of opcodes, and a global name is never looked
up or imported: it becomes an inert token, allowed only if it is one of the eight names Keras's stream holds
(nine with NumPy 1's `numpy.core.multiarray`), and each "call" of a token is our own small function that
checks its arguments' exact types and builds the value itself (NumPy arrays with `np.frombuffer` after
checking the dtype is numeric or bool, the byte order, and that the shape's product matches the byte count,
so nothing is allocated beyond the bytes in the file). Anything else (another global, an opcode outside
the list, a call or state of an unexpected form, a memo index never stored, a truncated stream, a stream
that does not end in exactly one value) raises `KerasFileError` naming the file, the member, the opcode
and its byte offset. So this is a reader of a fixed data subset, like a JSON reader: the worst a crafted
file can do is be refused. Work and memory are linear in the member's size (no recursion: the only nesting
is one legacy torch stream inside a bytes argument, read by a second `_Stream` that cannot nest further).
"""
from __future__ import annotations

import io
import math
import pickletools
import zipfile
from tokenize import TokenError

import numpy as np

from .. import limits
from ._read import KerasFileError, check_budget

__all__ = ["read_npz"]

_NUMERIC = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}
_MAX_NDIM, _MAX_DIM, _MAX_MARKS = 32, 1 << 48, 64
_TORCH_MAGIC, _TORCH_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
_TORCH_STORAGES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8",
                   "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "b1"}
_OUTER_NAMES = {("numpy._core.multiarray", "_reconstruct"): "reconstruct",
                ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
                ("numpy", "ndarray"): "ndarray", ("numpy", "dtype"): "dtype",
                ("keras.src.backend", "Variable"): "variable", ("collections", "OrderedDict"): "ordered_dict",
                ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor",
                ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
                ("torch.storage", "_load_from_bytes"): "torch_bytes"}
_TORCH_NAMES = {("torch", name): "storage" for name in _TORCH_STORAGES}
# opcodes whose argument is the value pushed
_LITERALS = {"BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "SHORT_BINUNICODE", "BINUNICODE",
             "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class _Token:
    """An allowed global name, as an inert token: never imported, never called."""

    def __init__(self, module: str, name: str, kind: str):
        self.module, self.name, self.kind = module, name, kind


class _Pending:
    """An object made by a call and completed by one BUILD (an array, a dtype, a Keras variable)."""

    def __init__(self, kind: str, arg=None):
        self.kind, self.arg, self.value, self.built = kind, arg, None, False


class _Variable:
    """A Keras variable's array and its recorded path (`<layer>/<name>`), or None."""

    def __init__(self, array: np.ndarray, path):
        self.array, self.path = array, path


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _eq(x, want) -> bool:
    """`x` equals the literal `want` (str, bytes, int, bool, None, tuples of those, or `{}`), types compared first,
    so that no array or token from the stream is ever compared with `==`."""
    if type(x) is not type(want):
        return False
    if isinstance(want, tuple):
        return len(x) == len(want) and all(_eq(a, b) for a, b in zip(x, want))
    if isinstance(want, dict):
        return not want and not x
    return x == want


def _shape(x, refuse) -> tuple:
    if not isinstance(x, tuple) or len(x) > _MAX_NDIM or not all(_is_int(d) and 0 <= d <= _MAX_DIM for d in x):
        refuse(f"a shape that is not a tuple of at most {_MAX_NDIM} non-negative ints")
    return x


def _check_bytes(data, dtype: np.dtype, shape: tuple, refuse) -> None:
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        refuse(f"an array of shape {shape} and dtype {dtype} ({count * dtype.itemsize:,} bytes) over "
               f"{len(data):,} bytes of data")


def _from_bytes(data, dtype: np.dtype, shape: tuple, fortran: bool, refuse) -> np.ndarray:
    """A writable native-order copy of `data` as an array; the byte count must equal the shape's."""
    if not isinstance(data, bytes):
        refuse(f"array data of type {type(data).__name__}, expected bytes")
    _check_bytes(data, dtype, shape, refuse)
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))  # (count,), a read-only view of the bytes
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape, order="F" if fortran else "C")


class _Stream:
    """The stack machine: `run(f)` reads one pickle from file object `f` and returns its value. `names` maps the
    allowed (module, name) pairs to token kinds; `persistent`, if given, interprets BINPERSID ids."""

    def __init__(self, where: str, names: dict, persistent=None):
        self.where, self.names, self.persistent = where, names, persistent
        self.op, self.pos = None, 0

    def refuse(self, what: str):
        at = "" if self.op is None else f" (opcode {self.op} at byte {self.pos})"
        raise KerasFileError(f"{self.where}: refused {what}{at}; featuremaps "
                             "reads Keras's npz store as data, accepting only the numpy, torch and Keras variable "
                             "records Keras writes, and never unpickles") from None

    def _ops(self, f):
        try:
            yield from pickletools.genops(f)
        except (ValueError, EOFError) as e:
            self.op = "?"
            self.refuse(f"a malformed or truncated pickle stream ({e})")

    def run(self, f):
        self.stack, self.marks, self.memo = [], [], {}
        for op, arg, pos in self._ops(f):
            self.op, self.pos = op.name, pos
            if op.name == "STOP":
                return self._stop()
            self._step(op.name, arg)
        self.op = "end"
        self.refuse("a pickle stream without STOP")

    def _stop(self):
        if self.marks or len(self.stack) != 1:
            self.refuse(f"a stream ending with {len(self.stack)} values and {len(self.marks)} open marks, "
                        "expected one value")
        return self.stack[0]

    def pop(self):
        if not self.stack:
            self.refuse("an opcode on an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            self.refuse("an opcode that needs a MARK without one")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def top(self, kind: type):
        if not self.stack or not isinstance(self.stack[-1], kind):
            found = _describe(self.stack[-1]) if self.stack else "an empty stack"
            self.refuse(f"{self.op} on {found}, expected {_describe(kind)}")
        return self.stack[-1]

    def _step(self, name: str, arg) -> None:
        if name in _LITERALS:
            self.stack.append(arg)
        elif name in _CONSTANTS:
            self.stack.append(_CONSTANTS[name])
        elif name in ("PROTO", "FRAME"):
            if name == "PROTO" and not 2 <= arg <= 5:
                self.refuse(f"pickle protocol {arg}")
        elif name in _MEMO:
            _MEMO[name](self, arg)
        elif name in _BUILDERS:
            _BUILDERS[name](self, arg)
        elif name in _CALLS:
            _CALLS[name](self, arg)
        else:
            self.refuse("an opcode outside the data subset Keras writes")

    def done(self, x, kind: str):
        """The value of a completed `_Pending` of `kind` (refused otherwise)."""
        if not isinstance(x, _Pending) or x.kind != kind or not x.built:
            self.refuse(f"{_describe(x)} where a built {kind} is expected")
        return x.value


def _describe(x) -> str:
    """'a list', 'an unbuilt ndarray', 'the global os.system': what a stack value (or a type) is, for errors."""
    if isinstance(x, _Pending):
        return f"{'a built' if x.built else 'an unbuilt'} {x.kind}"
    if isinstance(x, _Token):
        return f"the global {x.module}.{x.name}"
    name = "object made by a call" if x is _Pending else x.__name__ if isinstance(x, type) else type(x).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _memo_put(s: _Stream, arg) -> None:
    if not s.stack:
        s.refuse("a memo store on an empty stack")
    s.memo[len(s.memo) if arg is None else arg] = s.stack[-1]


def _memo_get(s: _Stream, arg) -> None:
    if arg not in s.memo:
        s.refuse(f"memo index {arg}, never stored")
    s.stack.append(s.memo[arg])


_MEMO = {"MEMOIZE": _memo_put, "BINPUT": _memo_put, "LONG_BINPUT": _memo_put,
         "BINGET": _memo_get, "LONG_BINGET": _memo_get}


def _mark(s: _Stream, _arg) -> None:
    if len(s.marks) >= _MAX_MARKS:
        s.refuse(f"more than {_MAX_MARKS} nested marks")
    s.marks.append(s.stack)
    s.stack = []


def _tuple_n(n: int):
    def build(s: _Stream, _arg) -> None:
        items = [s.pop() for _ in range(n)][::-1]
        s.stack.append(tuple(items))
    return build


def _tuple_mark(s: _Stream, _arg) -> None:
    items = tuple(s.pop_mark())  # first: pop_mark swaps in the stack below the mark
    s.stack.append(items)


def _key(s: _Stream, k):
    if not isinstance(k, (str, int)):
        s.refuse(f"a dict key of type {type(k).__name__}")
    return k


def _setitems(s: _Stream, _arg) -> None:
    items = s.pop_mark()
    if len(items) % 2:
        s.refuse("SETITEMS with an odd number of items")
    d = s.top(dict)
    for k, v in zip(items[::2], items[1::2]):
        d[_key(s, k)] = v


def _setitem(s: _Stream, _arg) -> None:
    v, k = s.pop(), s.pop()
    s.top(dict)[_key(s, k)] = v


def _append(s: _Stream, _arg) -> None:
    v = s.pop()
    s.top(list).append(v)


def _appends(s: _Stream, _arg) -> None:
    items = s.pop_mark()
    s.top(list).extend(items)


_BUILDERS = {"MARK": _mark, "EMPTY_TUPLE": lambda s, _: s.stack.append(()), "TUPLE1": _tuple_n(1),
             "TUPLE2": _tuple_n(2), "TUPLE3": _tuple_n(3), "TUPLE": _tuple_mark,
             "EMPTY_LIST": lambda s, _: s.stack.append([]), "APPEND": _append, "APPENDS": _appends,
             "EMPTY_DICT": lambda s, _: s.stack.append({}), "SETITEM": _setitem, "SETITEMS": _setitems}


def _global(s: _Stream, arg) -> None:
    if s.op == "GLOBAL":
        module, _, name = arg.partition(" ")
    else:
        name, module = s.pop(), s.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            s.refuse("STACK_GLOBAL of values that are not strings")
    kind = s.names.get((module, name))
    if kind is None:
        s.refuse(f"the global {module}.{name}")
    s.stack.append(_Token(module, name, kind))


def _reduce(s: _Stream, _arg) -> None:
    args, fn = s.pop(), s.pop()
    if not isinstance(fn, _Token) or not isinstance(args, tuple):
        s.refuse(f"a call of a {type(fn).__name__} with {type(args).__name__} arguments")
    call = _REDUCE.get(fn.kind) if s.op == "REDUCE" else _NEWOBJ.get(fn.kind)
    if call is None:
        s.refuse(f"{s.op} of {fn.module}.{fn.name}")
    s.stack.append(call(s, args))


def _build(s: _Stream, _arg) -> None:
    state = s.pop()
    target = s.top(_Pending)
    if target.built:
        s.refuse(f"a second BUILD of a {target.kind}")
    target.value, target.built = _STATES[target.kind](s, target, state), True


def _persid(s: _Stream, _arg) -> None:
    pid = s.pop()
    if s.persistent is None:
        s.refuse("a persistent id outside a torch storage record")
    s.stack.append(s.persistent(s, pid))


_CALLS = {"GLOBAL": _global, "STACK_GLOBAL": _global, "REDUCE": _reduce, "NEWOBJ": _reduce, "BUILD": _build,
          "BINPERSID": _persid}


# ---- the calls: each checks its arguments and builds the value itself ----

def _reconstruct(s: _Stream, args: tuple):
    if len(args) != 3 or not isinstance(args[0], _Token) or args[0].kind != "ndarray" or \
            not _eq(args[1:], ((0,), b"b")):
        s.refuse("numpy's _reconstruct with arguments other than (numpy.ndarray, (0,), b'b')")
    return _Pending("ndarray")


def _dtype(s: _Stream, args: tuple):
    name = args[0] if args and isinstance(args[0], str) else None
    if len(args) != 3 or not _eq(args[1:], (False, True)) or (name not in _NUMERIC and name != "O8"):
        s.refuse(f"numpy.dtype of {name or 'a non-string'!r} "
                 f"(accepted: {', '.join(sorted(_NUMERIC))}, and O8 for the store's container)")
    return _Pending("dtype", args[0])


def _ordered_dict(s: _Stream, args: tuple):
    if len(args):
        s.refuse("collections.OrderedDict with arguments (only an empty one is accepted)")
    return {}


def _rebuild_tensor(s: _Stream, args: tuple):
    if len(args) not in (6, 7) or not isinstance(args[0], np.ndarray) or not _is_int(args[1]) or \
            not isinstance(args[4], bool) or not _eq(args[5], {}) or \
            (len(args) == 7 and args[6] is not None and not _eq(args[6], {})):
        s.refuse("torch's _rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, "
                 "requires_grad, {})")
    storage, offset, size, stride = args[0], args[1], _shape(args[2], s.refuse), args[3]
    want, step = [], 1
    for d in size[::-1]:  # C-contiguous strides, innermost first
        want.append(step)
        step *= d
    if not isinstance(stride, tuple) or len(stride) != len(size) or \
            not all(_eq(st, w) for st, w, d in zip(stride, want[::-1], size) if d != 1):
        s.refuse(f"a tensor of size {size} with strides {stride}: only contiguous tensors are read")
    count = math.prod(size)
    if offset < 0 or offset + count > storage.size:
        s.refuse(f"a tensor of {count} elements at offset {offset} in a storage of {storage.size}")
    return storage[offset:offset + count].reshape(size)


def _rebuild_parameter(s: _Stream, args: tuple):
    if len(args) != 3 or not isinstance(args[0], np.ndarray) or not isinstance(args[1], bool) or \
            not _eq(args[2], {}):
        s.refuse("torch's _rebuild_parameter with arguments other than (tensor, requires_grad, {})")
    return args[0]


def _torch_bytes(s: _Stream, args: tuple):
    if len(args) != 1 or not isinstance(args[0], bytes):
        s.refuse("torch.storage._load_from_bytes with arguments other than (bytes,)")
    return _legacy_torch(args[0], f"{s.where}, torch storage bytes at byte {s.pos}")


_REDUCE = {"reconstruct": _reconstruct, "dtype": _dtype, "ordered_dict": _ordered_dict,
           "rebuild_tensor": _rebuild_tensor, "rebuild_parameter": _rebuild_parameter, "torch_bytes": _torch_bytes}


def _new_variable(s: _Stream, args: tuple):
    if len(args):
        s.refuse("keras.src.backend.Variable built with arguments (Keras builds it with none, then sets its state)")
    return _Pending("variable")


_NEWOBJ = {"variable": _new_variable}


# ---- the states that BUILD completes ----

def _dtype_state(s: _Stream, target: _Pending, state) -> np.dtype:
    ok = isinstance(state, tuple) and len(state) == 8 and _eq(state[:1] + state[2:7], (3, None, None, None, -1, -1))
    if not ok or not isinstance(state[1], str) or state[1] not in ("<", ">", "|") or not _is_int(state[7]):
        s.refuse("a dtype state other than (3, byte order, None, None, None, -1, -1, flags)")
    dtype = np.dtype(object) if target.arg == "O8" else np.dtype(target.arg)
    if state[1] == "|" and dtype.itemsize > 1 and target.arg != "O8":
        s.refuse(f"byte order '|' for the {dtype.itemsize}-byte dtype {target.arg}")
    return dtype if state[1] == "|" else dtype.newbyteorder(state[1])


def _array_state(s: _Stream, target: _Pending, state):
    if not isinstance(state, tuple) or len(state) != 5 or not _eq(state[0], 1) or not isinstance(state[3], bool):
        s.refuse("an ndarray state other than (1, shape, dtype, is_fortran, data)")
    shape, dtype, fortran, data = _shape(state[1], s.refuse), s.done(state[2], "dtype"), state[3], state[4]
    if dtype.kind != "O":
        return _from_bytes(data, dtype, shape, fortran, s.refuse)
    if not isinstance(data, list) or len(data) != math.prod(shape):
        s.refuse(f"an object array of shape {shape} without one list item per element")
    items = [s.done(x, "ndarray") if isinstance(x, _Pending) else x for x in data]
    for x in items:
        if not isinstance(x, (dict, str, np.ndarray)) and not _is_int(x):
            s.refuse(f"an object array element of type {type(x).__name__} (accepted: dict, array, str, int)")
    return items


def _variable_state(s: _Stream, target: _Pending, state) -> _Variable:
    if not isinstance(state, dict) or "_value" not in state:
        s.refuse("a keras Variable state that is not a dict with '_value'")
    for k, v in state.items():
        if k != "_value" and v is not None and not isinstance(v, (bool, int, float, str)) and \
                not (isinstance(v, tuple) and all(_is_int(d) for d in v)):
            s.refuse(f"keras Variable attribute {k!r} of type {type(v).__name__}")
    value = state["_value"]
    if isinstance(value, _Pending):
        value = s.done(value, "ndarray")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        s.refuse(f"a keras Variable whose _value is a {type(value).__name__}, not a numeric array")
    if "_shape" in state and (not isinstance(state["_shape"], tuple) or state["_shape"] != value.shape):
        s.refuse(f"a keras Variable of _shape {state['_shape']} holding an array of shape {value.shape}")
    path = state.get("_path")
    return _Variable(value, path if isinstance(path, str) else None)


_STATES = {"dtype": _dtype_state, "ndarray": _array_state, "variable": _variable_state}


# ---- the legacy torch.save bytes inside torch.storage._load_from_bytes ----

def _storage_id(s: _Stream, pid):
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or not _eq(pid[0], "storage") or \
            not isinstance(pid[1], _Token) or not isinstance(pid[2], str) or not isinstance(pid[3], str) or \
            not _is_int(pid[4]) or not 0 <= pid[4] <= _MAX_DIM or (len(pid) == 6 and pid[5] is not None):
        s.refuse("a persistent id other than ('storage', storage type, key, location, size[, None])")
    return pid


def _legacy_torch(data: bytes, where: str) -> np.ndarray:
    """The one storage in a legacy `torch.save` byte string, as a 1-D native-order array."""
    f = io.BytesIO(data)
    plain = _Stream(where, {})
    head = [plain.run(f), plain.run(f), plain.run(f)]
    if not _eq(head[0], _TORCH_MAGIC) or not _eq(head[1], _TORCH_PROTOCOL) or not isinstance(head[2], dict) or \
            not isinstance(head[2].get("little_endian"), bool):
        plain.refuse("torch storage bytes that do not start with torch.save's legacy header")
    main = _Stream(where, _TORCH_NAMES, _storage_id)
    pid = _storage_id(main, main.run(f))
    keys = plain.run(f)
    if not isinstance(keys, list) or len(keys) != 1 or not _eq(keys[0], pid[2]):
        main.refuse("torch storage bytes holding something other than one storage")
    little = head[2]["little_endian"]
    dtype = np.dtype(_TORCH_STORAGES[pid[1].name]).newbyteorder("<" if little else ">")
    size = f.read(8)
    count, raw = int.from_bytes(size, "little" if little else "big"), f.read()
    if len(size) != 8 or count != pid[4]:
        main.refuse(f"a storage recorded with {pid[4]} elements but holding {count}")
    return _from_bytes(raw, dtype, (count,), False, main.refuse)


# ---- the npz archive and its .npy members ----

def _npy(raw: bytes, where: str):
    """A member's value: a numeric array, or for a pickled object array its one element (a dict of arrays)."""
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
    except (ValueError, EOFError, SyntaxError, TokenError, RecursionError) as e:  # from its literal_eval of the dict
        raise KerasFileError(f"{where}: not a readable .npy array ({e})") from None
    s = _Stream(where, _OUTER_NAMES)
    shape = _shape(shape, s.refuse)
    if dtype.kind in "biuf":  # a plain array: its size checked, then read by limits.read_npy (chunked)
        _check_bytes(raw[f.tell():], dtype, shape, s.refuse)
        a = limits.read_npy(io.BytesIO(raw), len(raw), where, KerasFileError)
        return a.astype(a.dtype.newbyteorder("="), copy=False)
    if dtype != np.dtype(object):
        raise KerasFileError(f"{where}: an array of dtype {dtype}; expected numbers, or Keras's pickled dict")
    items = s.done(s.run(f), "ndarray")
    if not isinstance(items, list) or shape != () or len(items) != 1 or not isinstance(items[0], dict):
        s.refuse("an object array other than Keras's one dict per layer")
    return {k: _var(s, k, v) for k, v in items[0].items()}


def _var(s: _Stream, key, v) -> _Variable:
    if isinstance(v, _Pending) and v.kind == "variable":
        return s.done(v, "variable")
    if isinstance(v, _Pending):
        return _Variable(s.done(v, "ndarray"), None)
    if isinstance(v, np.ndarray):  # a torch tensor, rebuilt
        return _Variable(v, None)
    s.refuse(f"variable {key!r} of type {type(v).__name__}, not an array or a keras Variable")


def read_npz(data: bytes, path, limit: int | None) -> dict:
    """{member name without '.npy': numeric array, or {variable key: _Variable}} of the npz archive `data`,
    refused when it is not a zip of .npy members or declares more than `limit` bytes (None: the limit
    max_tensor_bytes). Members are inflated by `limits.read_member` (max_decompressed_bytes), plain arrays
    read by `limits.read_npy` (shape checked against the tensor limits before allocating)."""
    where = f"{path}: model.weights.npz"
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise KerasFileError(f"{where} is not a readable npz archive ({e})") from None
    check_budget(sum(i.file_size for i in infos), limit, f"{where} declares")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise KerasFileError(f"{where} member {info.filename!r} is not an .npy array")
        name = info.filename[:-4]
        raw = limits.read_member(zf, info, where, KerasFileError)
        if len(raw) != info.file_size:
            raise KerasFileError(f"{where} member {name!r} holds {len(raw):,} bytes, not the {info.file_size:,} "
                                 "it declares")
        out[name] = _npy(raw, f"{where} member {name!r}")
    return out
