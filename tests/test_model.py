"""The functional Model, Input and Sequential (lstmkit.model) against Keras 3: graphs with several
inputs and outputs, shared layers, nested models, layer order and weights, summary() parameter
counts, and gradients of a whole model against tf.GradientTape."""
import numpy as np
import pytest

import lstmkit.keras as lk
from lstmkit import model as M
from lstmkit.keras import layers as L

from test_keras_compat import close


def seq2seq(ns, models, units=8, src_vocab=12, tgt_vocab=10):
    """The seed's encoder-decoder: the decoder starts from the encoder's [h, c]."""
    enc_in = ns.Input(shape=(None,), dtype="int32")
    dec_in = ns.Input(shape=(None,), dtype="int32")
    enc = ns.Embedding(src_vocab, 6, mask_zero=True)(enc_in)
    _, h, c = ns.LSTM(units, return_state=True)(enc)
    dec = ns.Embedding(tgt_vocab, 5, mask_zero=True)(dec_in)
    dec_seq = ns.LSTM(units, return_sequences=True)(dec, initial_state=[h, c])
    probs = ns.TimeDistributed(ns.Dense(tgt_vocab, activation="softmax"))(dec_seq)
    return models.Model([enc_in, dec_in], probs)


def shared_multi_output(ns, models):
    a = ns.Input(shape=(4, 3))
    b = ns.Input(shape=(4, 3))
    shared = ns.LSTM(5, return_sequences=True)
    sa, sb = shared(a), shared(b)                         # one layer, two calls
    both = ns.Concatenate()([sa, sb])
    out, h, c = ns.LSTM(2, return_state=True)(both)
    head = ns.Dense(1)
    return models.Model([a, b], [out, head(h), head(c), sa])


@pytest.fixture
def ids(rng):
    src = np.array([[3, 5, 2, 0], [1, 2, 3, 4], [7, 0, 0, 0]])
    tgt = np.array([[1, 4, 0, 0, 0], [1, 2, 3, 4, 5], [1, 9, 9, 0, 0]])
    return src, tgt


def test_seq2seq_model_matches_keras(keras3, ids):
    km, om = seq2seq(keras3.layers, keras3), seq2seq(L, lk)
    assert [type(l).__name__ for l in om.layers] == [type(l).__name__ for l in km.layers]
    assert [w.shape for w in om.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    om.set_weights(km.get_weights())
    close(om.predict(list(ids)), km.predict(list(ids), verbose=0))
    assert om.count_params() == km.count_params()
    assert [l.count_params() for l in om.layers] == [l.count_params() for l in km.layers]


def test_shared_layers_and_several_outputs(keras3, rng):
    km, om = shared_multi_output(keras3.layers, keras3), shared_multi_output(L, lk)
    assert [w.shape for w in om.get_weights()] == [tuple(w.shape) for w in km.get_weights()]
    om.set_weights(km.get_weights())
    x = [rng.normal(size=(5, 4, 3)).astype("float32") for _ in range(2)]
    ours = om.predict(x, batch_size=2)                     # batches of 2, 2 and 1 rows
    assert isinstance(ours, list) and len(ours) == 4
    close(ours, km.predict(x, verbose=0))
    close(om(x), ours)
    assert om.count_params() == km.count_params()


def test_nested_model_as_a_layer(keras3, rng):
    def build(ns, models):
        inner_in = ns.Input(shape=(None, 3))
        inner = models.Model(inner_in, ns.LSTM(4, return_sequences=True)(inner_in))
        x = ns.Input(shape=(6, 3))
        y = ns.GRU(2)(inner(x))
        return models.Model(x, y)
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    close(om.predict(x), km.predict(x, verbose=0))


@pytest.mark.parametrize("build", ["seed000", "seed001_seq", "seed001_state", "seed001_both",
                                   "seq2seq", "bidir", "sequential"])
def test_summary_parameter_counts_equal_keras(keras3, build, capsys):
    def make(ns, models):
        if build == "sequential":
            return models.Sequential([ns.Input((None, 2)), ns.LSTM(4, return_sequences=True),
                                      ns.TimeDistributed(ns.Dense(3)), ns.GRU(2)])
        if build == "seq2seq":
            return seq2seq(ns, models)
        x = ns.Input(shape=(3, 1) if build.startswith("seed001") else (2, 2))
        if build == "seed000":
            outs = ns.LSTM(4, return_sequences=True, return_state=True)(x)
        elif build == "seed001_seq":
            outs = ns.LSTM(1, return_sequences=True)(x)
        elif build == "seed001_state":
            outs = ns.LSTM(1, return_state=True)(x)
        elif build == "seed001_both":
            outs = ns.LSTM(1, return_sequences=True, return_state=True)(x)
        else:
            outs = ns.Bidirectional(ns.GRU(3, return_state=True), merge_mode="sum")(x)
        return models.Model(inputs=x, outputs=outs)
    km, om = make(keras3.layers, keras3), make(L, lk)
    om.summary()
    printed = capsys.readouterr().out
    assert f"Total params: {km.count_params():,}" in printed
    for kl, ol in zip([l for l in km.layers if l.count_params()], [l for l in om.layers if l.count_params()]):
        assert ol.count_params() == kl.count_params()
        assert f"{ol.name} ({type(ol).__name__})" in printed
        assert f"{ol.count_params():,}" in printed
    assert om.count_params() == km.count_params()


def test_model_gradients_match_gradient_tape(keras3, tf, ids, rng):
    def build(ns, models):
        tok = ns.Input(shape=(None,), dtype="int32")
        feats = ns.Input(shape=(5, 2))
        emb = ns.Embedding(12, 4, mask_zero=True)(tok)
        enc, fh, fc, bh, bc = ns.Bidirectional(ns.LSTM(3, return_sequences=True, return_state=True),
                                               merge_mode="concat")(emb)
        summary_h = ns.Concatenate()([fh, bh])
        summary_c = ns.Concatenate()([fc, bc])
        dec = ns.LSTM(6, return_sequences=True)(feats, initial_state=[summary_h, summary_c])
        shared = ns.Dense(4, activation="tanh")
        return models.Model([tok, feats], [shared(dec), ns.GRU(2, go_backwards=True)(enc), shared(summary_h)])
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    src = ids[0]
    feats = rng.normal(size=(3, 5, 2)).astype("float32")
    outs, cache = om.forward([src, feats], training=True)
    weights = [rng.normal(size=o.shape).astype("float32") for o in outs]

    feats_t = tf.constant(feats)
    with tf.GradientTape() as tape:
        tape.watch(feats_t)
        k_outs = km([tf.constant(src), feats_t], training=False)
        loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(k_outs, weights)])
    k_grads = tape.gradient(loss, km.trainable_weights + [feats_t])
    close(outs, [o.numpy() for o in k_outs])
    om.zero_grad()
    d_tok, d_feats = om.backward(cache, weights)
    assert d_tok is None                                   # token ids have no gradient
    ours = list(om.grads.values()) + [d_feats]
    assert len(ours) == len(k_grads)
    for name, a, b in zip(list(om.grads) + ["feats"], ours, k_grads):
        np.testing.assert_allclose(a, tf.convert_to_tensor(b).numpy(), atol=2e-5, rtol=1e-4,
                                   err_msg=name)


def test_sequential_builds_from_the_first_batch(keras3, rng):
    x = rng.normal(size=(4, 3, 2)).astype("float32")
    om = lk.Sequential()
    om.add(L.LSTM(3, return_sequences=True))
    om.add(L.Dense(2))
    assert not om.built
    y = om.predict(x)
    assert y.shape == (4, 3, 2) and om.built
    km = keras3.Sequential([keras3.layers.LSTM(3, return_sequences=True), keras3.layers.Dense(2)])
    km.build((None, 3, 2))
    km.set_weights(om.get_weights())
    close(y, km.predict(x, verbose=0))
    assert [l.name for l in om.layers] == [l.name for l in om.layers if "input" not in l.name]


def test_graph_errors():
    x = M.Input(shape=(3, 2))
    with pytest.raises(TypeError, match="cannot unpack a single symbolic tensor"):
        out, h, c = L.LSTM(2)(x)
    with pytest.raises(TypeError, match="outputs: expected symbolic tensors"):
        lk.Model(x, np.zeros(3))
    other = M.Input(shape=(3, 2))
    with pytest.raises(ValueError, match="not among the model's inputs"):
        lk.Model(x, L.Concatenate()([x, other]))
    m = lk.Model(x, L.LSTM(2)(x))
    with pytest.raises(ValueError, match=r"expects shape \(None, 3, 2\), got \(4, 3\)"):
        m.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="takes 1 input array"):
        m.predict([np.zeros((4, 3, 2))] * 2)
    with pytest.raises(ValueError, match="expects a list of 3 arrays"):
        m.set_weights([np.zeros(1)])
    with pytest.raises(ValueError, match="not built yet"):
        lk.Sequential([L.LSTM(2)]).summary()


def test_flatten_and_pack_round_trip():
    struct = [1, [2, 3], [[4]], 5]
    assert M.flatten(struct) == [1, 2, 3, 4, 5]
    assert M.pack_like(struct, M.flatten(struct)) == struct


def test_inference_decoder_with_state_inputs(keras3, rng):
    """Keras's seq2seq inference set-up: the decoder's initial state comes from Input tensors."""
    def build(ns, models):
        dec_in = ns.Input(shape=(None, 5))
        h_in, c_in = ns.Input(shape=(6,)), ns.Input(shape=(6,))
        seq, h, c = ns.LSTM(6, return_sequences=True, return_state=True)(dec_in, initial_state=[h_in, c_in])
        return models.Model([dec_in, h_in, c_in], [ns.Dense(5, activation="softmax")(seq), h, c])
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    c = rng.normal(size=(2, 6)).astype("float32")
    x = [rng.normal(size=(2, 1, 5)).astype("float32"), 0.5 * np.tanh(c), c]
    close(om.predict(x), km.predict(x, verbose=0))


def test_stateful_model_carries_across_predict_calls(keras3, rng):
    def build(ns, models):
        x = ns.Input(shape=(None, 3), batch_size=2)
        return models.Model(x, ns.GRU(4, stateful=True, return_sequences=True)(x))
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    chunks = [rng.normal(size=(2, 3, 3)).astype("float32") for _ in range(3)]
    for chunk in chunks:
        close(om.predict(chunk), km.predict(chunk, verbose=0))
    om.layers[1].reset_states()
    km.layers[1].reset_states()
    close(om.predict(chunks[0]), km.predict(chunks[0], verbose=0))


def test_masks_through_bidirectional_and_concatenate(keras3):
    ids = np.array([[3, 5, 2, 0, 0], [1, 2, 3, 4, 5], [7, 1, 0, 0, 0]])

    def build(ns, models):
        inp = ns.Input(shape=(5,), dtype="int32")
        emb = ns.Embedding(10, 4, mask_zero=True)(inp)
        a = ns.Bidirectional(ns.LSTM(3, return_sequences=True), merge_mode="ave")(emb)
        b = ns.SimpleRNN(2, return_sequences=True)(ns.Dropout(0.3)(emb))
        joined = ns.Concatenate()([a, b])
        return models.Model(inp, [joined, ns.LSTM(2)(ns.TimeDistributed(ns.Dense(3))(joined)),
                                  ns.GRU(2)(ns.RepeatVector(5)(ns.LSTM(2)(joined)))])
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    close(om.predict(ids), km.predict(ids, verbose=0))


def test_symbolic_errors_speak_of_the_symbolic_shapes():
    x = M.Input(shape=(7,))
    with pytest.raises(ValueError, match=r"3-D array.*symbolic input\(s\) of shape \(None, 7\)"):
        L.LSTM(2)(x)
    import lstmkit
    with pytest.raises(TypeError, match="Keras-named layers"):
        lstmkit.LSTM(2)(M.Input(shape=(3, 2)))


@pytest.mark.parametrize("variant", ["masking_bidir_mul", "repeat_timedistributed", "bidir_none_gru"])
def test_more_gradients_match_gradient_tape(keras3, tf, rng, variant):
    def build(ns, models):
        x = ns.Input(shape=(5, 3))
        if variant == "masking_bidir_mul":
            m = ns.Masking()(x)
            y = ns.Bidirectional(ns.LSTM(4, return_sequences=True), merge_mode="mul")(m)
            y = ns.Activation("softmax")(ns.SimpleRNN(3, return_sequences=True, go_backwards=True)(y))
            return models.Model(x, y)
        if variant == "repeat_timedistributed":
            h = ns.GRU(4, reset_after=False)(x)
            seq = ns.LSTM(3, return_sequences=True)(ns.RepeatVector(4)(h))
            return models.Model(x, [ns.TimeDistributed(ns.Dense(2, activation="softmax"))(seq),
                                    ns.Dropout(0.5)(h)])
        out = ns.Bidirectional(ns.GRU(3, return_sequences=True, return_state=True),
                               merge_mode=None)(x)
        return models.Model(x, out)
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    x[1, 3:] = 0.0                                          # padding for Masking
    outs, cache = om.forward(x, training=False)
    outs = outs if isinstance(outs, list) else [outs]
    weights = [rng.normal(size=o.shape).astype("float32") for o in outs]
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        k_outs = km(x_t, training=False)
        k_outs = k_outs if isinstance(k_outs, (list, tuple)) else [k_outs]
        loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(k_outs, weights)])
    k_grads = tape.gradient(loss, km.trainable_weights + [x_t])
    close(outs, [o.numpy() for o in k_outs])
    om.zero_grad()
    d_x = om.backward(cache, weights if len(weights) > 1 else weights[0])
    for name, a, b in zip(list(om.grads) + ["x"], list(om.grads.values()) + [d_x], k_grads):
        np.testing.assert_allclose(a, b.numpy(), atol=2e-5, rtol=1e-4, err_msg=name)


def test_time_major_gradient_is_the_transposed_one(rng):
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    a = L.LSTM(3, return_sequences=True)
    b = L.LSTM(3, return_sequences=True, time_major=True)
    a(x), b(x.transpose(1, 0, 2))
    b.set_weights(a.get_weights())
    d = rng.normal(size=(3, 4, 3)).astype("float32")
    ya, ca = a.forward(x)
    yb, cb = b.forward(x.transpose(1, 0, 2))
    np.testing.assert_allclose(yb.transpose(1, 0, 2), ya, atol=1e-6)
    np.testing.assert_allclose(b.backward(cb, d.transpose(1, 0, 2)).transpose(1, 0, 2),
                               a.backward(ca, d), atol=1e-6)
    for k in a.grads:
        np.testing.assert_allclose(b.grads[k], a.grads[k], atol=1e-5)
