"""lstmkit.layouts: exact round trips, clear errors, and the TF1 cells' real variable names and gate
orders (one step of tf.compat.v1.nn.rnn_cell.* against lstmkit's kernels on converted weights)."""
import numpy as np
import pytest

import lstmkit
from lstmkit import HiddenState, LSTMState, kernels, layouts

pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning")

I, U, B = 3, 4, 2
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def canonical(cell, rng, reset_after=True, dtype="float32"):
    G = GATES[cell]
    bias_shape = (2, G * U) if cell == "gru" and reset_after else (G * U,)
    return {"kernel": rng.normal(size=(I, G * U)).astype(dtype),
            "recurrent_kernel": rng.normal(size=(U, G * U)).astype(dtype),
            "bias": rng.normal(size=bias_shape).astype(dtype)}


def formats_for(cell, reset_after):
    out = ["keras", "onnx"]
    if cell != "gru" or reset_after:
        out.append("torch")
    if cell != "gru" or not reset_after:
        out.append("tf1")
    return out


CASES = [("lstm", True), ("gru", True), ("gru", False), ("rnn", True)]


@pytest.mark.parametrize("cell,reset_after", CASES)
def test_round_trip_through_every_format_is_exact(cell, reset_after, rng):
    w = canonical(cell, rng, reset_after)
    for fmt in formats_for(cell, reset_after):
        opts = {"linear_before_reset": int(reset_after)} if cell == "gru" and fmt == "onnx" else {}
        if cell == "lstm" and fmt == "tf1":
            opts = {"forget_bias": 0.0}
        there = layouts.convert(w, "keras", fmt, cell, **opts)
        back = layouts.convert(there, fmt, "keras", cell, **opts)
        assert set(back) == set(w), fmt
        for k in w:
            assert back[k].dtype == w[k].dtype
            np.testing.assert_array_equal(back[k], w[k], err_msg=f"{cell} via {fmt}: {k}")


def test_tf1_forget_bias_is_folded_into_the_canonical_bias(rng):
    w = canonical("lstm", rng, dtype="float64")
    tf1 = layouts.convert(w, "keras", "tf1", forget_bias=1.0)
    i, j, f, o = np.split(tf1["bias"], 4)
    np.testing.assert_allclose(f + 1.0, w["bias"][U:2 * U], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(i, w["bias"][:U])
    np.testing.assert_array_equal(j, w["bias"][2 * U:3 * U])
    back = layouts.convert(tf1, "tf1", "keras", forget_bias=1.0)
    np.testing.assert_allclose(back["bias"], w["bias"], rtol=0, atol=1e-15)


def test_torch_biases_sum_and_gru_keeps_both(rng):
    w = {"weight_ih": rng.normal(size=(4 * U, I)), "weight_hh": rng.normal(size=(4 * U, U)),
         "bias_ih": rng.normal(size=4 * U), "bias_hh": rng.normal(size=4 * U)}
    k = layouts.convert(w, "torch", "keras")
    np.testing.assert_array_equal(k["bias"], w["bias_ih"] + w["bias_hh"])
    np.testing.assert_array_equal(k["kernel"], w["weight_ih"].T)   # same gate order i f g o
    g = {"weight_ih": rng.normal(size=(3 * U, I)), "weight_hh": rng.normal(size=(3 * U, U)),
         "bias_ih": rng.normal(size=3 * U), "bias_hh": rng.normal(size=3 * U)}
    kg = layouts.convert(g, "torch", "keras", "gru")
    r, z, n = np.split(g["bias_hh"], 3)
    np.testing.assert_array_equal(kg["bias"][1], np.concatenate([z, r, n]))
    back = layouts.convert(kg, "keras", "torch", "gru")
    for key in g:
        np.testing.assert_array_equal(back[key], g[key])


def test_onnx_lstm_gate_order_is_i_o_f_c(rng):
    w = canonical("lstm", rng)
    onnx = layouts.convert(w, "keras", "onnx")
    gi, go, gf, gc = np.split(onnx["W"][0], 4, axis=0)
    ki, kf, kg, ko = np.split(w["kernel"], 4, axis=1)
    for a, b in ((gi, ki), (go, ko), (gf, kf), (gc, kg)):
        np.testing.assert_array_equal(a, b.T)
    assert onnx["B"].shape == (1, 8 * U)
    np.testing.assert_array_equal(onnx["B"][0, 4 * U:], 0)


def test_onnx_bidirectional_directions(rng):
    fw, bw = canonical("lstm", rng), canonical("lstm", rng)
    both = layouts.onnx_concat_directions(layouts.convert(fw, "keras", "onnx"),
                                           layouts.convert(bw, "keras", "onnx"))
    assert both["W"].shape == (2, 4 * U, I)
    with pytest.raises(ValueError, match="direction"):
        layouts.convert(both, "onnx", "keras")
    back = layouts.convert(both, "onnx", "keras", direction=1)
    for k in bw:
        np.testing.assert_array_equal(back[k], bw[k])


def test_torch_state_dict_helpers_round_trip(torch):
    for cls, cell in ((torch.nn.LSTM, "lstm"), (torch.nn.GRU, "gru"), (torch.nn.RNN, "rnn")):
        mod = cls(I, U, num_layers=2, bidirectional=True)
        sd = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
        assert layouts.torch_structure(sd) == (2, True)
        params = layouts.from_torch_state_dict(mod.state_dict(), cell)
        assert "backward/kernel_l1" in params and params["forward/kernel_l0"].shape == (I, GATES[cell] * U)
        back = layouts.to_torch_state_dict(params, cell, num_layers=2, bidirectional=True)
        assert set(back) == set(sd)
        for k in sd:
            if cell == "gru" or k.startswith("weight"):
                np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
        if cell != "gru":   # the two biases come back summed into bias_ih
            np.testing.assert_allclose(back["bias_ih_l1_reverse"] + back["bias_hh_l1_reverse"],
                                       sd["bias_ih_l1_reverse"] + sd["bias_hh_l1_reverse"], atol=1e-6)


def test_torch_projections_round_trip(torch):
    sd = {k: v.numpy() for k, v in
          torch.nn.LSTM(I, U, proj_size=2, num_layers=2, bidirectional=True).state_dict().items()}
    params = layouts.from_torch_state_dict(sd)
    assert params["backward/projection_kernel_l1"].shape == (U, 2)
    np.testing.assert_array_equal(params["forward/projection_kernel_l0"], sd["weight_hr_l0"].T)
    assert params["forward/recurrent_kernel_l1"].shape == (2, 4 * U)
    assert params["forward/kernel_l1"].shape == (2 * 2, 4 * U)
    back = layouts.to_torch_state_dict(params, num_layers=2, bidirectional=True)
    assert set(back) == set(sd)
    for k in sd:
        if k.startswith("weight"):
            np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
    with pytest.raises(ValueError, match="proj_size"):
        layouts.convert({k[:-3]: v for k, v in sd.items() if k.endswith("_l0")}, "torch", "onnx")


def test_convert_state_between_all_conventions(rng):
    h, c = rng.normal(size=(B, U)), rng.normal(size=(B, U))
    assert [a.tolist() for a in layouts.convert_state(LSTMState(h, c), "lstmkit", "keras")] == \
        [h.tolist(), c.tolist()]
    c1, h1 = layouts.convert_state([h, c], "keras", "tf1")
    np.testing.assert_array_equal(c1, c)
    np.testing.assert_array_equal(h1, h)
    h_n, c_n = layouts.convert_state((c, h), "tf1", "torch")
    assert h_n.shape == (1, B, U)
    np.testing.assert_array_equal(h_n[0], h)
    np.testing.assert_array_equal(c_n[0], c)
    st = layouts.convert_state((h_n, c_n), "torch", "lstmkit")
    assert isinstance(st, LSTMState) and st.h.shape == (B, U)
    np.testing.assert_array_equal(st.c, c)
    # 2 layers, bidirectional: torch rows are layer * 2 + direction
    hn = rng.normal(size=(4, B, U))
    cn = rng.normal(size=(4, B, U))
    fw, bw = layouts.convert_state((hn, cn), "torch", "lstmkit", bidirectional=True)
    np.testing.assert_array_equal(fw.h, hn[[0, 2]])
    np.testing.assert_array_equal(bw.c, cn[[1, 3]])
    hn2, cn2 = layouts.convert_state((fw, bw), "lstmkit", "torch", bidirectional=True)
    np.testing.assert_array_equal(hn2, hn)
    np.testing.assert_array_equal(cn2, cn)
    g = layouts.convert_state(HiddenState(h), "lstmkit", "torch", "gru")
    np.testing.assert_array_equal(g, h[None])
    np.testing.assert_array_equal(layouts.convert_state(g, "torch", "tf1", "gru"), h)


def test_errors_name_key_expected_and_found(rng):
    w = canonical("lstm", rng)
    with pytest.raises(ValueError, match=r"weights\['kernel'\].*\(I, 16\).*\(3, 12\)"):
        layouts.convert({**w, "kernel": w["kernel"][:, :12]}, "keras", "torch")
    with pytest.raises(ValueError, match=r"missing \['recurrent_kernel'\]"):
        layouts.convert({"kernel": w["kernel"]}, "keras", "torch")
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l0'\]"):
        layouts.convert({"weight_ih_l0": 1, "weight_ih": 1, "weight_hh": 1}, "torch", "keras")
    with pytest.raises(ValueError, match=r"weights\['bias_hh'\].*\(16,\).*\(12,\)"):
        layouts.convert({"weight_ih": np.zeros((16, 3)), "weight_hh": np.zeros((16, 4)),
                         "bias_ih": np.zeros(16), "bias_hh": np.zeros(12)}, "torch", "keras")
    with pytest.raises(ValueError, match="source"):
        layouts.convert(w, "pytorch", "keras")
    with pytest.raises(ValueError, match="cell"):
        layouts.convert(w, "keras", "torch", cell="LSTM")
    with pytest.raises(ValueError, match="reset_after"):
        layouts.convert(canonical("gru", rng, reset_after=False), "keras", "torch", "gru")
    with pytest.raises(ValueError, match="linear_before_reset"):
        layouts.convert(layouts.convert(canonical("gru", rng), "keras", "onnx", "gru"), "onnx",
                        "keras", "gru")
    with pytest.raises(TypeError, match="state"):
        layouts.convert_state((np.zeros((B, U)),), "keras", "torch")
    with pytest.raises(ValueError, match="one layer and one direction"):
        layouts.convert_state((np.zeros((2, B, U)),) * 2, "torch", "keras")


def _tf1_step(tf, cell, x, state, canon_weights):
    """Run one step of a tf.compat.v1 cell whose variables are set from TF1-layout weights."""
    cell(tf.constant(x), state)              # builds the variables
    by_name = {v.name.split("/", 1)[1].rsplit(":", 1)[0]: v for v in cell.variables}
    assert set(by_name) == set(canon_weights), sorted(by_name)
    for k, v in canon_weights.items():
        by_name[k].assign(v)
    return cell(tf.constant(x), state)


@pytest.mark.parametrize("forget_bias", [1.0, 0.3])
def test_tf1_lstm_cell_layout(tf, forget_bias, rng):
    w = canonical("lstm", rng)
    x = rng.normal(size=(B, I)).astype("float32")
    h0, c0 = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    tf1_w = layouts.convert(w, "keras", "tf1", forget_bias=forget_bias)
    for cls in (tf.compat.v1.nn.rnn_cell.LSTMCell, tf.compat.v1.nn.rnn_cell.BasicLSTMCell):
        cell = cls(U, forget_bias=forget_bias)
        state = tf.compat.v1.nn.rnn_cell.LSTMStateTuple(tf.constant(c0), tf.constant(h0))
        out, st = _tf1_step(tf, cell, x, state, tf1_w)
        ours = kernels.lstm_forward(x[:, None], None, h0, c0, **w)
        np.testing.assert_allclose(out.numpy(), ours[0][:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st.c.numpy(), ours[2], rtol=1e-5, atol=1e-6)
        # and back: the weights the cell holds convert to the canonical ones
        held = {v.name.split("/", 1)[1].rsplit(":", 1)[0]: v.numpy() for v in cell.variables}
        back = layouts.convert(held, "tf1", "keras", forget_bias=forget_bias)
        np.testing.assert_allclose(back["bias"], w["bias"], rtol=0, atol=1e-6)


def test_tf1_gru_cell_layout(tf, rng):
    w = canonical("gru", rng, reset_after=False)
    x = rng.normal(size=(B, I)).astype("float32")
    h0 = rng.normal(size=(B, U)).astype("float32")
    tf1_w = layouts.convert(w, "keras", "tf1", "gru")
    cell = tf.compat.v1.nn.rnn_cell.GRUCell(U)
    out, st = _tf1_step(tf, cell, x, tf.constant(h0), tf1_w)
    ours = kernels.gru_forward(x[:, None], None, h0, **w, reset_after=False)
    np.testing.assert_allclose(out.numpy(), ours[0][:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.numpy(), ours[1], rtol=1e-5, atol=1e-6)


def test_tf1_basic_rnn_cell_layout(tf, rng):
    w = canonical("rnn", rng)
    x = rng.normal(size=(B, I)).astype("float32")
    h0 = rng.normal(size=(B, U)).astype("float32")
    cell = tf.compat.v1.nn.rnn_cell.BasicRNNCell(U)
    out, _ = _tf1_step(tf, cell, x, tf.constant(h0), layouts.convert(w, "keras", "tf1", "rnn"))
    ours = kernels.rnn_forward(x[:, None], None, h0, **w)
    np.testing.assert_allclose(out.numpy(), ours[0][:, 0], rtol=1e-5, atol=1e-6)


ONNX_OPS = {"lstm": ("LSTM", lstmkit.LSTM), "gru": ("GRU", lstmkit.GRU), "rnn": ("RNN", lstmkit.SimpleRNN)}


@pytest.mark.parametrize("cell,reset_after", CASES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_onnx_runtime_computes_the_same_with_converted_weights(cell, reset_after, bidirectional, rng):
    """One ONNX LSTM/GRU/RNN node (time-major, sequence_lens) on weights from layouts.convert."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    op, cls = ONNX_OPS[cell]
    T, lengths = 5, np.array([5, 2], np.int32)
    layer = cls(U, seed=1, **({"reset_after": reset_after} if cell == "gru" else {}))
    if bidirectional:
        layer = lstmkit.Bidirectional(layer)
    x = rng.normal(size=(B, T, I)).astype("float32")
    layer.build(x.shape)
    for p in layer.params.values():
        p += rng.uniform(-0.5, 0.5, size=p.shape).astype("float32")
    opts = {"linear_before_reset": int(reset_after)} if cell == "gru" else {}
    subs = [layer.forward_layer, layer.backward_layer] if bidirectional else [layer]
    parts = [layouts.convert(s.params, "keras", "onnx", cell, **opts) for s in subs]
    w = layouts.onnx_concat_directions(*parts) if bidirectional else parts[0]
    attrs = {"hidden_size": U, "direction": "bidirectional" if bidirectional else "forward"}
    if cell == "gru":
        attrs["linear_before_reset"] = int(reset_after)
    outs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    node = helper.make_node(op, ["X", "W", "R", "B", "sequence_lens"], outs, **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        initializer=[numpy_helper.from_array(w[k], k) for k in ("W", "R", "B")] +
                    [numpy_helper.from_array(lengths, "sequence_lens")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"X": x.transpose(1, 0, 2).copy()})
    res = layer(x, lengths=lengths)
    D = 2 if bidirectional else 1
    Y = got[0].transpose(2, 0, 1, 3).reshape(B, T, D * U)      # (T, D, B, U) -> (B, T, D*U)
    np.testing.assert_allclose(res.outputs, Y, rtol=1e-5, atol=1e-5)
    ours = (res.forward.state, res.backward.state) if bidirectional else res.state
    ours = layouts.convert_state(ours, "lstmkit", "onnx", cell, bidirectional=bidirectional)
    for a, b in zip(ours if cell == "lstm" else (ours,), got[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_tf1_dynamic_rnn_with_converted_weights(tf, cell, rng):
    """Whole sequences through tf.compat.v1.nn.dynamic_rnn (sequence_length, initial state) on
    weights from layouts.convert: outputs (zero past each length), final state and gradients."""
    v1 = tf.compat.v1.nn
    T, lengths = 5, np.array([5, 2])
    cls = {"lstm": lstmkit.LSTM, "gru": lstmkit.GRU, "rnn": lstmkit.SimpleRNN}[cell]
    layer = cls(U, seed=2, **({"reset_after": False} if cell == "gru" else {}))
    x = rng.normal(size=(B, T, I)).astype("float32")
    layer.build(x.shape)
    for p in layer.params.values():
        p += rng.uniform(-0.5, 0.5, size=p.shape).astype("float32")
    opts = {"forget_bias": 1.0} if cell == "lstm" else {}
    tf_cell = {"lstm": lambda: v1.rnn_cell.LSTMCell(U, forget_bias=1.0),
               "gru": lambda: v1.rnn_cell.GRUCell(U),
               "rnn": lambda: v1.rnn_cell.BasicRNNCell(U)}[cell]()
    fields = layer.State._fields
    s0 = [rng.normal(size=(B, U)).astype("float32") for _ in fields]
    tf_s0 = (v1.rnn_cell.LSTMStateTuple(tf.constant(s0[1]), tf.constant(s0[0])) if cell == "lstm"
             else tf.constant(s0[0]))
    tf_cell(tf.constant(x[:, 0]), tf_s0)          # build the variables
    by_name = {v.name.split("/", 1)[1].rsplit(":", 1)[0]: v for v in tf_cell.variables}
    for k, v in layouts.convert(layer.params, "keras", "tf1", cell, **opts).items():
        by_name[k].assign(v)
    d_out = rng.normal(size=(B, T, U)).astype("float32")
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        out, st = v1.dynamic_rnn(tf_cell, xv, sequence_length=lengths, initial_state=tf_s0)
        loss = tf.reduce_sum(out * d_out)
    grads = tape.gradient(loss, [xv] + list(by_name.values()))

    res, cache = layer.forward(x, lengths=lengths, initial_state=layer.State(*s0), training=True)
    np.testing.assert_allclose(res.outputs, out.numpy(), rtol=1e-5, atol=1e-5)
    theirs = layouts.convert_state(st, "tf1", "lstmkit", cell)
    for f in fields:
        np.testing.assert_allclose(getattr(res.state, f), getattr(theirs, f), rtol=1e-5, atol=1e-5)
    layer.zero_grad()
    g = layer.backward(cache, (d_out, None))
    np.testing.assert_allclose(g.inputs, grads[0].numpy(), rtol=1e-5, atol=1e-5)
    # a gradient converts like the weights, without the forget-bias shift
    ours = layouts.convert(layer.grads, "keras", "tf1", cell, **({"forget_bias": 0.0} if opts else {}))
    for name, gv in zip(by_name, grads[1:]):
        np.testing.assert_allclose(ours[name], gv.numpy(), rtol=1e-5, atol=2e-5, err_msg=name)
