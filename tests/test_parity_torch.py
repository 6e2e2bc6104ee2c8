"""Parity with PyTorch nn.LSTM / nn.GRU / nn.RNN: the same weights (moved with lstmkit.layouts) give
the same outputs, final states and gradients (inputs, initial states, every weight), in float32
(to 1e-5) and float64 (to 1e-11), on both kernel backends.

Packed sequences use pack_padded_sequence(enforce_sorted=False), so rows come in any length order;
the backward direction of a bidirectional module reads each sequence within its length."""
import numpy as np
import pytest

import lstmkit
from lstmkit import layouts

from helpers import TORCH_CONFIGS

B, T, I, H = 4, 6, 3, 5
LENGTHS = np.array([4, 6, 1, 3])           # unsorted on purpose
TOL = dict(rtol=1e-5, atol=1e-5)

CELLS = {"lstm": ("LSTM", lstmkit.LSTM), "gru": ("GRU", lstmkit.GRU), "rnn": ("RNN", lstmkit.SimpleRNN)}
CONFIGS = TORCH_CONFIGS


def make_pair(torch, cell, num_layers, bidirectional, nonlinearity="tanh", dtype="float32"):
    torch_name, cls = CELLS[cell]
    torch.manual_seed(0)
    kw = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    mod = getattr(torch.nn, torch_name)(I, H, num_layers=num_layers, bidirectional=bidirectional,
                                        batch_first=True, **kw)
    with torch.no_grad():     # biases away from zero so that a wrong bias layout shows
        for p in mod.parameters():
            p.uniform_(-0.6, 0.6)
    lk_kw = {"activation": nonlinearity} if cell == "rnn" else {}
    layer = cls(H, num_layers=num_layers, dtype=dtype, **lk_kw)
    if dtype == "float64":
        mod = mod.double()
    if bidirectional:
        layer = lstmkit.Bidirectional(layer)
    layer.build((B, T, I))
    params = layouts.from_torch_state_dict(mod.state_dict(), cell)
    assert set(params) == set(layer.params)
    for k, v in params.items():
        layer.params[k][...] = v
    return mod, layer


def run_torch(torch, mod, cell, x, lengths, state0):
    xt = torch.tensor(x, requires_grad=True)
    s0 = None
    if state0 is not None:
        s0 = tuple(torch.tensor(s, requires_grad=True) for s in state0)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                      enforce_sorted=False)
    arg = None if s0 is None else (s0 if cell == "lstm" else s0[0])
    out, st = mod(inp, arg)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    st = st if cell == "lstm" else (st,)
    return xt, s0, out, st


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", list(CELLS))
def test_forward_and_gradients_match_torch(torch, cell, config, dtype, kernel_backend, rng):
    L, bidi, packed, with_state = CONFIGS[config]
    D = 2 if bidi else 1
    nfields = 2 if cell == "lstm" else 1
    mod, layer = make_pair(torch, cell, L, bidi, dtype=dtype)
    TOL = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-11, atol=1e-12)
    x = rng.normal(size=(B, T, I)).astype(dtype)
    lengths = LENGTHS if packed else None
    state0 = None
    if with_state:
        state0 = [rng.normal(size=(L * D, B, H)).astype(dtype) for _ in range(nfields)]

    xt, s0, out_t, st_t = run_torch(torch, mod, cell, x, lengths, state0)

    init = None
    if state0 is not None:
        init = layouts.convert_state(tuple(state0) if cell == "lstm" else state0[0], "torch",
                                     "lstmkit", cell, bidirectional=bidi)
    res, cache = layer.forward(x, lengths=lengths, initial_state=init, training=True)

    np.testing.assert_allclose(res.outputs, out_t.detach().numpy(), **TOL, err_msg="outputs")
    ours = (res.forward.state, res.backward.state) if bidi else res.state
    ours = layouts.convert_state(ours, "lstmkit", "torch", cell, bidirectional=bidi)
    ours = ours if cell == "lstm" else (ours,)
    for name, a, b in zip(("h_n", "c_n"), ours, st_t):
        np.testing.assert_allclose(a, b.detach().numpy(), **TOL, err_msg=name)

    # gradients of  sum(out * d_out) + sum(h_n * d_h) [+ sum(c_n * d_c)]
    d_out = rng.normal(size=out_t.shape).astype(dtype)
    d_st = [rng.normal(size=(L * D, B, H)).astype(dtype) for _ in range(nfields)]
    loss = (out_t * torch.tensor(d_out)).sum() + sum((s * torch.tensor(d)).sum()
                                                     for s, d in zip(st_t, d_st))
    loss.backward()

    d_state = layouts.convert_state(tuple(d_st) if cell == "lstm" else d_st[0], "torch", "lstmkit",
                                    cell, bidirectional=bidi)
    if bidi:   # Bidirectional.backward takes the gradient of the concatenated state
        d_state = layer.State(*(np.concatenate([a, b], -1) for a, b in zip(*d_state)))
    layer.zero_grad()
    g = layer.backward(cache, (d_out, d_state))

    np.testing.assert_allclose(g.inputs, xt.grad.numpy(), **TOL, err_msg="d inputs")
    if s0 is not None:
        d0 = layouts.convert_state(g.initial_state, "lstmkit", "torch", cell, bidirectional=bidi)
        d0 = d0 if cell == "lstm" else (d0,)
        for name, a, s in zip(("h0", "c0"), d0, s0):
            np.testing.assert_allclose(a, s.grad.numpy(), **TOL, err_msg=f"d {name}")
    grads = layouts.to_torch_state_dict(layer.grads, cell, L, bidi)
    for name, p in mod.named_parameters():
        ours = grads[name]
        if name.startswith("bias_hh") and cell != "gru":
            # one canonical bias is the sum of torch's two: both get its gradient
            ours = grads[name.replace("bias_hh", "bias_ih")]
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=TOL["rtol"], atol=2 * TOL["atol"],
                                   err_msg=f"d {name}")
        assert ours.dtype == np.dtype(dtype)


def test_relu_rnn_matches_torch(torch, rng):
    mod, layer = make_pair(torch, "rnn", 1, False, nonlinearity="relu")
    x = rng.normal(size=(B, T, I)).astype("float32")
    _, _, out_t, st_t = run_torch(torch, mod, "rnn", x, LENGTHS, None)
    res = layer(x, lengths=LENGTHS)
    np.testing.assert_allclose(res.outputs, out_t.detach().numpy(), **TOL)
    np.testing.assert_allclose(res.h, st_t[0].detach().numpy()[0], **TOL)


def test_weights_exported_to_torch_reproduce_lstmkit(torch, rng):
    layer = lstmkit.Bidirectional(lstmkit.GRU(H, num_layers=2, seed=3))
    x = rng.normal(size=(B, T, I)).astype("float32")
    res = layer(x, lengths=LENGTHS)
    mod = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    sd = layouts.to_torch_state_dict(layer.params, "gru", num_layers=2, bidirectional=True)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    _, _, out_t, _ = run_torch(torch, mod, "gru", x, LENGTHS, None)
    np.testing.assert_allclose(res.outputs, out_t.detach().numpy(), **TOL)
