"""Optimisers against torch.optim (float64, same parameters and gradients for several steps);
schedules against torch.optim.lr_scheduler; state_dict round trips and errors."""
import numpy as np
import pytest
import torch

from featuremaps import Tensor, optim, schedules

SHAPES = [(3, 4), (5,), (2, 3, 1, 2)]


def _run_both(make_fm, make_torch, steps=6, seed=0, skip=None):
    """Apply the same random gradients to both optimisers; `skip[(step, i)]` leaves a grad as None."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    ours = [Tensor(a.copy(), requires_grad=True) for a in init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt, ref = make_fm(ours), make_torch(theirs)
    for t in range(steps):
        opt.zero_grad()
        ref.zero_grad()
        for i, (p, q) in enumerate(zip(ours, theirs)):
            g = rng.standard_normal(SHAPES[i])
            if skip and (t, i) in skip:
                continue
            p.grad = g.copy()
            q.grad = torch.tensor(g.copy())
        opt.step()
        ref.step()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-10, atol=1e-13)
    return opt, ours


@pytest.mark.parametrize("kw", [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=1e-2),
    dict(lr=0.3, weight_decay=0.1),
])
def test_sgd_matches_torch(kw):
    _run_both(lambda ps: optim.SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))


@pytest.mark.parametrize("cls,tcls", [(optim.Adam, torch.optim.Adam), (optim.AdamW, torch.optim.AdamW)])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.02, weight_decay=0.1),
])
def test_adam_family_matches_torch(cls, tcls, kw):
    _run_both(lambda ps: cls(ps, **kw), lambda ps: tcls(ps, **kw), steps=8)


def test_missing_grads_are_skipped_like_torch():
    skip = {(0, 1), (1, 1), (3, 0)}
    opt, _ = _run_both(lambda ps: optim.Adam(ps, lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01),
                       steps=5, skip=skip)
    assert opt.steps.tolist() == [4, 3, 5]
    _run_both(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
              lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), steps=5, skip=skip)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: optim.Adam(ps, lr=0.01),
    lambda ps: optim.AdamW(ps, lr=0.01),
])
def test_state_dict_round_trip_continues_identically(make):
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]
    a = [Tensor(x.copy(), requires_grad=True) for x in init]
    opt_a = make(a)
    for t in range(6):
        for p, g in zip(a, grads[t]):
            p.grad = g
        opt_a.step()
        if t == 2:  # snapshot halfway, then rebuild a fresh optimiser from it
            snap_params = [p.data.copy() for p in a]
            snap_state = opt_a.state_dict()
    b = [Tensor(x, requires_grad=True) for x in snap_params]
    opt_b = make(b)
    opt_b.load_state_dict(snap_state)
    for t in range(3, 6):
        for p, g in zip(b, grads[t]):
            p.grad = g
        opt_b.step()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.data, q.data)
    assert all(isinstance(v, np.ndarray) for v in opt_a.state_dict().values())


def test_state_dict_is_a_copy():
    p = Tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    sd["momentum_buffer.0"][:] = 99
    assert opt.state["momentum_buffer"][0][0] == 1.0


def test_load_state_dict_lists_problems_and_changes_nothing():
    ps = [Tensor(np.ones((2, 2)), requires_grad=True), Tensor(np.ones(3), requires_grad=True)]
    opt = optim.Adam(ps)
    sd = opt.state_dict()
    sd.pop("exp_avg.1")
    sd["bogus.7"] = np.zeros(1)
    sd["exp_avg_sq.0"] = np.zeros((3, 3))
    sd["step"] = np.array([5, 5])
    with pytest.raises(ValueError) as e:
        opt.load_state_dict(sd)
    msg = str(e.value)
    assert "missing: exp_avg.1" in msg and "unexpected: bogus.7" in msg
    assert "exp_avg_sq.0 (expected (2, 2), received (3, 3))" in msg
    assert opt.steps.tolist() == [0, 0]


def test_float32_params_stay_float32():
    p = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    for opt in (optim.SGD([p], lr=0.1, momentum=0.9), optim.Adam([p]), optim.AdamW([p])):
        p.grad = np.full((2, 3), 0.5, np.float32)
        opt.step()
        assert p.dtype == np.float32
        assert all(a.dtype == np.float32 for bufs in opt.state.values() for a in bufs)


def test_get_and_errors():
    p = [Tensor(np.ones(2), requires_grad=True)]
    assert isinstance(optim.get("SGD", p, 0.1, momentum=0.9), optim.SGD)
    assert optim.get("adam", p).lr == 1e-3
    assert optim.get("adamw", p).weight_decay == 1e-2
    with pytest.raises(ValueError, match="valid names: sgd, adam, adamw"):
        optim.get("rmsprop", p, 0.1)
    with pytest.raises(ValueError, match="lr"):
        optim.get("sgd", p)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="params is empty"):
        optim.SGD([], lr=0.1)
    cfg = optim.get("adamw", p, 0.01).get_config()
    assert cfg == {"name": "adamw", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
    assert isinstance(optim.get(**cfg, params=p), optim.AdamW)


# --- schedules -----------------------------------------------------------------------------------

def _torch_lrs(make_sched, base_lr, epochs):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_sched(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("ours,theirs", [
    (schedules.StepSchedule(0.1, step_size=3, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
    (schedules.CosineSchedule(0.1, t_max=10),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)),
    (schedules.CosineSchedule(0.05, t_max=7, eta_min=1e-3),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=1e-3)),
    (schedules.ExponentialSchedule(0.1, gamma=0.8),
     lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)),
    (schedules.ConstantSchedule(0.1), lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0)),
])
def test_schedules_match_torch(ours, theirs):
    ref = _torch_lrs(theirs, ours.base_lr, 12)
    got = [ours.lr_at(e) for e in range(12)]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-15)


def test_schedule_config_round_trip_and_errors():
    s = schedules.get("cosine", 0.1, epochs=8)
    assert s.get_config() == {"name": "cosine", "base_lr": 0.1, "t_max": 8, "eta_min": 0.0}
    s2 = schedules.from_config(s.get_config())
    assert [s2.lr_at(e) for e in range(8)] == [s.lr_at(e) for e in range(8)]
    assert schedules.get("step", 0.1, epochs=9).step_size == 3
    assert schedules.get("none", 0.1, epochs=9).lr_at(5) == 0.1
    with pytest.raises(ValueError, match="valid names: none, step, cosine, exponential"):
        schedules.get("warmup", 0.1, epochs=3)
    with pytest.raises(ValueError, match="epoch"):
        s.lr_at(-1)
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepSchedule(0.1, step_size=0)
