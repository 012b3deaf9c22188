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

Saving writes a temporary file in the target directory, fsyncs it, moves the current checkpoint
to `<stem>.prev.npz` (so the last good one survives) and `os.replace`s the new one into place, so
a crash or Ctrl-C mid-write leaves the previous checkpoint intact. A run directory (RUN_DIR) holds
`checkpoint.npz`, `checkpoint.prev.npz`, `metrics.csv`, `metrics.json`, `curves.png` and
`config.json`; every function here accepts the run directory or the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "CHECKPOINT_NAME", "save_checkpoint",
           "read_checkpoint", "load_checkpoint", "load_model", "restore", "resolve", "previous_path"]

FORMAT = "featuremaps-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"
_MODEL, _OPTIM, _META = "model.", "optim.", "meta"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model/optimiser it is loaded into."""


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


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _keep_previous(path: Path) -> None:
    """Copy `path` to its `.prev` name atomically (hard link when possible), leaving `path` in place."""
    prev = previous_path(path)
    fd, tmp = tempfile.mkstemp(prefix=prev.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)
        os.replace(tmp, prev)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], keep_previous: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, doc: Any) -> None:
    """Write `doc` as indented JSON to `path` via a temporary file and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path: str | os.PathLike, model, optimizer=None, *, epoch: int, step: int = 0,
                    meta: dict | None = None, keep_previous: bool = True) -> Path:
    """Save `model` (and `optimizer`'s state) to `path` (a file, or a run directory → its
    `checkpoint.npz`) atomically; the checkpoint it replaces is kept as `<stem>.prev.npz`.

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
    _write_npz_atomic(p, arrays, keep_previous)
    return p


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Read and check a checkpoint file without building anything: `(meta, model_state, optim_state)`.

    Every array is read in full here, so truncation or corruption (zip CRC errors) surfaces now as a
    CheckpointError, never later halfway through loading.
    """
    p = resolve(path)
    prev = previous_path(p)
    hint = f" The previous checkpoint is {prev}." if prev.exists() and prev != p else ""
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("it is a single .npy array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error, RuntimeError) as e:
        raise CheckpointError(f"{p} is not a readable checkpoint (truncated or corrupt: {e}).{hint}") from None
    if _META not in arrays:
        raise CheckpointError(f"{p} is an .npz archive but not a featuremaps checkpoint (no '{_META}' entry)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p}: its '{_META}' entry is not valid JSON ({e}).{hint}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a featuremaps checkpoint (format is {meta.get('format') if isinstance(meta, dict) else meta!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format version {version!r} is newer than this featuremaps "
                              f"({_version()}) reads (up to {FORMAT_VERSION}); upgrade featuremaps")
    if not isinstance(meta.get("model"), dict) or "class" not in meta["model"]:
        raise CheckpointError(f"{p}: the checkpoint's meta has no model config")
    model_sd = {k[len(_MODEL):]: v for k, v in arrays.items() if k.startswith(_MODEL)}
    optim_sd = {k[len(_OPTIM):]: v for k, v in arrays.items() if k.startswith(_OPTIM)}
    meta["path"] = str(p)
    return meta, model_sd, optim_sd


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


def load_checkpoint(path: str | os.PathLike):
    """`(model, meta, optimizer_state)`: the model rebuilt from its config with the stored weights
    (in training mode), the meta JSON document (plus `"path"`), and the optimiser's state arrays
    (`{}` when none was saved) for `Optimizer.load_state_dict`."""
    meta, model_sd, optim_sd = read_checkpoint(path)
    return _build(meta, model_sd, meta["path"]), meta, optim_sd


def load_model(path: str | os.PathLike):
    """The model stored in a checkpoint (file or run directory), in eval mode, ready for inference."""
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


def restore(path: str | os.PathLike, model, optimizer=None) -> dict:
    """Load a checkpoint into an existing `model` (and `optimizer`), e.g. to resume training.

    Checks first that the stored model config equals `model.get_config()`, that the stored weights
    and optimiser state fit (keys and shapes, listed by name) and that the optimiser is of the same
    kind; only then assigns anything. Returns the meta document.
    """
    meta, model_sd, optim_sd = read_checkpoint(path)
    where = meta["path"]
    stored, given = _canon(meta["model"]), _canon(model.get_config())
    if stored != given:
        diff = _config_diff(stored, given)
        raise CheckpointError(f"{where} holds a different model ({stored.get('class')}) than the one given "
                              f"({given.get('class')}): " + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else ""))
    current = {k: np.shape(v) for k, v in model.state_dict().items()}
    missing = [k for k in current if k not in model_sd]
    unexpected = [k for k in model_sd if k not in current]
    wrong = [f"{k} (expected {current[k]}, stored {model_sd[k].shape})"
             for k in current if k in model_sd and model_sd[k].shape != current[k]]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{where}: the stored weights do not fit the model; missing: {missing}; "
                              f"unexpected: {unexpected}; wrong shape: {wrong}. Nothing was loaded.")
    if optimizer is not None:
        stored_opt = meta.get("optimizer") or {}
        if not optim_sd:
            raise CheckpointError(f"{where} holds no optimizer state to resume from")
        if stored_opt.get("name") != optimizer.name:
            raise CheckpointError(f"{where} was trained with optimizer {stored_opt.get('name')!r}; "
                                  f"the optimizer given is {optimizer.name!r}")
        try:
            optimizer.check_state_dict(optim_sd)
        except ValueError as e:
            raise CheckpointError(f"{where}: {e}. Nothing was loaded.") from None
    model.load_state_dict(model_sd)
    if optimizer is not None:
        optimizer.load_state_dict(optim_sd)
    return meta
