"""The conv autotuner's clock and its on-disk cache (`featuremaps.functional.conv_algos` decides with them).

Timing: `measure(candidates)` runs each candidate once untimed, then all of them in turn for
`REPEAT` rounds (one for slow ones), and keeps each one's fastest time: the minimum, with the
candidates interleaved, resists other jobs on a busy machine better than the median. The clock
is `CLOCK[0]` (time.perf_counter); tests put a fake clock there.

The cache is one JSON file, ``$FEATUREMAPS_CACHE/conv-algorithms.json`` (default
``~/.cache/featuremaps/``). It is data, never code: it is read as JSON only, at most
`MAX_FILE_BYTES`, and used only when its machine key (CPU model and flags, OS and architecture,
NumPy and its BLAS, numba, featuremaps, the OpenBLAS variables and thread counts) equals this
process's; every entry is validated (known algorithm names, a short reason) and an invalid one is
dropped, a file of another format or machine is ignored whole (and replaced at the next write).
It holds at most `MAX_ENTRIES` shapes, the oldest evicted first, and is replaced atomically
(`featuremaps._atomic.atomic_write`), so a reader sees the old file or the new one. A cache that
cannot be written (read-only home) only means tuning again in the next process.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import threading
import time
from pathlib import Path

__all__ = ["measure", "cache_path", "machine_key", "load", "store", "MAX_ENTRIES", "CLOCK"]

CLOCK = [time.perf_counter]
REPEAT = 3
SLOW_SECONDS = 0.25  # a candidate slower than this is timed once after its warm-up
MAX_ENTRIES = 4096
MAX_FILE_BYTES = 4 << 20
FORMAT = "featuremaps-conv-algorithms"
VERSION = 1
MAX_WHY = 400
_lock = threading.Lock()


def measure(candidates: dict) -> dict[str, float]:
    """{name: fastest seconds} for {name: zero-argument callable}: each is run once untimed, then
    the candidates take turns for `REPEAT` rounds (one round when a warm-up took over
    `SLOW_SECONDS`), so a burst of other work on the machine hits them alike; each keeps its
    fastest time."""
    clock, times = CLOCK[0], {}
    slow = False
    for fn in candidates.values():
        t0 = clock()
        fn()
        slow = slow or clock() - t0 > SLOW_SECONDS
    for _ in range(1 if slow else REPEAT):
        for name, fn in candidates.items():
            t0 = clock()
            fn()
            t = clock() - t0
            times[name] = min(times.get(name, t), t)
    return times


def cache_path() -> Path:
    """Where the cache lives: $FEATUREMAPS_CACHE/conv-algorithms.json, else under ~/.cache/featuremaps."""
    root = os.environ.get("FEATUREMAPS_CACHE", "").strip()
    base = Path(root) if root else Path.home() / ".cache" / "featuremaps"
    return base / "conv-algorithms.json"


def _cpu() -> str:
    """The CPU model and its flags from /proc/cpuinfo (Linux), else what `platform` knows."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return f"{model or platform.processor()} | {flags}"


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _blas() -> str:
    import numpy as np
    try:
        deps = np.show_config(mode="dicts").get("Build Dependencies", {})
        b = deps.get("blas", {})
        return f"{b.get('name')} {b.get('version')}"
    except Exception:  # another NumPy's config layout: the version alone still keys the cache
        return "unknown"


@functools.cache
def machine_key() -> dict[str, str]:
    """What a timing depends on besides the shape: the cache is valid only where all of it is equal."""
    import numpy as np

    from .. import __version__
    from .threads import THREADS
    env = {v: os.environ.get(v, "") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                "OMP_NUM_THREADS")}
    return {"cpu": _cpu(), "cores": str(os.cpu_count()), "os": f"{platform.system()} {platform.machine()}",
            "numpy": np.__version__, "blas": _blas(), "numba": _version("numba"), "featuremaps": __version__,
            "threads": str(THREADS), "env": json.dumps(env, sort_keys=True)}


def _valid_entry(value, names: dict) -> bool:
    if not isinstance(value, dict) or set(value) != {"forward", "dw", "dx", "why"}:
        return False
    if not all(isinstance(value[k], str) and value[k] in names[k] for k in ("forward", "dw", "dx")):
        return False
    return isinstance(value["why"], str) and len(value["why"]) <= MAX_WHY


def load(path: Path, names: dict) -> dict[str, dict]:
    """The cache's entries {shape key: {forward, dw, dx, why}}, oldest first; {} for a missing,
    oversized, unparsable, foreign (other format, version or machine) file. Invalid entries are
    dropped. `names` maps forward/dw/dx to the algorithm names allowed there."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return {}
    if doc.get("machine") != machine_key():
        return {}
    entries = doc.get("entries")
    if not isinstance(entries, list):
        return {}
    out: dict[str, dict] = {}
    for item in entries[-MAX_ENTRIES:]:
        if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and len(item[0]) <= 200
                and _valid_entry(item[1], names)):
            out.pop(item[0], None)
            out[item[0]] = item[1]
    return out


def store(path: Path, key: str, value: dict, names: dict) -> bool:
    """Add (or refresh) one entry, evicting the oldest beyond MAX_ENTRIES, and replace the file
    atomically. Returns False when it could not be written (the tuning then lasts this process)."""
    from .._atomic import atomic_write
    with _lock:
        entries = load(path, names)
        entries.pop(key, None)
        entries[key] = value
        items = list(entries.items())[-MAX_ENTRIES:]
        doc = {"format": FORMAT, "version": VERSION, "machine": machine_key(), "entries": [list(i) for i in items]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as tmp:
                tmp.write_text(json.dumps(doc), encoding="utf-8")
        except OSError:
            return False
    return True
