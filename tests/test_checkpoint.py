"""Checkpoints: round trip, atomic replacement (a failed write keeps the previous file valid),
truncated/corrupt files, wrong-model and wrong-optimizer loads (clear errors, nothing loaded)."""
import json
import os

import numpy as np
import pytest

from featuremaps import Tensor, checkpoint as ckpt, nn, no_grad, optim


def small_model(seed=0, width=4):
    rng = np.random.default_rng(seed)
    return nn.Sequential([("conv", nn.Conv2D(1, width, 3, stride=2, rng=rng)), ("act", nn.ReLU()),
                          ("bn", nn.BatchNorm2D(width)), ("flatten", nn.Flatten()),
                          ("fc", nn.Dense(width * 3 * 3, 10, rng=rng))], input_shape=(8, 8, 1))


def trained(seed=0):
    """A model and SGD-with-momentum optimiser after two steps (so buffers are non-trivial)."""
    model = small_model(seed)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = np.random.default_rng(seed + 1).standard_normal((5, 8, 8, 1)).astype(np.float32)
    for _ in range(2):
        opt.zero_grad()
        out = model(Tensor(x))
        (out * out).mean().backward()
        opt.step()
    return model, opt, x


def outputs(model, x):
    model.eval()
    with no_grad():
        return model(Tensor(x)).data


def test_round_trip(tmp_path):
    model, opt, x = trained()
    path = ckpt.save_checkpoint(tmp_path, model, opt, epoch=3, step=2, meta={"seed": 7, "dataset": "sample"})
    assert path == tmp_path / "checkpoint.npz"
    loaded, meta, opt_state = ckpt.load_checkpoint(tmp_path)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    assert meta["epoch"] == 3 and meta["step"] == 2 and meta["seed"] == 7 and meta["dataset"] == "sample"
    assert meta["format"] == ckpt.FORMAT and meta["format_version"] == ckpt.FORMAT_VERSION
    assert meta["model"] == json.loads(json.dumps(model.get_config()))
    assert meta["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(opt_state[k], v)
    # the file is a plain npz readable without pickle, with the documented entry names
    with np.load(path, allow_pickle=False) as z:
        names = set(z.files)
    assert {"meta", "model.conv.weight", "model.bn.running_mean", "optim.step", "optim.momentum_buffer.0"} <= names
    assert not ckpt.load_model(path).training


def test_restore_into_existing_model_and_optimizer(tmp_path):
    model, opt, x = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    fresh = small_model(seed=5)
    fresh_opt = optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    meta = ckpt.restore(tmp_path, fresh, fresh_opt)
    assert meta["epoch"] == 1
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x))
    np.testing.assert_array_equal(fresh_opt.state["momentum_buffer"][0], opt.state["momentum_buffer"][0])


def test_previous_checkpoint_is_kept(tmp_path):
    model, opt, _ = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=2)
    assert ckpt.read_checkpoint(tmp_path)[0]["epoch"] == 2
    assert ckpt.read_checkpoint(tmp_path / "checkpoint.prev.npz")[0]["epoch"] == 1


def test_failure_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, x = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    before = sorted(os.listdir(tmp_path))

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.np, "savez", broken_savez)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(tmp_path, small_model(9), opt, epoch=2)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == before  # no temp file left, nothing renamed
    loaded, meta, _ = ckpt.load_checkpoint(tmp_path)
    assert meta["epoch"] == 1
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))


def test_interrupt_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, _ = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    real_replace = os.replace

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, model, opt, epoch=2)
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    assert ckpt.read_checkpoint(tmp_path)[0]["epoch"] == 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


@pytest.mark.parametrize("cut", [0, 10, 0.5, -30])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, cut):
    model, opt, _ = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=2)
    path = tmp_path / "checkpoint.npz"
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) + cut)
    path.write_bytes(data[:n])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt") as e:
        ckpt.load_checkpoint(path)
    assert "checkpoint.prev.npz" in str(e.value)  # points at the last good one


def test_corrupted_bytes_are_detected(tmp_path):
    model, opt, _ = trained()
    path = ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    data = bytearray(path.read_bytes())
    with np.load(path) as z:  # flip bytes inside the stored weights (zip CRC catches it)
        assert "model.fc.weight" in z.files
    mid = data.find(b"model.fc.weight.npy") + 200
    data[mid:mid + 8] = bytes(255 - b for b in data[mid:mid + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.read_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(ckpt.CheckpointError, match="without a checkpoint.npz"):
        ckpt.load_checkpoint(tmp_path)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="not a featuremaps checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(tmp_path / "text.npz")


def test_newer_format_version_is_refused(tmp_path, monkeypatch):
    model, _, _ = trained()
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 99)
    path = ckpt.save_checkpoint(tmp_path, model, epoch=0)
    monkeypatch.undo()
    with pytest.raises(ckpt.CheckpointError, match="format version 99 is newer"):
        ckpt.load_checkpoint(path)


def test_wrong_model_is_refused_and_nothing_loaded(tmp_path):
    model, opt, x = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    other = small_model(seed=3, width=6)
    before = other.state_dict()
    with pytest.raises(ckpt.CheckpointError, match="different model") as e:
        ckpt.restore(tmp_path, other, optim.SGD(other.parameters(), lr=0.1, momentum=0.9))
    assert "out_channels" in str(e.value)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_stored_weights_that_do_not_fit_their_config_list_keys(tmp_path):
    model, opt, _ = trained()
    path = ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    del arrays["model.fc.bias"]
    arrays["model.conv.weight"] = np.zeros((5, 5, 1, 4), np.float32)
    arrays["model.extra"] = np.zeros(2, np.float32)
    np.savez(path, **arrays)
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint(path)
    msg = str(e.value)
    assert "fc.bias" in msg and "conv.weight" in msg and "extra" in msg
    fresh = small_model()
    before = fresh.state_dict()
    with pytest.raises(ckpt.CheckpointError, match="Nothing was loaded"):
        ckpt.restore(path, fresh)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_wrong_optimizer_is_refused_and_nothing_loaded(tmp_path):
    model, opt, _ = trained()
    ckpt.save_checkpoint(tmp_path, model, opt, epoch=1)
    fresh = small_model(seed=4)
    before = fresh.state_dict()
    with pytest.raises(ckpt.CheckpointError, match="optimizer 'sgd'"):
        ckpt.restore(tmp_path, fresh, optim.Adam(fresh.parameters()))
    plain = optim.SGD(fresh.parameters(), lr=0.1)  # no momentum: no buffers
    with pytest.raises(ckpt.CheckpointError, match="unexpected: momentum_buffer.0"):
        ckpt.restore(tmp_path, fresh, plain)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    ckpt.save_checkpoint(tmp_path / "noopt", model, epoch=1)
    with pytest.raises(ckpt.CheckpointError, match="no optimizer state"):
        ckpt.restore(tmp_path / "noopt", fresh, optim.SGD(fresh.parameters(), lr=0.1))


def test_meta_must_be_jsonable_and_not_reserved(tmp_path):
    model, _, _ = trained()
    with pytest.raises(TypeError, match="JSON"):
        ckpt.save_checkpoint(tmp_path, model, epoch=0, meta={"x": object()})
    with pytest.raises(TypeError, match="JSON"):
        ckpt.save_checkpoint(tmp_path, model, epoch=0, meta={"x": float("nan")})
    with pytest.raises(ValueError, match="reserved key 'epoch'"):
        ckpt.save_checkpoint(tmp_path, model, epoch=0, meta={"epoch": 3})
    assert not (tmp_path / "checkpoint.npz").exists()
