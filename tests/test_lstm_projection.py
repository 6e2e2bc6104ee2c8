"""LSTM with a projection (PyTorch's proj_size): the kernel against finite differences (float64) and
against the plain LSTM kernel (identity projection); the layer against torch nn.LSTM(proj_size=P)
(outputs, final states and every gradient, float32 to 1e-5); interop round trips; bad input."""
import numpy as np
import pytest

import lstmkit
from lstmkit import kernels, layouts
from helpers import TORCH_CONFIGS, numeric_grad

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")   # torch, oneDNN

B, T, I, U, P = 3, 5, 4, 3, 2
LENGTHS = np.array([5, 2, 0])


# ----------------------------------------------------------------------------------------- kernel
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dropout", [False, True], ids=["nodrop", "recdrop"])
def test_kernel_gradients_match_finite_differences(reverse, mode, masked, dropout):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, I))
    mask = np.arange(T)[None] < LENGTHS[:, None] if masked else None
    weights = [rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (P, 4 * U), (4 * U,), (U, P)]]
    h0, c0 = rng.normal(size=(B, P)), rng.normal(size=(B, U))
    rmask = (rng.random((B, P)) < 0.7) / 0.7 if dropout else None
    d_out, d_h, d_c = rng.normal(size=(B, T, P)), rng.normal(size=(B, P)), rng.normal(size=(B, U))
    opts = dict(reverse=reverse, masked_output_mode=mode, recurrent_dropout_mask=rmask)

    def loss():
        out, h, c, _ = kernels.lstm_forward(x, mask, h0, c0, *weights[:3], projection=weights[3], **opts)
        return float((out * d_out).sum() + (h * d_h).sum() + (c * d_c).sum())

    cache = kernels.lstm_forward(x, mask, h0, c0, *weights[:3], projection=weights[3], **opts)[-1]
    grads = kernels.lstm_backward(cache, d_out, d_h, d_c)
    named = {"x": x, "h0": h0, "c0": c0,
             **dict(zip(["kernel", "recurrent_kernel", "bias", "projection"], weights))}
    for key, arr in named.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=f"d{key}")


def test_kernel_without_bias_and_with_partial_gradients():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, T, I))
    weights = [rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (P, 4 * U)]]
    proj = rng.normal(size=(U, P))
    d_c = rng.normal(size=(B, U))

    def loss():
        return float((kernels.lstm_forward(x, None, None, None, *weights, None, projection=proj)[2]
                      * d_c).sum())

    cache = kernels.lstm_forward(x, None, None, None, *weights, None, projection=proj)[-1]
    grads = kernels.lstm_backward(cache, None, None, d_c)
    assert grads["bias"] is None
    for key, arr in {"x": x, "kernel": weights[0], "recurrent_kernel": weights[1],
                     "projection": proj}.items():
        np.testing.assert_allclose(grads[key], numeric_grad(loss, arr), rtol=1e-6, atol=1e-7,
                                   err_msg=f"d{key}")


@pytest.mark.parametrize("mode", ["zero", "repeat"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_identity_projection_is_the_plain_lstm(reverse, mode, kernel_backend):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, I))
    mask = np.arange(T)[None] < LENGTHS[:, None]
    kernel, rk, bias = (rng.normal(size=s) * 0.5 for s in [(I, 4 * U), (U, 4 * U), (4 * U,)])
    h0, c0 = rng.normal(size=(B, U)), rng.normal(size=(B, U))
    opts = dict(reverse=reverse, masked_output_mode=mode)
    plain = kernels.lstm_forward(x, mask, h0, c0, kernel, rk, bias, **opts)
    proj = kernels.lstm_forward(x, mask, h0, c0, kernel, rk, bias, projection=np.eye(U), **opts)
    for a, b in zip(plain[:3], proj[:3]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    d = [rng.normal(size=s) for s in [(B, T, U), (B, U), (B, U)]]
    g_plain = kernels.lstm_backward(plain[-1], *d)
    g_proj = kernels.lstm_backward(proj[-1], *d)
    for key in g_plain:
        np.testing.assert_allclose(g_proj[key], g_plain[key], rtol=1e-10, atol=1e-12, err_msg=key)


# ------------------------------------------------------------------------------- parity with torch
H = 5                                     # hidden_size; P (proj_size) = 2 as above
TB, TT = 4, 6
TLENGTHS = np.array([4, 6, 1, 3])         # unsorted on purpose
CONFIGS = TORCH_CONFIGS


def make_pair(torch, num_layers, bidirectional, dtype="float32"):
    torch.manual_seed(0)
    mod = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True,
                        proj_size=P)
    with torch.no_grad():     # biases away from zero so that a wrong bias layout shows
        for p in mod.parameters():
            p.uniform_(-0.6, 0.6)
    if dtype == "float64":
        mod = mod.double()
    layer = lstmkit.LSTM(H, proj_size=P, num_layers=num_layers, dtype=dtype)
    if bidirectional:
        layer = lstmkit.Bidirectional(layer)
    layer.build((TB, TT, I))
    params = layouts.from_torch_state_dict(mod.state_dict())
    assert set(params) == set(layer.params)
    for k, v in params.items():
        layer.params[k][...] = v
    return mod, layer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_layer_matches_torch_proj_size(torch, config, dtype, rng):
    L, bidi, packed, with_state = CONFIGS[config]
    D = 2 if bidi else 1
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-11, atol=1e-12)
    mod, layer = make_pair(torch, L, bidi, dtype)
    x = rng.normal(size=(TB, TT, I)).astype(dtype)
    lengths = TLENGTHS if packed else None
    state0 = None
    if with_state:
        state0 = (rng.normal(size=(L * D, TB, P)).astype(dtype),
                  rng.normal(size=(L * D, TB, H)).astype(dtype))

    xt = torch.tensor(x, requires_grad=True)
    s0 = None if state0 is None else tuple(torch.tensor(s, requires_grad=True) for s in state0)
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    out_t, st_t = mod(inp, s0)
    if lengths is not None:
        out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=True, total_length=TT)
    assert out_t.shape == (TB, TT, D * P)

    init = None if state0 is None else layouts.convert_state(state0, "torch", "lstmkit",
                                                             bidirectional=bidi)
    res, cache = layer.forward(x, lengths=lengths, initial_state=init, training=True)
    np.testing.assert_allclose(res.outputs, out_t.detach().numpy(), **tol, err_msg="outputs")
    ours = (res.forward.state, res.backward.state) if bidi else res.state
    ours = layouts.convert_state(ours, "lstmkit", "torch", bidirectional=bidi)
    for name, a, b in zip(("h_n", "c_n"), ours, st_t):
        assert a.shape == tuple(b.shape), name
        np.testing.assert_allclose(a, b.detach().numpy(), **tol, err_msg=name)

    d_out = rng.normal(size=out_t.shape).astype(dtype)
    d_st = [rng.normal(size=tuple(s.shape)).astype(dtype) for s in st_t]
    loss = (out_t * torch.tensor(d_out)).sum() + sum((s * torch.tensor(d)).sum()
                                                     for s, d in zip(st_t, d_st))
    loss.backward()

    d_state = layouts.convert_state(tuple(d_st), "torch", "lstmkit", bidirectional=bidi)
    if bidi:   # Bidirectional.backward takes the gradient of the concatenated state
        d_state = layer.State(*(np.concatenate([a, b], -1) for a, b in zip(*d_state)))
    layer.zero_grad()
    g = layer.backward(cache, (d_out, d_state))
    np.testing.assert_allclose(g.inputs, xt.grad.numpy(), **tol, err_msg="d inputs")
    if s0 is not None:
        d0 = layouts.convert_state(g.initial_state, "lstmkit", "torch", bidirectional=bidi)
        for name, a, s in zip(("h0", "c0"), d0, s0):
            np.testing.assert_allclose(a, s.grad.numpy(), **tol, err_msg=f"d {name}")
    grads = layouts.to_torch_state_dict(layer.grads, "lstm", L, bidi)
    assert set(grads) == {n for n, _ in mod.named_parameters()}
    for name, p in mod.named_parameters():
        ours = grads[name]
        if name.startswith("bias_hh"):   # one canonical bias is the sum of torch's two
            ours = grads[name.replace("bias_hh", "bias_ih")]
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=tol["rtol"], atol=2 * tol["atol"],
                                   err_msg=f"d {name}")


# ---------------------------------------------------------------------------------- layer contract
def test_layer_weights_order_and_shapes(rng):
    layer = lstmkit.Bidirectional(lstmkit.LSTM(H, proj_size=P, num_layers=2, seed=0))
    res = layer(rng.normal(size=(TB, TT, I)), lengths=TLENGTHS)
    assert res.outputs.shape == (TB, TT, 2 * P)
    assert res.state.h.shape == (2, TB, 2 * P) and res.state.c.shape == (2, TB, 2 * H)
    inner = layer.forward_layer
    assert list(inner.params) == ["kernel_l0", "recurrent_kernel_l0", "bias_l0", "projection_kernel_l0",
                                  "kernel_l1", "recurrent_kernel_l1", "bias_l1", "projection_kernel_l1"]
    assert [w.shape for w in inner.get_weights()[:4]] == [(I, 4 * H), (P, 4 * H), (4 * H,), (H, P)]
    assert inner.params["kernel_l1"].shape == (2 * P, 4 * H)
    # the state of one direction passed back in as an initial state gives the same run
    again = layer(rng.normal(size=(TB, TT, I)), lengths=TLENGTHS,
                  initial_state=(res.forward.state, res.backward.state))
    assert again.forward.h.shape == (2, TB, P)


def test_layer_with_recurrent_dropout_trains(rng):
    layer = lstmkit.LSTM(H, proj_size=P, recurrent_dropout=0.3, seed=0)
    res, cache = layer.forward(rng.normal(size=(TB, TT, I)), training=True)
    g = layer.backward(cache, (np.ones_like(res.outputs), None))
    assert g.inputs.shape == (TB, TT, I)
    assert layer.grads["projection_kernel"].shape == (H, P) and np.any(layer.grads["projection_kernel"])


@pytest.mark.parametrize("bad", [H, H + 1, -1, 1.5, True, "2"])
def test_bad_proj_size_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"proj_size: expected an integer in \[0, units=5\)"):
        lstmkit.LSTM(H, proj_size=bad)


def test_initial_state_shapes_are_checked_per_field(rng):
    layer = lstmkit.LSTM(H, proj_size=P)
    x = rng.normal(size=(TB, TT, I))
    with pytest.raises(ValueError, match=r"initial_state.h: expected shape \(4, 2\) \(batch, proj_size\)"):
        layer(x, initial_state=lstmkit.LSTMState(np.zeros((TB, H)), np.zeros((TB, H))))
    with pytest.raises(ValueError, match=r"initial_state.c: expected shape \(4, 5\) \(batch, units\)"):
        layer(x, initial_state=lstmkit.LSTMState(np.zeros((TB, P)), np.zeros((TB, P))))
    res, cache = layer.forward(x, training=True)
    with pytest.raises(ValueError, match=r"d_state.c must have the state's shape \(4, 5\)"):
        layer.backward(cache, (None, lstmkit.LSTMState(np.zeros((TB, P)), np.zeros((TB, P)))))


# ----------------------------------------------------------------------------------------- interop
@pytest.mark.parametrize("num_layers, bidi", [(1, False), (2, True)])
def test_torch_to_lstmkit_to_torch_round_trip(torch, num_layers, bidi, tmp_path, rng):
    from lstmkit import interop
    torch.manual_seed(1)
    mod = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidi, batch_first=True,
                        proj_size=P)
    layer = interop.load_torch(mod.state_dict())
    assert isinstance(layer, lstmkit.Bidirectional) == bidi
    inner = layer.forward_layer if bidi else layer
    assert (inner.units, inner.proj_size, inner.num_layers) == (H, P, num_layers)

    x = rng.normal(size=(TB, TT, I)).astype("float32")
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(TLENGTHS),
                                                     batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out_t, (h_t, c_t) = mod(packed)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=True, total_length=TT)
    res = layer(x, lengths=TLENGTHS)
    np.testing.assert_allclose(res.outputs, out_t.numpy(), rtol=1e-5, atol=1e-5)
    h, c = layouts.convert_state((res.forward.state, res.backward.state) if bidi else res.state,
                                 "lstmkit", "torch", bidirectional=bidi)
    np.testing.assert_allclose(h, h_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, c_t.numpy(), rtol=1e-5, atol=1e-5)

    # back to torch: the same state dict (weights exactly; the two biases by their sum), a module
    # built by lstmkit, and a .pt file
    sd = interop.save_torch(layer, tmp_path / "proj.pt")
    theirs = mod.state_dict()
    assert list(sd) == list(theirs)
    for k, v in theirs.items():
        if k.startswith("weight"):
            np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)
    rebuilt = interop.torch_module(layer)
    assert rebuilt.proj_size == P
    with torch.no_grad():
        out_r, _ = rebuilt(packed)
    out_r, _ = torch.nn.utils.rnn.pad_packed_sequence(out_r, batch_first=True, total_length=TT)
    np.testing.assert_allclose(out_r.numpy(), out_t.numpy(), rtol=1e-5, atol=1e-6)
    again = interop.load_torch(tmp_path / "proj.pt")
    np.testing.assert_array_equal(again(x, lengths=TLENGTHS).outputs, res.outputs)


def test_onnx_export_refuses_a_projection():
    pytest.importorskip("onnx")
    from lstmkit import interop
    layer = lstmkit.LSTM(H, proj_size=P)
    layer.build((1, 1, I))
    with pytest.raises(NotImplementedError, match="proj_size"):
        interop.to_onnx(layer)


def _tf1_graph(tf, style, x, ckpt_in=None):
    """dynamic_rnn of LSTMCell(H, num_proj=P): 'plain', 'multi' (2 layers) or 'bidirectional'.
    Returns outputs, the top layer's final LSTMStateTuple per direction, the variables by name."""
    v1 = tf.compat.v1
    make = lambda: v1.nn.rnn_cell.LSTMCell(H, num_proj=P)   # noqa: E731
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        xs = v1.placeholder(tf.float32, [None, None, I])
        ls = v1.placeholder(tf.int32, [None])
        with v1.variable_scope(v1.get_variable_scope(), initializer=v1.random_uniform_initializer(-.5, .5)):
            if style == "plain":
                out, st = v1.nn.dynamic_rnn(make(), xs, sequence_length=ls, dtype=tf.float32)
                tops = [st]
            elif style == "multi":
                cells = v1.nn.rnn_cell.MultiRNNCell([make() for _ in range(2)])
                out, st = v1.nn.dynamic_rnn(cells, xs, sequence_length=ls, dtype=tf.float32)
                tops = [st[-1]]
            else:
                (of, ob), (sf, sb) = v1.nn.bidirectional_dynamic_rnn(make(), make(), xs, sequence_length=ls,
                                                                     dtype=tf.float32)
                out, tops = tf.concat([of, ob], -1), [sf, sb]
        variables = v1.global_variables()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            if ckpt_in is not None:
                v1.train.Saver().restore(sess, str(ckpt_in))
            o, t = sess.run([out, tops], {xs: x, ls: TLENGTHS})
            values = dict(zip([v.op.name for v in variables], sess.run(variables)))
    return o, t, values


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("style", ["plain", "multi", "bidirectional"])
def test_tf1_num_proj_to_lstmkit_and_back(tf, style, rng, tmp_path):
    from lstmkit import interop
    x = rng.normal(size=(TB, TT, I)).astype("float32")
    o, tops, values = _tf1_graph(tf, style, x)
    assert any(k.endswith("lstm_cell/projection/kernel") for k in values)

    def check(layer, o, tops):
        res = layer(x, lengths=TLENGTHS)
        np.testing.assert_allclose(res.outputs, o, rtol=1e-5, atol=1e-5)
        mine = [res.forward.state, res.backward.state] if style == "bidirectional" else [res.state]
        for m, t in zip(mine, tops):   # LSTMStateTuple(c, h): compared by name
            np.testing.assert_allclose(m.h if m.h.ndim == 2 else m.h[-1], t.h, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(m.c if m.c.ndim == 2 else m.c[-1], t.c, rtol=1e-5, atol=1e-5)

    layer = interop.load_tf1(values)
    inner = layer.forward_layer if style == "bidirectional" else layer
    assert (inner.units, inner.proj_size) == (H, P)
    check(layer, o, tops)
    for p in layer.params.values():   # new weights, written by lstmkit and restored by TF
        p[...] = rng.normal(scale=0.4, size=p.shape)
    interop.save_tf1(layer, tmp_path / "proj.ckpt")
    o2, tops2, _ = _tf1_graph(tf, style, x, ckpt_in=tmp_path / "proj.ckpt")
    check(layer, o2, tops2)
    with pytest.raises(ValueError, match="only TF1's LSTMCell has a projection"):
        interop.save_tf1(layer, cell_name="basic_lstm_cell")
