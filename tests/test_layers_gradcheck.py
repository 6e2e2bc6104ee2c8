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
