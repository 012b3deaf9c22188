"""Which algorithm each conv layer runs: the candidates a shape allows, the rule, and the autotuner.

A conv step has three parts, each with its own candidates (all exact to float rounding against
the im2col reference; tests/test_conv_algorithms.py):

* forward — ``im2col`` (columns + one GEMM), ``pointwise`` (1×1, stride 1, no padding: x itself is
  the column matrix), ``depthwise`` (one einsum over the window view), ``winograd`` (F(2×2, 3×3),
  3×3 stride 1 dilation 1 one group; `featuremaps.functional.winograd`), ``direct`` (the compiled
  direct conv of `featuremaps.functional._direct`, no column matrix; offered up to 16 input maps
  when numba is on, and the rule's choice where `_direct.pays`), ``taps`` (one GEMM per kernel tap on
  shifted runs of the flat padded input, or of its phase planes when strided, no column matrix; one
  group; pure NumPy;
  `featuremaps.functional.taps`, the rule's choice where `taps.pays`), ``blocks`` (im2col + GEMM
  a cache-sized block of output rows at a time, `featuremaps.functional.colblocks`; the rule's
  choice for a large column matrix, `colblocks.pays`, which differs in training and inference);
* dW — ``cols_t_dy`` (colsᵀ · dy) or ``dy_t_cols`` ((dyᵀ copied) · cols, transposed): the same
  GEMM in the two orientations BLAS runs at different speeds; ``direct`` (from the direct conv's
  phase planes, no column matrix; with the direct forward, where `_direct.pays`); ``taps`` (one
  GEMM per tap, no column matrix; with the taps forward, where `taps.pays`); ``blocks`` (colsᵀ · dy
  summed over the blocked im2col's blocks, rebuilt from x; with the blocked forward in training);
  ``grouped`` and ``depthwise``;
* dx — ``rows`` (row windows of dy, one GEMM, KH shifted adds; stride 1 along W), ``col2im``
  (dcols = dy · Wᵀ, then the KH·KW block adds), each also as ``rows_numba`` / ``col2im_numba`` with
  the compiled data movement; ``winograd`` (dx of a 3×3 stride-1 conv is a 3×3 stride-1 conv of dy
  padded by 2 − pad, every pad ≤ 2); ``phases`` (strided layers: dx split into sh·sw phases, each
  a stride-1 conv of dy with the taps that reach it, run as a forward conv; `phases_pays`);
  ``blocks_numba`` (col2im a cache-sized block of output rows at a time, with the compiled adds,
  `colblocks.input_grad`; the rule's choice where `colblocks.dx_pays`); ``pointwise``; ``depthwise``.

Choosing: with autotuning on (opt-in: ``FEATUREMAPS_AUTOTUNE=1`` or `use_autotune(True)`; off by
default because two processes that tuned differently may differ in the last bits, and `--resume`
must be bit-identical) the first call of a shape times every candidate of each part on seeded data of that
shape and keeps the fastest, as cuDNN's benchmark mode does, so a layer never runs a path slower
than another one available to it (a compiled path that loses is not used). The choice is kept for
the process and in the on-disk cache of `featuremaps.functional.autotune` (per shape, dtype,
machine and library versions). Timing happens once per shape and machine: a few runs of each
candidate, typically well under a second; layers under `MIN_TUNE_MACS` multiply-adds are not
timed (the rule decides). With autotuning off, `rule` decides from the shape
alone (measured rules; winograd is then never picked).
`use_conv_algorithm` forces a choice (tests, experiments). Runs of one path are bit-identical run
to run; two processes that tuned differently (an empty cache) may differ in the last bits.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import threading
from typing import Iterator, NamedTuple

import numpy as np

from . import accel, autotune, colblocks, taps

__all__ = ["ConvAlgorithm", "NAMES", "candidates", "rule", "choose", "use_conv_algorithm", "use_autotune",
           "autotune_enabled"]

NAMES = {"forward": ("im2col", "pointwise", "depthwise", "winograd", "direct", "taps", "blocks"),
         "dw": ("cols_t_dy", "dy_t_cols", "direct", "taps", "blocks", "grouped", "depthwise"),
         "dx": ("rows", "rows_numba", "col2im", "col2im_numba", "phases", "winograd", "pointwise", "depthwise",
                "blocks_numba")}
# The rule's dW orientation (`dy_t_orientation_pays`; measured 2026-12-03, bench/README.md).
DT_MIN_K = 128  # dy_t_cols needs at least this many weight rows (kh·kw·c) ...
DT_MAX_O = 8  # ... and at most this many output maps,
LARGE_K, LARGE_K_MAX_O = 3072, 64  # or this many rows with up to this many output maps
DIRECT_OFFER_C = 16  # the direct conv and its dW are offered up to this many input maps (the rule: `_direct.pays`)
MIN_TUNE_MACS = 1 << 18  # smaller layers (about 0.1 ms) follow the rule: timing them would cost more than it saves


class ConvAlgorithm(NamedTuple):
    """What a conv layer runs: the forward, weight-gradient and input-gradient algorithms, and why."""
    forward: str
    dw: str
    dx: str
    why: str


# --- what a shape allows ----------------------------------------------------------------------
def is_pointwise(g) -> bool:
    """A 1×1 kernel, stride 1, no padding, one group, and every input pixel read (h, w = oh, ow):
    the conv is a plain matrix product over C, with x itself as the column matrix. (A transposed
    conv's output_padding adds rows/columns that no output reads, so h > oh there.)"""
    gh, gw = g.geo
    return (gh.k == gw.k == gh.s == gw.s == 1 and g.groups == 1 and gh.lo == gh.hi == gw.lo == gw.hi == 0
            and gh.size == gh.out and gw.size == gw.out)


def is_depthwise(g) -> bool:
    return g.groups == g.c and g.c > 1


def rows_scratch_per_image(g) -> int:
    """Peak scratch values per image of the ``rows`` input gradient: dy widened, its row windows R,
    the GEMM result, the channel-major sum (two of them alive at a time)."""
    gh, gw = g.geo
    dyw = gh.out * (gw.size + gw.span - 1) * g.o
    r = gh.out * gw.size * gw.k * g.o
    out = gh.out * gw.size * gh.k * g.c
    return max(dyw + r, r + out, out + gh.size * gw.size * g.c)


def use_rows(g) -> bool:
    """The ``rows`` input gradient is allowed: stride 1 along W, and scratch within twice the column
    matrix (R is KW× the size of dy, larger than the column matrix with few input maps and many
    output maps, where col2im is used instead)."""
    gh, gw = g.geo
    return gw.s == 1 and rows_scratch_per_image(g) <= 2 * gh.out * gw.out * gh.k * gw.k * g.c


def phases_inflation(g) -> float:
    """The multiply-adds of the ``phases`` dx over col2im's: each phase convolves dy over every
    pixel of its slice of dx, H·W/(sh·sw) pixels in all, where col2im spreads OH·OW. Near 1 with
    'same' padding; large for a valid conv whose output is small against its input."""
    gh, gw = g.geo
    return gh.size * gw.size / (gh.s * gw.s * gh.out * gw.out)


def phases_pays(g, numba: bool) -> bool:
    """The rule's choice of the ``phases`` input gradient for a strided layer. Per dy pixel, its
    columns of dy copy KH·KW·C_out values, times `phases_inflation`, where col2im adds KH·KW·C_in.
    So it pays from C_in ≥ r · inflation · C_out, with r = 2 against the compiled col2im adds
    (4 with a 3-tap kernel, whose phases are 1- and 2-tap convs; 1 with a 1×1 kernel, whose one
    phase is dy · Wᵀ itself) and r = 1/2 against NumPy's, and on outputs of at least 64 pixels,
    below which the per-phase overhead dominates (measured, bench/README.md). Where the ``rows``
    dx applies (stride 1 along W) the rule keeps it: phases was not measured against it."""
    gh, gw = g.geo
    if use_rows(g) or gh.out * gw.out < 64:
        return False
    taps = max(gh.k, gw.k)
    r = (1 if taps == 1 else 4 if taps <= 3 else 2) if numba else 0.5
    return g.c >= r * phases_inflation(g) * g.o


def dy_t_orientation_pays(k_rows: int, o: int) -> bool:
    """The rule's dW GEMM orientation: ``dy_t_cols`` ((dyᵀ copied) · cols) instead of colsᵀ · dy.
    Its copy of dy costs M·O against the GEMM's M·K·O, and it is the better-shaped product only
    with few output maps and many weight rows (K = kh·kw·c): K ≥ DT_MIN_K with O ≤ DT_MAX_O, or
    K ≥ LARGE_K with O ≤ LARGE_K_MAX_O. Elsewhere colsᵀ · dy won, by up to 30× with O = 256 and
    K ≤ 3 (the copy dominating), and by 2.1× on LeNet's C3 (bench/README.md)."""
    return k_rows >= DT_MIN_K and (o <= DT_MAX_O or (k_rows >= LARGE_K and o <= LARGE_K_MAX_O))


def _workspace_cap():
    """conv's workspace cap in force (`conv.get_max_workspace_bytes`)."""
    from .conv import get_max_workspace_bytes
    return get_max_workspace_bytes()


def _winograd_ok(g) -> bool:
    gh, gw = g.geo
    return (gh.k == gw.k == 3 and gh.s == gw.s == gh.d == gw.d == 1 and g.groups == 1
            and _workspace_cap() is None)


def _direct():
    """The compiled direct conv module when it can run, else None."""
    try:
        from . import _direct as d
    except ImportError:
        return None
    return d if d.available() else None


def candidates(g, dtype, train: bool = True) -> dict[str, list[str]]:
    """{part: [algorithm names]} allowed for shape `g` in `dtype`, the rule's choice first; `train`:
    the weight gradient follows (the blocked im2col's rule differs with and without it)."""
    dtype = np.dtype(dtype)
    numba = accel.numba_enabled() and dtype in accel._DTYPES and g.groups == 1
    if is_depthwise(g):
        return {"forward": ["depthwise"], "dw": ["depthwise"], "dx": ["depthwise"]}
    gh, gw = g.geo
    k_rows = gh.k * gw.k * (g.c // g.groups)
    cols_transposed = g.c == 1 and not is_pointwise(g)  # conv._im2col builds colsᵀ for one input map
    if g.groups > 1:
        dw = ["grouped"]
    elif dy_t_orientation_pays(k_rows, g.o) and not cols_transposed:
        dw = ["dy_t_cols", "cols_t_dy"]
    else:
        dw = ["cols_t_dy", "dy_t_cols"]
    if is_pointwise(g):
        return {"forward": ["pointwise"], "dw": dw, "dx": ["pointwise"]}
    forward = ["im2col"]
    wino = _winograd_ok(g)
    if wino:
        forward.append("winograd")
    if colblocks.applies(g) and _workspace_cap() is None:  # one block of scratch; the cap's chunks are by image
        first = colblocks.pays(g, dtype.itemsize, train)
        forward.insert(0 if first else len(forward), "blocks")
        dw.insert(0 if first and train else len(dw), "blocks")
    if taps.applies(g) and _workspace_cap() is None:  # its scratch is not chunked under a cap
        first = taps.pays(g)
        forward.insert(0 if first else len(forward), "taps")
        dw.insert(0 if first else len(dw), "taps")
    d = _direct() if g.groups == 1 and dtype in accel._DTYPES and g.c <= DIRECT_OFFER_C else None
    if d is not None:  # offered to the autotuner (and to use_conv_algorithm); the rule takes both where they pay
        first = d.pays(g.c, gh.k, gw.k, g.o)
        forward.insert(0 if first else len(forward), "direct")
        dw.insert(0 if first else len(dw), "direct")
    dx = []
    if use_rows(g):
        dx += ["rows_numba", "rows"] if numba else ["rows"]
    col2im = ["col2im_numba", "col2im"] if numba else ["col2im"]
    # one input map: NumPy's block adds (whole (N, OH, OW) planes) beat the compiled ones' 1-value runs
    dx += col2im[::-1] if g.c == 1 else col2im
    if gh.s > 1 or gw.s > 1:
        dx.insert(0 if phases_pays(g, numba) else len(dx), "phases")
    if numba and colblocks.applies(g) and _workspace_cap() is None:  # its blocks are of the whole batch
        first = dx[0] != "phases" and colblocks.dx_pays(g, dtype.itemsize, use_rows(g))  # phases, where it pays, stays
        dx.insert(0 if first else len(dx), "blocks_numba")
    if wino and max(gh.lo, gh.hi, gw.lo, gw.hi) <= 2:
        dx.append("winograd")
    return {"forward": forward, "dw": dw, "dx": dx}


def rule(g, dtype, train: bool = True) -> ConvAlgorithm:
    """The choice from the shape alone: each part's first candidate (`train`: as for `candidates`)."""
    c = candidates(g, dtype, train)
    f, w, x = c["forward"][0], c["dw"][0], c["dx"][0]
    if f == "pointwise":
        why = "rule: 1x1 stride 1 unpadded -> plain GEMM on x"
    elif f == "depthwise":
        why = "rule: depthwise (groups == C_in) -> einsum over the windows"
    elif f == "direct":
        why = "rule: direct compiled conv (few input and output maps: _direct.pays)"
    elif f == "taps":
        why = "rule: one GEMM per tap on shifted runs of the input (many input maps, few output maps: taps.pays)"
    elif f == "blocks":
        why = "rule: im2col + GEMM in cache-sized blocks (large column matrix: colblocks.pays)"
    else:
        why = "rule: im2col + GEMM"
    if w == "blocks":
        why += "; dW blocks (the columns rebuilt block by block: colblocks.pays)"
    elif w == "direct":
        why += "; dW direct (from the input's phase planes: _direct.pays)"
    elif w == "taps":
        why += "; dW taps (one GEMM per tap: taps.pays)"
    elif w in ("cols_t_dy", "dy_t_cols"):
        why += f"; dW {w} ({'many weight rows, few output maps' if w == 'dy_t_cols' else 'the default'}:"
        why += " dy_t_orientation_pays)"
    if x.startswith("rows"):
        why += f"; dx {x} (stride 1 along W, scratch within twice the columns)"
    elif x.startswith("col2im"):
        why += f"; dx {x}" + (" (one input map: NumPy's adds)" if x == "col2im" and "col2im_numba" in c["dx"] else "")
    elif x == "blocks_numba":
        why += "; dx blocks_numba (col2im in cache-sized blocks, compiled adds: colblocks.dx_pays)"
    elif x == "phases":
        why += "; dx phases (strided, C_in/C_out past phases_pays' bound: one stride-1 conv of dy per phase)"
    return ConvAlgorithm(f, w, x, why)


# --- forcing and switching ----------------------------------------------------------------------
_forced = threading.local()
_autotune_flag: list[bool | None] = [None]  # None: follow FEATUREMAPS_AUTOTUNE


def autotune_enabled() -> bool:
    """Autotuning is off unless `use_autotune(True)` or FEATUREMAPS_AUTOTUNE=1/true/yes/on (opt-in: two
    processes that tuned differently may differ in the last bits, which would break a bit-identical
    `--resume`)."""
    if _autotune_flag[0] is not None:
        return _autotune_flag[0]
    value = os.environ.get("FEATUREMAPS_AUTOTUNE", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"FEATUREMAPS_AUTOTUNE must be 0/false/no/off or 1/true/yes/on (or unset); received {value!r}")


def use_autotune(flag: bool | None) -> None:
    """Switch autotuning on or off for this process (None: follow FEATUREMAPS_AUTOTUNE again)."""
    if flag is not None and not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"use_autotune: flag must be True, False or None; received {flag!r}")
    _autotune_flag[0] = None if flag is None else bool(flag)
    _memo.clear()


@contextlib.contextmanager
def use_conv_algorithm(forward: str | None = None, dw: str | None = None, dx: str | None = None) -> Iterator[None]:
    """Context manager: conv layers inside it run these algorithms (None: the usual choice). A
    forced name a shape does not allow raises ValueError when that conv runs."""
    for part, name in (("forward", forward), ("dw", dw), ("dx", dx)):
        if name is not None and name not in NAMES[part]:
            raise ValueError(f"use_conv_algorithm: {part} must be one of {NAMES[part]} or None; received {name!r}")
    prev = getattr(_forced, "value", None)
    _forced.value = {"forward": forward, "dw": dw, "dx": dx}
    try:
        yield
    finally:
        _forced.value = prev


def _apply_forced(algo: ConvAlgorithm, allowed: dict) -> ConvAlgorithm:
    forced = getattr(_forced, "value", None)
    if not forced or not any(forced.values()):
        return algo
    parts = algo._asdict()
    for part in ("forward", "dw", "dx"):
        name = forced[part]
        if name is not None:
            if name not in allowed[part]:
                raise ValueError(f"use_conv_algorithm: {part}={name!r} is not available for this layer; "
                                 f"it allows {allowed[part]}")
            parts[part] = name
    parts["why"] = "forced by use_conv_algorithm"
    return ConvAlgorithm(**parts)


# --- choosing -------------------------------------------------------------------------------------
_memo: dict[tuple, ConvAlgorithm] = {}
_disk: list[dict | None] = [None]  # the cache file's entries, read once per process
_tune_lock = threading.RLock()


def shape_key(g, dtype, train: bool, allowed: dict) -> str:
    (gh, gw), dtype = g.geo, np.dtype(dtype)
    dims = (g.n, gh.size, gw.size, g.c, g.o, g.groups, gh.k, gw.k, gh.s, gw.s, gh.d, gw.d, gh.lo, gh.hi, gw.lo, gw.hi,
            gh.out, gw.out)
    algos = "|".join("+".join(allowed[p]) for p in ("forward", "dw", "dx"))
    return f"{','.join(map(str, dims))};{dtype.str};{'train' if train else 'infer'};{algos}"


def _describe(part: str, times: dict[str, float]) -> str:
    best = min(times, key=times.get)
    rest = ", ".join(f"{n} {1e3 * t:.3g} ms" for n, t in sorted(times.items(), key=lambda i: i[1]) if n != best)
    return f"{part} {best} {1e3 * times[best]:.3g} ms" + (f" vs {rest}" if rest else " (the only one)")


def _tune(g, dtype, train: bool, allowed: dict, trials) -> ConvAlgorithm:
    """Time every candidate of each part (`trials(g, dtype, train, allowed)` gives {part: {name: fn}})."""
    runs = trials(g, dtype, train, allowed)
    picked, notes = {}, []
    for part in ("forward", "dw", "dx"):
        fns = runs.get(part, {})
        if len(fns) > 1:
            times = autotune.measure(fns)
            picked[part] = min(times, key=times.get)
            notes.append(_describe(part, times))
        else:
            picked[part] = allowed[part][0]
    why = f"autotuned {datetime.date.today().isoformat()}: " + "; ".join(notes)
    return ConvAlgorithm(picked["forward"], picked["dw"], picked["dx"], why[:autotune.MAX_WHY])


def choose(g, dtype, train: bool, trials) -> ConvAlgorithm:
    """The algorithms for shape `g` (see the module docstring); `train`: the weight gradient follows."""
    allowed = candidates(g, dtype, train)
    gh, gw = g.geo
    macs = g.n * gh.out * gw.out * gh.k * gw.k * g.c // g.groups * g.o
    tune = autotune_enabled() and macs >= MIN_TUNE_MACS and any(len(v) > 1 for v in allowed.values())
    key = (g, np.dtype(dtype).str, train, tune, tuple(map(tuple, allowed.values())))
    algo = _memo.get(key)
    if algo is None:
        algo = _choose_new(g, dtype, train, allowed, tune, trials)
        if len(_memo) >= autotune.MAX_ENTRIES:
            _memo.clear()
        _memo[key] = algo
    return _apply_forced(algo, allowed)


def _choose_new(g, dtype, train: bool, allowed: dict, tune: bool, trials) -> ConvAlgorithm:
    if not tune:
        return rule(g, dtype, train)
    skey = shape_key(g, dtype, train, allowed)
    with _tune_lock:
        path = autotune.cache_path()
        if _disk[0] is None:
            _disk[0] = autotune.load(path, NAMES)
        hit = _disk[0].get(skey)
        if hit is not None and all(hit[p] in allowed[p] for p in ("forward", "dw", "dx")):
            return ConvAlgorithm(**hit)
        algo = _tune(g, dtype, train, allowed, trials)
        _disk[0][skey] = algo._asdict()
        while len(_disk[0]) > autotune.MAX_ENTRIES:
            del _disk[0][next(iter(_disk[0]))]  # the oldest, as in the file
        autotune.store(path, skey, algo._asdict(), NAMES)
    return algo


def clear() -> None:
    """Forget the choices made in this process (the next call of each shape chooses again, reading
    the cache file anew)."""
    with _tune_lock:
        _memo.clear()
        _disk[0] = None
