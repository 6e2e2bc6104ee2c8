"""ONNX export: ONNX Runtime on the exported graph gives lstmkit's numbers (1e-5)."""
import numpy as np
import pytest

import lstmkit
from lstmkit import interop

I, U = 3, 4


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _session(ort, model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


LAYERS = {
    "lstm": lambda: lstmkit.LSTM(U, seed=0),
    "lstm_reverse": lambda: lstmkit.LSTM(U, seed=0, reverse=True),
    "lstm_stacked": lambda: lstmkit.LSTM(U, num_layers=3, seed=0),
    "lstm_bidirectional_stacked": lambda: lstmkit.Bidirectional(lstmkit.LSTM(U, num_layers=2, seed=0)),
    "lstm_hard_sigmoid": lambda: lstmkit.LSTM(U, recurrent_activation="hard_sigmoid", seed=0),
    "gru": lambda: lstmkit.GRU(U, seed=0),
    "gru_reset_before": lambda: lstmkit.GRU(U, reset_after=False, num_layers=2, seed=0),
    "gru_bidirectional": lambda: lstmkit.Bidirectional(lstmkit.GRU(U, seed=0)),
    "rnn_bidirectional_stacked": lambda: lstmkit.Bidirectional(lstmkit.SimpleRNN(U, num_layers=2, seed=0)),
    "rnn_relu": lambda: lstmkit.SimpleRNN(U, activation="relu", seed=0),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_onnx_runtime_equals_lstmkit(kind, ort, rng, tmp_path):
    layer = LAYERS[kind]()
    layer(np.zeros((1, 1, I), np.float32))   # build
    for p in layer.params.values():           # non-trivial biases too
        p[...] = rng.normal(scale=0.5, size=p.shape)
    path = tmp_path / "m.onnx"
    interop.to_onnx(layer, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    # dynamic batch and time: two different shapes through the same graph
    for B, T, lengths in ((3, 5, [5, 2, 1]), (2, 7, [4, 7])):
        x = rng.normal(size=(B, T, I)).astype(np.float32)
        res = layer(x, lengths=lengths)
        got = dict(zip(names, sess.run(None, {"x": x, "lengths": np.asarray(lengths, np.int32)})))
        np.testing.assert_allclose(got["outputs"], res.outputs, atol=1e-5)
        np.testing.assert_allclose(got["h"], res.state.h, atol=1e-5)
        if "c" in names:
            np.testing.assert_allclose(got["c"], res.state.c, atol=1e-5)


def test_without_lengths_and_batch_major_io(ort, rng):
    layer = lstmkit.LSTM(U, seed=0, masked_output="repeat")   # fine without lengths
    x = rng.normal(size=(2, 6, I)).astype(np.float32)
    res = layer(x)
    model = interop.to_onnx(layer, lengths=False)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input}
    assert inputs == {"x": ["batch", "time", I]}
    out, h, c = _session(ort, model).run(None, {"x": x})
    np.testing.assert_allclose(out, res.outputs, atol=1e-5)
    np.testing.assert_allclose(h, res.h, atol=1e-5)
    np.testing.assert_allclose(c, res.c, atol=1e-5)


def test_refusals(rng):
    pytest.importorskip("onnx")
    layer = lstmkit.LSTM(U, masked_output="repeat")
    layer.build((1, 1, I))
    with pytest.raises(ValueError, match="masked_output='repeat'"):
        interop.to_onnx(layer)
    bi = lstmkit.Bidirectional(lstmkit.LSTM(U), merge_mode="sum")
    bi.build((1, 1, I))
    with pytest.raises(NotImplementedError, match="merge_mode"):
        interop.to_onnx(bi)
    with pytest.raises(ValueError, match="not built"):
        interop.to_onnx(lstmkit.GRU(U))


def test_keras_named_sequential(ort, rng):
    import lstmkit.keras as K
    L = K.layers
    model = K.Sequential([K.Input((None, I)), L.LSTM(4, return_sequences=True, go_backwards=True),
                          L.Bidirectional(L.GRU(3, return_sequences=True)), L.Dropout(0.5),
                          L.TimeDistributed(L.Dense(5, activation="tanh")),
                          L.SimpleRNN(2), L.Dense(3, activation="softmax")])
    x = rng.normal(size=(2, 6, I)).astype(np.float32)
    model.predict(x)
    for p in model.params.values():
        p[...] = rng.normal(scale=0.5, size=p.shape)
    sess = _session(ort, interop.to_onnx(model))
    for B, T in ((2, 6), (4, 3)):
        x = rng.normal(size=(B, T, I)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], model.predict(x), atol=1e-5)
    with pytest.raises(NotImplementedError, match="Masking is not exported"):
        interop.to_onnx(K.Sequential([K.Input((None, I)), L.Masking(), L.LSTM(2)]))


TRANSLATORS = [dict(attention=None), dict(attention="general"), dict(attention="dot", num_layers=2),
               dict(attention="additive", input_feeding=False),
               dict(attention="general", tie_embeddings=True, embedding_size=16, num_layers=2)]


@pytest.mark.parametrize("kw", TRANSLATORS)
def test_translator_encoder_and_decoder_step(kw, ort, rng, tmp_path):
    from lstmkit.seq2seq import Seq2Seq
    m = Seq2Seq(20, 30, **({"embedding_size": 8, "hidden_size": 16} | kw), seed=0, dropout=0.0)
    for p in m.params.values():
        p[...] = rng.normal(scale=0.3, size=p.shape)
    interop.seq2seq_to_onnx(m, tmp_path / "enc.onnx", tmp_path / "dec.onnx")
    enc = ort.InferenceSession(str(tmp_path / "enc.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "dec.onnx"), providers=["CPUExecutionProvider"])
    src = rng.integers(4, 20, size=(3, 6))
    lens = np.array([6, 3, 1])
    ds = m.start(src, lens)
    e = dict(zip([o.name for o in enc.get_outputs()],
                 enc.run(None, {"src": src.astype(np.int64), "src_lengths": lens.astype(np.int32)})))
    np.testing.assert_allclose(e["h"], ds.lstm.h, atol=1e-5)
    np.testing.assert_allclose(e["c"], ds.lstm.c, atol=1e-5)
    feeds = {"h": e["h"], "c": e["c"]}
    if m.attention is not None:
        np.testing.assert_allclose(e["keys"], ds.keys, atol=1e-5)
        np.testing.assert_allclose(e["memory"], ds.memory, atol=1e-5)
        np.testing.assert_array_equal(e["mask"], ds.mask)
        feeds.update({k: e[k] for k in ("keys", "memory", "mask")})
    if m.input_feeding:
        feeds["feed"] = ds.feed
    tokens = np.array([2, 2, 2])
    for _ in range(3):   # greedy steps, the state carried through the graph's outputs
        logp, w, ds = m.step(ds, tokens)
        d = dict(zip([o.name for o in dec.get_outputs()],
                     dec.run(None, {**feeds, "tokens": tokens.astype(np.int64)})))
        np.testing.assert_allclose(d["log_probs"], logp, atol=1e-5)
        np.testing.assert_allclose(d["h_next"], ds.lstm.h, atol=1e-5)
        np.testing.assert_allclose(d["c_next"], ds.lstm.c, atol=1e-5)
        if w is not None:
            np.testing.assert_allclose(d["weights"], w, atol=1e-5)
        feeds["h"], feeds["c"] = d["h_next"], d["c_next"]
        if m.input_feeding:
            np.testing.assert_allclose(d["feed_next"], ds.feed, atol=1e-5)
            feeds["feed"] = d["feed_next"]
        tokens = logp.argmax(-1)
    with pytest.raises(TypeError, match="seq2seq_to_onnx"):
        interop.to_onnx(m)
