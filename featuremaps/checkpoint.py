"""Checkpoints: one self-describing `.npz` file per save, written atomically.

Format (format_version 1). A checkpoint is a NumPy `.npz` archive (`np.savez`, read back with
`allow_pickle=False`; nothing is ever unpickled) with these entries:

- `model.<name>`: every parameter and buffer of the model, by its dotted `state_dict` name
  (`model.conv1.weight`, `model.bn1.running_mean`, ...).
- `optim.<key>`: the optimiser's `state_dict()` arrays (`optim.lr`, `optim.step`,
  `optim.momentum_buffer.0`, `optim.exp_avg.3`, ...); absent when no optimiser was saved.
- `meta`: a uint8 array holding one UTF-8 JSON document (kept inside the archive so the weights
  and their description can never drift apart):

      {"format": "featuremaps-checkpoint", "format_version": 1, "featuremaps_version": "0.1.0",
       "created": "<ISO-8601 UTC>",
       "epoch": <completed epochs>, "step": <completed steps of the next epoch, 0 at a boundary>,
       "model": <model.get_config()>, "optimizer": <optimizer.get_config()> | null,
       ...whatever the caller passes in `meta` (fit stores: schedule, seed, dataset,
       normalization, batch_size, epochs, augment, classes, history of the partial epoch)}

Saving writes a temporary file in the target directory, copies the current checkpoint to
`<stem>.prev.npz` (so the last good one survives), fsyncs the new file and `os.replace`s it into
place (`featuremaps._atomic.atomic_write`, as for every file this package replaces), so a crash or
Ctrl-C mid-write leaves the previous checkpoint intact. A current checkpoint that is not
readable (`unreadable_reason`: every zip entry's CRC and the meta document are checked) is never
moved to `.prev.npz`, where it would replace the last good copy: it is kept as
`<stem>.corrupt-<UTC time>.npz` instead and `.prev.npz` is left as it was. A run directory
(RUN_DIR) holds `checkpoint.npz`, `checkpoint.prev.npz`, `metrics.csv`, `metrics.json`,
`curves.png` and `config.json`; every function here accepts the run directory or the file.

Recovery: when `checkpoint.npz` is unreadable, reading it fails with a message that names
`checkpoint.prev.npz` (and whether it is intact); give that file instead of the run directory
(`featuremaps train --resume RUN/checkpoint.prev.npz` continues the run from it).

Reading: `read_checkpoint` reads a file once, checks it and returns a `Checkpoint` (meta, model
state, optimiser state). `load_checkpoint`, `restore` and `featuremaps.train.fit(resume=...)` take
either a path or such a `Checkpoint`, so a caller that has read one (the CLI's `--resume` does, to
see the stored settings) passes it on and the file is not read again.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import limits
from ._atomic import atomic_write

__all__ = ["CheckpointError", "Checkpoint", "FORMAT", "FORMAT_VERSION", "CHECKPOINT_NAME", "save_checkpoint",
           "read_checkpoint", "as_checkpoint", "load_checkpoint", "load_model", "restore", "resolve",
           "previous_path", "unreadable_reason"]

FORMAT = "featuremaps-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"
_MODEL, _OPTIM, _META = "model.", "optim.", "meta"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model/optimiser it is loaded into."""


class Checkpoint(NamedTuple):
    """A checkpoint file as `read_checkpoint` read and checked it: the meta document (with the
    file's `"path"` added) and the state arrays by name. A tuple, so `meta, model_state,
    optim_state = read_checkpoint(path)` unpacks it; pass it where a path is accepted to use it
    without reading the file again."""
    meta: dict
    model_state: dict[str, np.ndarray]
    optim_state: dict[str, np.ndarray]

    @property
    def path(self) -> Path:
        """The file it was read from."""
        return Path(self.meta["path"])

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return int(self.meta["epoch"])

    @property
    def step(self) -> int:
        """Completed steps of the epoch after them (0 at an epoch boundary)."""
        return int(self.meta.get("step", 0))


def resolve(path: str | os.PathLike) -> Path:
    """The checkpoint file for `path`: the file itself, or `<dir>/checkpoint.npz` for a run directory."""
    p = Path(path)
    if p.is_dir():
        f = p / CHECKPOINT_NAME
        if not f.exists():
            raise CheckpointError(f"{p} is a directory without a {CHECKPOINT_NAME} (not a run directory?)")
        return f
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    return p


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before `path` is kept: `checkpoint.npz` → `checkpoint.prev.npz`."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    return p.with_name(p.name[:-4] + ".prev.npz" if p.name.endswith(".npz") else p.name + ".prev")


def _version() -> str:
    from . import __version__
    return __version__


def _copy_atomic(path: Path, dest: Path) -> None:
    """Copy `path` to `dest` (a name in the same directory) atomically, by a hard link when
    possible, leaving `path` in place."""
    with atomic_write(dest) as tmp:
        tmp.unlink()
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)


def _inspect(path: Path) -> tuple[dict | None, str | None]:
    """`(meta, None)` for a readable checkpoint file, else `(None, why not)`. Reads the file once:
    `testzip` checks every entry's CRC (a truncated file fails on its central directory, a flipped
    bit on its entry's CRC) without building the arrays, then the meta entry is parsed."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                return None, f"its entry {bad} fails the zip CRC check"
            if _META + ".npy" not in zf.namelist():
                return None, f"it has no '{_META}' entry"
            info = zf.getinfo(_META + ".npy")
            with zf.open(info) as f:
                raw = limits.read_npy(f, info.file_size, f"{path}: entry {info.filename!r}", CheckpointError)
        meta = limits.loads_json(raw.tobytes(), f"{path}: its '{_META}' entry", CheckpointError)
    except Exception as e:  # noqa: BLE001 - any failure to read means "unreadable", whatever raised it
        return None, str(e) or type(e).__name__
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None, "its meta entry is not a featuremaps checkpoint's"
    return meta, None


def unreadable_reason(path: str | os.PathLike) -> str | None:
    """Why the checkpoint file `path` cannot be read (truncated, a failed CRC, no valid meta), or
    None when it is intact. Costs one read of the file; no arrays are built."""
    return _inspect(Path(path))[1]


def _aside_path(path: Path) -> Path:
    """`checkpoint.npz` → `checkpoint.corrupt-20261201T120000Z.npz` (a free name)."""
    stem = path.name[:-4] if path.name.endswith(".npz") else path.name
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside, i = path.with_name(f"{stem}.corrupt-{stamp}.npz"), 2
    while aside.exists():
        aside, i = path.with_name(f"{stem}.corrupt-{stamp}-{i}.npz"), i + 1
    return aside


def _rotate(path: Path, report) -> None:
    """Before `path` is replaced: keep it as `.prev` if it is readable, else set it aside under a
    `.corrupt-<time>` name and leave `.prev` (the last good copy) alone."""
    reason = unreadable_reason(path)
    if reason is None:
        _copy_atomic(path, previous_path(path))
        return
    aside, prev = _aside_path(path), previous_path(path)
    _copy_atomic(path, aside)
    kept = f"; {prev} is left as it was" if prev.exists() else ""
    msg = (f"note: {path} was not a readable checkpoint ({reason}), so it did not replace the previous one: "
           f"it is kept as {aside}{kept}")
    if report is not None:
        report(msg)
    else:
        warnings.warn(msg, stacklevel=4)


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], keep_previous: bool, report=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz"
            np.savez(f, **arrays)
        if keep_previous and path.exists():
            _rotate(path, report)


def write_json_atomic(path: str | os.PathLike, doc: Any) -> None:
    """Write `doc` as indented JSON to `path` atomically (`featuremaps._atomic.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def save_checkpoint(path: str | os.PathLike, model, optimizer=None, *, epoch: int, step: int = 0,
                    meta: dict | None = None, keep_previous: bool = True, report=None) -> Path:
    """Save `model` (and `optimizer`'s state) to `path` (a file, or a run directory → its
    `checkpoint.npz`) atomically; the checkpoint it replaces is kept as `<stem>.prev.npz`, unless
    it is unreadable: then it is kept as `<stem>.corrupt-<time>.npz` and `.prev.npz` is untouched,
    and `report(text)` (default: `warnings.warn`) is told so.

    `epoch` is the number of completed epochs and `step` the completed steps of the epoch after
    them (0 at an epoch boundary). `meta` is merged into the JSON document (see the module docstring).
    Returns the file written.
    """
    p = Path(path)
    if p.is_dir() or (not p.suffix and not p.exists()):
        p = p / CHECKPOINT_NAME
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "featuremaps_version": _version(),
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "epoch": int(epoch), "step": int(step), "model": model.get_config(),
           "optimizer": optimizer.get_config() if optimizer is not None else None}
    for k, v in (meta or {}).items():
        if k in ("format", "format_version", "model", "optimizer", "epoch", "step"):
            raise ValueError(f"save_checkpoint: meta must not set the reserved key {k!r}")
        doc[k] = v
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_checkpoint: meta must be JSON-able (finite numbers, str, lists, dicts): {e}") from None
    arrays = {_META: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    arrays.update((_MODEL + k, np.asarray(v)) for k, v in model.state_dict().items())
    if optimizer is not None:
        arrays.update((_OPTIM + k, np.asarray(v)) for k, v in optimizer.state_dict().items())
    _write_npz_atomic(p, arrays, keep_previous, report)
    return p


def _recovery_hint(p: Path, given) -> str:
    """What to do when `p` (reached from the argument `given`) is unreadable: its `.prev` file."""
    prev = previous_path(p)
    if prev == p or not prev.exists():
        return ""
    meta, reason = _inspect(prev)
    if meta is None:
        return f" The previous checkpoint, {prev}, is not readable either ({reason})."
    at = f"epoch {meta.get('epoch')}" + (f", step {meta['step']}" if meta.get("step") else "")
    how = (f"featuremaps train --resume {shlex.quote(str(prev))}" if meta.get("cli")  # written by the CLI
           else "resume from that file")
    return (f" The previous checkpoint, {prev} (saved after {at}), is intact: give it instead of {given}; "
            f"to continue training from it: {how}")


def _read_arrays(p: Path) -> dict[str, np.ndarray]:
    """Every entry of the archive `p`, read in full (the one place a checkpoint's arrays are read). Each
    entry must be an `.npy` array; its header is checked (a numeric dtype, a shape within
    `featuremaps.limits`, exactly the bytes that shape needs) before the array is allocated."""
    out = {}
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy") or info.is_dir():
                raise ValueError(f"its entry {info.filename!r} is not an .npy array")
            limits.check("max_decompressed_bytes", info.file_size, f"{p}: entry {info.filename!r}", CheckpointError)
            with zf.open(info) as f:
                out[info.filename[:-4]] = limits.read_npy(f, info.file_size, f"{p}: entry {info.filename!r}",
                                                          CheckpointError)
    return out


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint file without building anything: a `Checkpoint`, which unpacks
    as `(meta, model_state, optim_state)`.

    Every array is read in full here, so truncation or corruption (zip CRC errors) surfaces now as a
    CheckpointError, never later halfway through loading.
    """
    p = resolve(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file")
    try:
        arrays = _read_arrays(p)
    except CheckpointError as e:  # a limit, a refused dtype or a size mismatch: its message says which
        raise CheckpointError(str(e) + "." + _recovery_hint(p, path)) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error, RuntimeError,
            NotImplementedError) as e:
        raise CheckpointError(f"{p} is not a readable checkpoint (truncated or corrupt: {e})."
                              + _recovery_hint(p, path)) from None
    if _META not in arrays:
        raise CheckpointError(f"{p} is an .npz archive but not a featuremaps checkpoint (no '{_META}' entry)")
    try:
        meta = limits.loads_json(arrays.pop(_META).tobytes(), f"{p}: its '{_META}' entry", CheckpointError)
    except CheckpointError as e:
        raise CheckpointError(f"{e}." + _recovery_hint(p, path)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{p}: not a featuremaps checkpoint (format is {found!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format version {version!r} is newer than this featuremaps "
                              f"({_version()}) reads (up to {FORMAT_VERSION}); upgrade featuremaps")
    if not isinstance(meta.get("model"), dict) or "class" not in meta["model"]:
        raise CheckpointError(f"{p}: the checkpoint's meta has no model config")
    for key in ("epoch", "step"):
        if key in meta and (isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 0):
            raise CheckpointError(f"{p}: the checkpoint's meta has {key} = {meta[key]!r}; expected a count >= 0")
    model_sd = {k[len(_MODEL):]: v for k, v in arrays.items() if k.startswith(_MODEL)}
    optim_sd = {k[len(_OPTIM):]: v for k, v in arrays.items() if k.startswith(_OPTIM)}
    meta["path"] = str(p)
    return Checkpoint(meta, model_sd, optim_sd)


def as_checkpoint(source: str | os.PathLike | Checkpoint) -> Checkpoint:
    """`source` itself if it is a `Checkpoint` already read, else `read_checkpoint(source)`."""
    return source if isinstance(source, Checkpoint) else read_checkpoint(source)


def _build(meta: dict, model_sd: dict, where: str):
    from .nn import from_config
    try:
        model = from_config(meta["model"])
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{where}: cannot rebuild the model from its stored config ({e})") from None
    try:
        model.load_state_dict(model_sd)
    except ValueError as e:
        raise CheckpointError(f"{where}: the stored weights do not fit the stored model config: {e}") from None
    return model


def load_checkpoint(path: str | os.PathLike | Checkpoint):
    """`(model, meta, optimizer_state)`: the model rebuilt from its config with the stored weights
    (in training mode), the meta JSON document (plus `"path"`), and the optimiser's state arrays
    (`{}` when none was saved) for `Optimizer.load_state_dict`. `path` may be a `Checkpoint`
    already read."""
    meta, model_sd, optim_sd = as_checkpoint(path)
    return _build(meta, model_sd, meta["path"]), meta, optim_sd


def load_model(path: str | os.PathLike):
    """The model stored in a checkpoint (file or run directory), in eval mode, ready for inference.
    `featuremaps.load_model` also opens ONNX files, telling the kinds apart by content."""
    model, _, _ = load_checkpoint(path)
    return model.eval()


def _canon(obj):
    return json.loads(json.dumps(obj))


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: checkpoint {va!r:.80} vs given {vb!r:.80}")
    return out


def _check_optimizer(where: str, meta: dict, optim_sd: dict, optimizer) -> None:
    """That the stored optimiser state fits `optimizer` (kind, keys, shapes); changes nothing."""
    stored = meta.get("optimizer") or {}
    if not optim_sd:
        raise CheckpointError(f"{where} holds no optimizer state to resume from")
    if stored.get("name") != optimizer.name:
        raise CheckpointError(f"{where} was trained with optimizer {stored.get('name')!r}; "
                              f"the optimizer given is {optimizer.name!r}")
    try:
        optimizer.check_state_dict(optim_sd)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}. Nothing was loaded.") from None


def restore(path: str | os.PathLike | Checkpoint, model, optimizer=None) -> dict:
    """Load a checkpoint (a path, or a `Checkpoint` already read) into an existing `model` (and
    `optimizer`), e.g. to resume training.

    Checks first that the stored model config equals `model.get_config()` and that the optimiser
    is of the same kind with state that fits; then `model.load_state_dict`, which checks every
    weight's name and shape before it assigns any (a mismatch lists them all), and only then the
    optimiser's state. On any mismatch nothing is loaded. Returns the meta document.
    """
    meta, model_sd, optim_sd = as_checkpoint(path)
    where = meta["path"]
    stored, given = _canon(meta["model"]), _canon(model.get_config())
    if stored != given:
        diff = _config_diff(stored, given)
        raise CheckpointError(f"{where} holds a different model ({stored.get('class')}) than the one given "
                              f"({given.get('class')}): " + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else ""))
    if optimizer is not None:
        _check_optimizer(where, meta, optim_sd, optimizer)
    try:
        model.load_state_dict(model_sd)
    except ValueError as e:
        raise CheckpointError(f"{where}: the stored weights do not fit the model: {e}") from None
    if optimizer is not None:
        optimizer.load_state_dict(optim_sd)
    return meta
