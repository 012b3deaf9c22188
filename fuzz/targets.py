"""One fuzz target per file loader, the contract each must keep, and the valid seed files.

The contract (issue 14): given any bytes as its file, a loader returns, or raises a ValueError, TypeError
or OSError subclass whose message names the file. Any other exception, or such an error that does not
name the file, is a violation. Targets run under small resource limits (`FUZZ_LIMITS`) so that an
unbounded allocation shows up as a limit error or an out-of-memory crash of the fuzzer, never as a slow
success. No atheris here: `fuzz/run.py` drives these with atheris, `tests/test_fuzz_cases.py` replays the
saved cases through the same `check`, and `tests/test_fuzz_structured.py` uses it with hypothesis.
"""
from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from featuremaps import limits

__all__ = ["ALLOWED", "FUZZ_LIMITS", "Target", "TARGETS", "ContractViolation", "check", "check_file", "outcome",
           "seeds", "as_file", "tiny_model"]

ALLOWED = (ValueError, TypeError, OSError)
FUZZ_LIMITS = {"max_tensor_bytes": 64 << 20, "max_tensor_elements": 16 << 20, "max_decompressed_bytes": 64 << 20,
               "max_graph_nodes": 10_000, "max_nesting_depth": 64}
SHAPE = (6, 6, 1)  # the tiny model's per-example input


class ContractViolation(AssertionError):
    """A loader broke the contract: another exception type, or an error that does not name the file."""


@dataclass(frozen=True)
class Target:
    suffix: str  # the file's name ends so (loaders tell kinds by content; some messages use the name)
    call: Callable[[Path], object]


def tiny_model():
    """Conv 3×3 (1→2) → ReLU → Flatten → Dense (32→2): a few hundred bytes in every format."""
    from featuremaps import nn
    rng = np.random.default_rng(0)
    return nn.Sequential([nn.Conv2D(1, 2, 3, rng=rng), nn.ReLU(), nn.Flatten(), nn.Dense(32, 2, rng=rng)],
                         input_shape=SHAPE)


def _idx(path):
    from featuremaps.data import read_idx
    return read_idx(path)


def _cifar(path):
    from featuremaps.data.cifar import read_cifar_batch
    return read_cifar_batch(path)


def _cifar_tar(path):
    from featuremaps.data.cifar import extract_cifar_archive
    return extract_cifar_archive(path, path.parent / "extracted")


def _image(path):
    from featuremaps.data.images import read_images
    return read_images(path, (28, 28, 1))


def _checkpoint(path):
    from featuremaps.checkpoint import load_checkpoint, read_checkpoint
    read_checkpoint(path)
    return load_checkpoint(path)


def _load_model(path):
    import featuremaps
    return featuremaps.load_model(path, input_shape=SHAPE)


def _keras(path):
    """`featuremaps.keras.load` itself (load_model's sniffing of the file has the load_model target)."""
    import featuremaps.keras
    return featuremaps.keras.load(path)


def _onnx_run(path):
    """`featuremaps.onnx.load` through load_model, then the model run on zeros of its input shape."""
    import featuremaps
    model = featuremaps.load_model(path, input_shape=SHAPE)
    try:
        model(np.zeros((1, *SHAPE), np.float32))
    except ALLOWED as e:  # a graph that cannot run on this input: the message names the node; add the file
        raise ValueError(f"{path}: running the loaded model failed: {type(e).__name__}: {e}") from None
    return model


def _safetensors(path):
    from featuremaps.torch import load_state_dict
    return load_state_dict(tiny_model(), path)


TARGETS: dict[str, Target] = {
    "idx": Target(".idx", _idx),
    "idx_gzip": Target(".idx.gz", _idx),
    "cifar": Target(".bin", _cifar),
    "cifar_tar": Target(".tar.gz", _cifar_tar),
    "image": Target(".png", _image),
    "checkpoint": Target(".npz", _checkpoint),
    "load_model": Target(".model", _load_model),
    "onnx": Target(".onnx", _onnx_run),
    "keras": Target(".keras", _keras),
    "keras_h5": Target(".h5", _keras),
    "safetensors": Target(".safetensors", _safetensors),
}


def outcome(name: str, path: Path) -> tuple[str, str]:
    """Run target `name` on the file `path` under FUZZ_LIMITS: ("ok", "") or (the allowed error's type
    name, its message). Raises ContractViolation for anything else (the original exception chained)."""
    with limits.override(**FUZZ_LIMITS):
        try:
            TARGETS[name].call(path)
        except ALLOWED as e:
            if path.name not in str(e):
                raise ContractViolation(f"{name}: {type(e).__name__} does not name the file: {e}") from e
            return type(e).__name__, str(e)
        except Exception as e:  # noqa: BLE001 - the point: any other type is the bug
            raise ContractViolation(f"{name}: {type(e).__name__}: {e}") from e
    return "ok", ""


def check_file(name: str, path: Path) -> str:
    """`outcome` without the message: "ok", or the allowed error's type name."""
    return outcome(name, path)[0]


def check(name: str, data: bytes, workdir: Path) -> str:
    """`check_file` on `data` written as the target's file in `workdir` (an existing directory)."""
    path = Path(workdir) / f"case{TARGETS[name].suffix}"
    path.write_bytes(as_file(name, data))
    return check_file(name, path)


# --- valid seed files ----------------------------------------------------------------------------
def _idx_bytes() -> bytes:
    from featuremaps.data import write_idx
    buf = Path(_tmp()) / "s.idx"
    write_idx(buf, np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))
    return buf.read_bytes()


def _tmp() -> str:
    """A fresh directory, removed when the process exits."""
    import atexit
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="fm-seed-")
    atexit.register(shutil.rmtree, d, True)
    return d


def _cifar_bytes() -> bytes:
    from featuremaps.data.cifar import write_cifar_batch
    p = Path(_tmp()) / "b.bin"
    write_cifar_batch(p, np.zeros((1, 32, 32, 3), np.uint8), np.array([3]))
    return p.read_bytes()


def _cifar_tar_bytes() -> bytes:
    from featuremaps.data.cifar import CIFAR10_DIR, CIFAR10_FILES
    one = _cifar_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in CIFAR10_FILES["train"] + CIFAR10_FILES["test"]:
            info = tarfile.TarInfo(f"{CIFAR10_DIR}/{f}")
            info.size = len(one)
            tar.addfile(info, io.BytesIO(one))
    return buf.getvalue()


def _png_bytes() -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)).save(buf, "PNG")
    return buf.getvalue()


def _checkpoint_bytes() -> bytes:
    from featuremaps.checkpoint import save_checkpoint
    p = save_checkpoint(Path(_tmp()) / "c.npz", tiny_model(), epoch=1)
    return p.read_bytes()


def _onnx_bytes() -> bytes:
    from featuremaps.onnx import export
    p = export(tiny_model(), Path(_tmp()) / "m.onnx", input_shape=SHAPE)
    return p.read_bytes()


def _keras_bytes() -> bytes:
    from featuremaps.keras import export
    return export(tiny_model(), Path(_tmp()) / "m.keras").read_bytes()


def _keras_h5_bytes() -> bytes:
    """A legacy .h5 of the same model, written by Keras itself (the seed generator needs keras)."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    inp = keras.Input(SHAPE, name="x")
    out = keras.layers.Dense(2, name="d")(keras.layers.Flatten(name="f")(keras.layers.Conv2D(2, 3, name="c")(inp)))
    p = Path(_tmp()) / "m.h5"
    keras.Model(inp, out).save(p)
    return p.read_bytes()


def _safetensors_bytes() -> bytes:
    from featuremaps.torch import export_state_dict
    return export_state_dict(tiny_model(), Path(_tmp()) / "w.safetensors").read_bytes()


def seeds() -> dict[str, list[bytes]]:
    """Valid files for every target (each loads: check() returns "ok"), plus the others' for load_model."""
    ckpt, onnx_, keras_, h5, st = (_checkpoint_bytes(), _onnx_bytes(), _keras_bytes(), _keras_h5_bytes(),
                                   _safetensors_bytes())
    idx = _idx_bytes()
    return {"idx": [idx], "idx_gzip": [idx], "cifar": [_cifar_bytes()], "cifar_tar": [_cifar_tar_bytes()],
            "image": [_png_bytes()], "checkpoint": [ckpt], "load_model": [ckpt, onnx_, keras_, h5],
            "onnx": [onnx_], "keras": [keras_], "keras_h5": [h5], "safetensors": [st]}


def as_file(name: str, data: bytes) -> bytes:
    """What the fuzzer's bytes become before they are written: idx_gzip compresses them (so mutations act
    on the IDX structure behind the gzip layer); every other target writes them as they are."""
    return gzip.compress(data, mtime=0) if name == "idx_gzip" else data
