"""Optimizers: several steps equal Keras 3's (and torch.optim's with formula="pytorch")."""
import math

import numpy as np
import pytest

from lstmkit import optim

SHAPES = {"kernel": (3, 4), "bias": (4,)}


def _problem(rng, dtype, steps=5):
    params = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: (rng.normal(size=s) * 2).astype(dtype) for k, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def _run_ours(opt, params, grads):
    params = {k: v.copy() for k, v in params.items()}
    refs = dict(params)
    for g in grads:
        opt.apply(params, g)
    assert all(params[k] is refs[k] for k in params)      # updated in place
    return params


KERAS = [
    ("SGD", dict(learning_rate=0.1)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(learning_rate=0.01)),
    ("Adam", dict(learning_rate=0.01, amsgrad=True, epsilon=1e-3)),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
    ("RMSprop", dict(learning_rate=0.01)),
    ("RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(learning_rate=0.1)),
    ("Adam", dict(learning_rate=0.01, clipnorm=0.5)),
    ("Adam", dict(learning_rate=0.01, global_clipnorm=1.0)),
    ("SGD", dict(learning_rate=0.1, clipvalue=0.3, weight_decay=0.01)),
]


# Keras keeps the learning rate in a float32 variable, so float64 agrees to float32's precision of lr.
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-6), ("float32", 1e-5)])
@pytest.mark.parametrize("name,kw", KERAS)
def test_matches_keras3(keras3, name, kw, dtype, tol, rng):
    params, grads = _problem(rng, dtype)
    ours = _run_ours(getattr(optim, name)(**kw), params, grads)
    variables = [keras3.Variable(params[k], dtype=dtype) for k in SHAPES]
    ref = getattr(keras3.optimizers, name)(**kw)
    for g in grads:
        ref.apply([g[k] for k in SHAPES], variables)
    for k, v in zip(SHAPES, variables):
        np.testing.assert_allclose(ours[k], np.asarray(v.numpy()), rtol=tol, atol=tol)


TORCH = [
    ("SGD", "SGD", dict(learning_rate=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9)),
    ("SGD", "SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", "Adam", dict(learning_rate=0.01), dict(lr=0.01)),
    ("Adam", "Adam", dict(learning_rate=0.01, amsgrad=True, weight_decay=0.1),
     dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", "AdamW", dict(learning_rate=0.01), dict(lr=0.01)),
    ("RMSprop", "RMSprop", dict(learning_rate=0.01), dict(lr=0.01)),
    ("RMSprop", "RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True, rho=0.9),
     dict(lr=0.01, momentum=0.5, centered=True, alpha=0.9)),
    ("Adagrad", "Adagrad", dict(learning_rate=0.1), dict(lr=0.1)),
]


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("name,torch_name,kw,torch_kw", TORCH)
def test_matches_torch_with_pytorch_formula(torch, name, torch_name, kw, torch_kw, dtype, tol, rng):
    params, grads = _problem(rng, dtype)
    ours = _run_ours(getattr(optim, name)(formula="pytorch", **kw), params, grads)
    tensors = [torch.tensor(params[k], requires_grad=True) for k in SHAPES]
    ref = getattr(torch.optim, torch_name)(tensors, **torch_kw)
    for g in grads:
        for t, k in zip(tensors, SHAPES):
            t.grad = torch.tensor(g[k])
        ref.step()
    for k, t in zip(SHAPES, tensors):
        np.testing.assert_allclose(ours[k], t.detach().numpy(), rtol=tol, atol=tol)


def test_adam_epsilon_placement_differs(rng):
    """The two formulas differ by eps * sqrt(1 - beta_2^t): visible with a large epsilon."""
    params, grads = _problem(rng, "float64", steps=1)
    a = _run_ours(optim.Adam(0.1, epsilon=0.1), params, grads)
    b = _run_ours(optim.Adam(0.1, epsilon=0.1, formula="pytorch"), params, grads)
    g = grads[0]["bias"]
    # t = 1: m = 0.1 g, v = 0.001 g^2
    keras = params["bias"] - 0.1 * math.sqrt(0.001) / 0.1 * (0.1 * g) / (np.sqrt(0.001) * np.abs(g) + 0.1)
    torch_ = params["bias"] - 0.1 / 0.1 * (0.1 * g) / (np.abs(g) + 0.1)
    np.testing.assert_allclose(a["bias"], keras, rtol=1e-12)
    np.testing.assert_allclose(b["bias"], torch_, rtol=1e-12)


def test_schedules_match_keras(keras3):
    ours = optim.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5, staircase=True)
    ref = keras3.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5, staircase=True)
    for step in range(8):
        assert math.isclose(ours(step), float(ref(step)), rel_tol=1e-6)


def test_schedule_used_per_step_like_keras(keras3, rng):
    params, grads = _problem(rng, "float64")
    sched = dict(initial_learning_rate=0.1, decay_steps=2, decay_rate=0.5)
    ours = _run_ours(optim.SGD(optim.ExponentialDecay(**sched), momentum=0.5), params, grads)
    variables = [keras3.Variable(params[k], dtype="float64") for k in SHAPES]
    ref = keras3.optimizers.SGD(keras3.optimizers.schedules.ExponentialDecay(**sched), momentum=0.5)
    for g in grads:
        ref.apply([g[k] for k in SHAPES], variables)
    for k, v in zip(SHAPES, variables):
        np.testing.assert_allclose(ours[k], v.numpy(), rtol=1e-6)


def test_warmup_and_inverse_sqrt_by_formula():
    s = optim.LinearWarmup(optim.InverseSqrtDecay(1.0, decay_steps=4), warmup_steps=4)
    assert [s(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(4) == 1.0 and math.isclose(s(16), 1 / math.sqrt(1 + 12 / 4))
    assert optim.LinearWarmup(0.5, 2)(0) == 0.25


def test_state_dict_roundtrip_continues_identically(rng):
    params, grads = _problem(rng, "float32", steps=6)
    full = _run_ours(optim.Adam(0.01, amsgrad=True), params, grads)
    opt = optim.Adam(0.01, amsgrad=True)
    half = _run_ours(opt, params, grads[:3])
    state = opt.state_dict()
    assert all(isinstance(v, (np.ndarray, np.generic)) for v in state.values())
    opt2 = optim.Adam(0.01, amsgrad=True)
    opt2.load_state_dict({k: np.array(v) for k, v in state.items()})
    for g in grads[3:]:
        opt2.apply(half, g)
    for k in SHAPES:
        assert np.array_equal(full[k], half[k])


def test_bad_input():
    for bad in (0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="learning_rate"):
            optim.Adam(learning_rate=bad)
    opt = optim.SGD(0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = 0.0
    with pytest.raises(ValueError, match="formula"):
        optim.Adam(formula="tf")
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="clipnorm"):
        optim.SGD(clipnorm=1.0, clipvalue=1.0)
    p = {"w": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected shape \(2, 2\)"):
        opt.apply(p, {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="no gradient"):
        opt.apply(p, {})
    with pytest.raises(ValueError, match="optimizer"):
        optim.get("adamax9")
    assert isinstance(optim.get("adam"), optim.Adam)
