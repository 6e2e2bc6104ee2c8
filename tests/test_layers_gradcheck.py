"""Layer-level backward passes (stacking, Bidirectional merges, the three dropouts, initial states)
against central finite differences in float64. The dropout masks are held fixed by re-seeding the
layer's generator before every forward pass."""
import numpy as np
import pytest

import lstmkit
from helpers import numeric_grad

B, T, I, U = 2, 4, 3, 2
LENGTHS = np.array([4, 2])
CLASSES = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "gru_reset_before": lstmkit.GRU,
           "rnn": lstmkit.SimpleRNN}


def reseed(layer):
    subs = [layer, layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") \
        else [layer]
    for i, s in enumerate(subs):
        s.rng = np.random.default_rng(100 + i)


@pytest.mark.parametrize("merge_mode", [None, "concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("cell", list(CLASSES))
def test_layer_gradients(cell, merge_mode):
    rng = np.random.default_rng(0)
    kw = {"reset_after": cell == "gru"} if cell.startswith("gru") else {}
    L = 2 if merge_mode in (None, "concat") else 1
    layer = CLASSES[cell](U, num_layers=L, dropout=0.3, input_dropout=0.2, recurrent_dropout=0.25,
                          dtype="float64", seed=1, **kw)
    bidi = merge_mode is not None
    if bidi:
        layer = lstmkit.Bidirectional(layer, merge_mode=merge_mode)
    x = rng.normal(size=(B, T, I))
    layer.build(x.shape)
    for p in layer.params.values():
        p += rng.uniform(-0.3, 0.3, size=p.shape)
    State = layer.State
    shape = (B, U) if L == 1 else (L, B, U)
    states = [State(*(rng.normal(size=shape) for _ in State._fields)) for _ in range(2 if bidi else 1)]
    init = tuple(states) if bidi else states[0]

    reseed(layer)
    res, cache = layer.forward(x, lengths=LENGTHS, initial_state=init, training=True)
    d_out = rng.normal(size=res.outputs.shape)
    d_state = State(*(rng.normal(size=np.shape(v)) for v in res.state))

    def loss():
        reseed(layer)
        r, _ = layer.forward(x, lengths=LENGTHS, initial_state=init, training=True)
        return float((r.outputs * d_out).sum() + sum((a * b).sum() for a, b in zip(r.state, d_state)))

    layer.zero_grad()
    g = layer.backward(cache, (d_out, d_state))
    tol = dict(rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.inputs, numeric_grad(loss, x), **tol, err_msg="d inputs")
    got_states = g.initial_state if bidi else (g.initial_state,)
    for d, (st, gs) in enumerate(zip(states, got_states)):
        for f in State._fields:
            np.testing.assert_allclose(getattr(gs, f), numeric_grad(loss, getattr(st, f)), **tol,
                                       err_msg=f"d {f}0 (direction {d})")
    for key, p in layer.params.items():
        np.testing.assert_allclose(layer.grads[key], numeric_grad(loss, p), **tol, err_msg=f"d {key}")


def _stepwise_grads(layer, xs, d_outs, deferred, state=None):
    """Run ``layer`` over the steps ``xs`` one call each (training; a recurrent layer's state passed
    from call to call, as a decoder's), back-propagate ``d_outs`` in reverse, inside
    ``deferred_grads()`` or not; return the gradients and, when deferred, what ``grads`` held just
    before leaving the block."""
    layer.zero_grad()
    caches = []
    for x in xs:
        if state is None:
            caches.append(layer.forward(x, training=True)[1])
        else:
            res, cache = layer.forward(x, initial_state=state, training=True)
            state = res.state
            caches.append(cache)

    def backward():
        d_state = None
        for cache, d in zip(caches[::-1], d_outs[::-1]):
            g = layer.backward(cache, (d[0], d_state) if isinstance(d, tuple) else d)
            d_state = getattr(g, "initial_state", None)

    inside = None
    if deferred:
        with layer.deferred_grads():
            assert layer.defers_grads
            backward()
            inside = {k: g.copy() for k, g in layer.grads.items()}
        assert not layer.defers_grads
    else:
        backward()
    return {k: g.copy() for k, g in layer.grads.items()}, inside


@pytest.mark.parametrize("kind", ["dense", "lstm", "lstm_projection", "rnn", "gru"])
def test_deferred_grads_sum_to_the_stepwise_ones(kind):
    """A layer called step by step and back-propagated inside deferred_grads() ends with the same
    gradients as outside it; the kernels that can defer (Dense, LSTM, SimpleRNN) add nothing
    until the block ends, the others (GRU) add at once."""
    rng = np.random.default_rng(3)
    if kind == "dense":
        layer = lstmkit.Dense(4, activation="tanh", dtype="float64", seed=0)
        xs = [rng.normal(size=(B, 1, I)) for _ in range(T)]
        d_outs = [rng.normal(size=(B, 1, 4)) for _ in range(T)]
    else:
        cls = {"lstm": lstmkit.LSTM, "lstm_projection": lstmkit.LSTM, "rnn": lstmkit.SimpleRNN,
               "gru": lstmkit.GRU}[kind]
        kw = {"proj_size": 1} if kind == "lstm_projection" else {}
        layer = cls(U, num_layers=2, dtype="float64", seed=0, **kw)
        P = 1 if kw else U
        xs = [rng.normal(size=(B, 1, I)) for _ in range(T)]
        d_outs = [(rng.normal(size=(B, 1, P)), None) for _ in range(T)]
    layer.build(xs[0].shape)
    state = None
    if kind != "dense":
        state = layer.State(*(rng.normal(size=(2, B, P if f == "h" else U)) for f in layer.State._fields))
    expected, _ = _stepwise_grads(layer, xs, d_outs, False, state)
    got, inside = _stepwise_grads(layer, xs, d_outs, True, state)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, atol=1e-14, err_msg=k)
        assert np.abs(expected[k]).max() > 0, k
        if kind == "gru":
            np.testing.assert_array_equal(inside[k], expected[k])
        else:
            assert not inside[k].any(), f"{k} was added before the block ended"


def test_deferred_grads_are_dropped_when_the_block_raises_and_cannot_nest():
    layer = lstmkit.Dense(3, dtype="float64", seed=0)
    y, cache = layer.forward(np.ones((2, 4)), training=True)
    with pytest.raises(KeyError):
        with layer.deferred_grads():
            layer.backward(cache, np.ones_like(y))
            raise KeyError("stop")
    assert not layer.defers_grads
    assert not any(g.any() for g in layer.grads.values())
    with layer.deferred_grads():
        with pytest.raises(RuntimeError, match="already active"):
            with layer.deferred_grads():
                pass
    layer.backward(cache, np.ones_like(y))        # outside again: added at once
    assert layer.grads["kernel"].any()
    from lstmkit.kernels.dense import Deferred
    before = layer.grads["bias"].copy()
    layer.accumulate("bias", Deferred(None, np.ones((2, 3))))   # a deferred one outside: at once too
    np.testing.assert_array_equal(layer.grads["bias"], before + 2)
