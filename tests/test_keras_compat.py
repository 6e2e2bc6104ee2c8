"""lstmkit.keras against the real Keras 3: same weights (copied with set_weights), same numbers.

Every layer is built on both sides, Keras's weights are copied into lstmkit's, and outputs and states
are compared in float32 (atol 1e-5). Expected values come from Keras, never from lstmkit itself.
"""
import numpy as np
import pytest

import lstmkit
import lstmkit.keras as lk
from lstmkit.keras import layers as L

ATOL = 1e-5


def close(ours, theirs, atol=ATOL):
    ours = ours if isinstance(ours, (list, tuple)) else [ours]
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for a, b in zip(ours, theirs):
        b = np.asarray(b)
        assert isinstance(a, np.ndarray)
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


def both(keras3, make, x, **call):
    """Build the same layer in Keras and lstmkit, copy Keras's weights over, call both."""
    k_layer, o_layer = make(keras3.layers), make(L)
    theirs = k_layer(x, **call)
    o_layer(x, **call)
    o_layer.set_weights(k_layer.get_weights())
    return o_layer(x, **call), theirs, o_layer, k_layer


@pytest.fixture
def seqs(rng):
    return rng.normal(size=(3, 5, 4)).astype("float32")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_return_structures(keras3, seqs, kind, return_sequences, return_state, go_backwards):
    make = lambda ns: getattr(ns, kind)(6, return_sequences=return_sequences,
                                        return_state=return_state, go_backwards=go_backwards)
    ours, theirs, _, _ = both(keras3, make, seqs)
    assert isinstance(ours, list) == return_state
    close(ours, list(theirs) if return_state else theirs)
    if return_state and return_sequences:
        # Keras's identity: the last output (in processing order) is h.
        np.testing.assert_array_equal(ours[0][:, -1], ours[1])


@pytest.mark.parametrize("kind,kwargs", [
    ("LSTM", dict(activation="relu", recurrent_activation="hard_sigmoid")),
    ("LSTM", dict(use_bias=False)),
    ("LSTM", dict(unit_forget_bias=False, bias_initializer="ones")),
    ("GRU", dict(reset_after=False)),
    ("GRU", dict(recurrent_activation="hard_sigmoid", use_bias=False)),
    ("SimpleRNN", dict(activation="relu")),
    ("LSTM", dict(dropout=0.3, recurrent_dropout=0.4, unroll=True)),   # inference: no dropout
])
def test_cell_arguments(keras3, seqs, kind, kwargs):
    make = lambda ns: getattr(ns, kind)(5, return_sequences=True, return_state=True, **kwargs)
    ours, theirs, o_layer, k_layer = both(keras3, make, seqs)
    close(ours, list(theirs))
    assert [w.shape for w in o_layer.get_weights()] == [tuple(w.shape) for w in k_layer.get_weights()]


def test_initializers_by_name_match_keras_deterministic_ones(keras3, seqs):
    for ufb in (True, False):
        k = keras3.layers.LSTM(3, unit_forget_bias=ufb, bias_initializer="zeros")
        o = L.LSTM(3, unit_forget_bias=ufb, bias_initializer="zeros")
        k(seqs), o(seqs)
        np.testing.assert_array_equal(o.get_weights()[2], k.get_weights()[2])
    o = L.LSTM(3, kernel_initializer="ones", recurrent_initializer="zeros")
    o(seqs)
    assert np.all(o.cell.kernel == 1) and np.all(o.cell.recurrent_kernel == 0)
    o = L.LSTM(3, kernel_initializer="Ones", bias_initializer="Zeros", unit_forget_bias=False)
    o(seqs)                                            # Keras's class-name spellings
    assert np.all(o.cell.kernel == 1) and np.all(o.cell.bias == 0)


def test_float64_layer_matches_keras(keras3, seqs):
    make = lambda ns: ns.GRU(4, return_sequences=True, dtype="float64")
    ours, theirs, _, _ = both(keras3, make, seqs.astype("float64"))
    assert ours.dtype == np.float64 and np.asarray(theirs).dtype == np.float64
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_explicit_mask_repeats_last_valid_output(keras3, seqs, kind, go_backwards):
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], bool)   # also a hole
    make = lambda ns: getattr(ns, kind)(4, return_sequences=True, return_state=True,
                                        go_backwards=go_backwards)
    ours, theirs, _, _ = both(keras3, make, seqs, mask=mask)
    close(ours, list(theirs))
    if not go_backwards:
        np.testing.assert_array_equal(ours[0][1, 3], ours[0][1, 2])   # repeated, not zero


@pytest.mark.parametrize("kind,n", [("LSTM", 2), ("GRU", 1), ("SimpleRNN", 1)])
def test_initial_state(keras3, seqs, rng, kind, n):
    states = [np.tanh(rng.normal(size=(3, 4))).astype("float32") for _ in range(n)]
    if n == 2:   # a consistent [h, c]: |h| <= |tanh(c)|
        states = [0.5 * np.tanh(states[1]), states[1]]
    make = lambda ns: getattr(ns, kind)(4, return_state=True)
    ours, theirs, _, _ = both(keras3, make, seqs, initial_state=states)
    close(ours, list(theirs))


def test_initial_state_in_inputs_list(keras3, seqs, rng):
    h = np.zeros((3, 4), "float32")
    c = rng.normal(size=(3, 4)).astype("float32")
    k = keras3.layers.LSTM(4, return_state=True)
    theirs = k(seqs, initial_state=[h, c])
    o = L.LSTM(4, return_state=True)
    o(seqs)
    o.set_weights(k.get_weights())
    close(o([seqs, h, c]), list(theirs))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional(keras3, seqs, merge_mode, return_sequences):
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)
    make = lambda ns: ns.Bidirectional(ns.LSTM(4, return_sequences=return_sequences,
                                                return_state=True), merge_mode=merge_mode)
    ours, theirs, o_layer, k_layer = both(keras3, make, seqs, mask=mask)
    assert len(ours) == len(theirs) == (6 if merge_mode is None else 5)   # [out, fw_h, fw_c, bw_h, bw_c]
    close(ours, list(theirs))
    assert o_layer.count_params() == k_layer.count_params()


def test_bidirectional_gru_initial_state(keras3, seqs, rng):
    states = [np.tanh(rng.normal(size=(3, 3))).astype("float32") for _ in range(2)]
    make = lambda ns: ns.Bidirectional(ns.GRU(3, return_sequences=True, return_state=True))
    ours, theirs, _, _ = both(keras3, make, seqs, initial_state=states)
    close(ours, list(theirs))


def test_stateful_carries_state_across_calls(keras3, seqs):
    k = keras3.layers.LSTM(4, stateful=True, return_state=True)
    o = L.LSTM(4, stateful=True, return_state=True)
    k(seqs)
    o(seqs)
    k.reset_states()
    o.reset_states()
    o.set_weights(k.get_weights())
    first, second = seqs[:, :2], seqs[:, 2:]
    close(o(first), list(k(first)))
    close(o(second), list(k(second)))           # starts from the state left by the first call
    whole = L.LSTM(4, return_state=True)
    whole(seqs)
    whole.set_weights(k.get_weights())
    close(o.states, whole(seqs)[1:])            # split sequence with carried state == whole
    k.reset_states()
    o.reset_states()
    close(o(second), list(k(second)))


def test_time_major_is_the_transposed_batch_major_layer(keras3, seqs):
    # Keras 3 dropped time_major; tf.keras 2 defined it as (time, batch, features) in and out.
    make = lambda ns: ns.LSTM(4, return_sequences=True, return_state=True)
    ours, theirs, o_layer, _ = both(keras3, make, seqs)
    tm = L.LSTM(4, return_sequences=True, return_state=True, time_major=True)
    tm(seqs.transpose(1, 0, 2))
    tm.set_weights(o_layer.get_weights())
    out, h, c = tm(seqs.transpose(1, 0, 2))
    close([out.transpose(1, 0, 2), h, c], list(theirs))


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "SimpleRNNCell"])
def test_rnn_of_cell(keras3, seqs, cell):
    make = lambda ns: ns.RNN(getattr(ns, cell)(5), return_sequences=True, return_state=True)
    ours, theirs, _, _ = both(keras3, make, seqs)
    close(ours, list(theirs))


def test_cell_single_step(keras3, seqs):
    k, o = keras3.layers.LSTMCell(3), L.LSTMCell(3)
    states = [np.zeros((3, 3), "float32")] * 2
    k(seqs[:, 0], states)
    o(seqs[:, 0], states)
    o.set_weights(k.get_weights())
    out_k, st_k = k(seqs[:, 0], states)
    out_o, st_o = o(seqs[:, 0], states)
    close([out_o, *st_o], [out_k, *st_k])


def test_feed_forward_layers(keras3, seqs):
    for make in (lambda ns: ns.TimeDistributed(ns.Dense(3, activation="softmax")),
                 lambda ns: ns.Dense(3, activation="tanh"),
                 lambda ns: ns.Activation("softmax"),
                 lambda ns: ns.Dropout(0.5),
                 lambda ns: ns.Masking(mask_value=seqs[0, 0, 0])):
        ours, theirs, o_layer, k_layer = both(keras3, make, seqs)
        close(ours, theirs)
    x2 = seqs[:, 0]
    close(L.RepeatVector(3)(x2), keras3.layers.RepeatVector(3)(x2))
    close(L.Concatenate()([seqs, seqs[..., :2]]), keras3.layers.Concatenate()([seqs, seqs[..., :2]]))
    close(L.Concatenate(axis=1)([seqs, seqs]), keras3.layers.Concatenate(axis=1)([seqs, seqs]))


def test_embedding_mask_zero_into_lstm_model(keras3, rng):
    ids = np.array([[3, 5, 2, 0, 0], [1, 2, 3, 4, 5], [7, 0, 0, 0, 0]])

    def build(ns, models):
        inp = ns.Input(shape=(None,), dtype="int32")
        emb = ns.Embedding(10, 4, mask_zero=True)(inp)
        seq = ns.LSTM(3, return_sequences=True)(emb)
        seq2, h = ns.GRU(3, return_sequences=True, return_state=True, go_backwards=True)(seq)
        last = ns.LSTM(2)(seq)
        return models.Model(inp, [seq, seq2, h, last])

    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    close(om.predict(ids), km.predict(ids, verbose=0))


def test_masking_layer_in_sequential(keras3, seqs):
    x = seqs.copy()
    x[1, 3:] = 0.0
    x[2, 1] = 0.0
    km = keras3.Sequential([keras3.Input((5, 4)), keras3.layers.Masking(),
                            keras3.layers.LSTM(3, return_sequences=True),
                            keras3.layers.TimeDistributed(keras3.layers.Dense(2))])
    om = lk.Sequential([lk.Input((5, 4)), L.Masking(), L.LSTM(3, return_sequences=True),
                        L.TimeDistributed(L.Dense(2))])
    om.set_weights(km.get_weights())
    close(om.predict(x), km.predict(x, verbose=0))
    assert om.count_params() == km.count_params()


# -- errors -------------------------------------------------------------------------------------------
def test_lstm_initial_state_with_one_array_says_h_and_c(seqs):
    with pytest.raises(ValueError, match=r"needs 2 arrays \[h, c\]"):
        L.LSTM(4)(seqs, initial_state=np.zeros((3, 4), "float32"))
    with pytest.raises(ValueError, match="state_is_tuple=False"):
        L.LSTM(4)(seqs, initial_state=[np.zeros((3, 8), "float32")])


def test_tf1_ordered_state_is_caught(rng, seqs):
    ref = L.LSTM(8, return_state=True)
    _, h, c = ref(seqs * 3)
    out = L.LSTM(8)(seqs, initial_state=[h, c])                 # Keras's order: fine
    assert out.shape == (3, 8)
    with pytest.raises(ValueError, match=r"\(c, h\) in TF1's order"):
        L.LSTM(8)(seqs, initial_state=[c, h])
    named = lstmkit.LSTMState(h=h, c=c)                        # a named state is never ambiguous
    np.testing.assert_array_equal(L.LSTM(8, seed=1)(seqs, initial_state=named).shape, (3, 8))
    zeros = np.zeros_like(h)                                   # legitimate starts are accepted
    for state in ([h, zeros], [zeros, c], [h, h], [np.tanh(c), c]):
        assert L.LSTM(8)(seqs, initial_state=state).shape == (3, 8)

    class LSTMStateTuple(tuple):
        _fields = ("c", "h")
    with pytest.raises(TypeError, match="LSTMStateTuple"):
        L.LSTM(8)(seqs, initial_state=LSTMStateTuple((c, h)))
    with pytest.raises(ValueError, match=r"initial_state\[0\] \(h\).*\(3, 4\).*\[h, c\]"):
        L.LSTM(4)(seqs, initial_state=[np.zeros((3, 4), "float32"), np.zeros((3, 2), "float32")][::-1])


def test_bad_inputs_name_the_argument(seqs):
    with pytest.raises(ValueError, match=r"inputs: .*3-D array \(batch, timesteps, features\)"):
        L.LSTM(4)(seqs[0])
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 5\)"):
        L.LSTM(4)(seqs, mask=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="merge_mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")
    with pytest.raises(TypeError, match="unexpected keyword argument 'return_sequence'"):
        L.LSTM(4, return_sequence=True)
    with pytest.raises(ValueError, match="Bidirectional layer takes 4 arrays"):
        L.Bidirectional(L.LSTM(4))(seqs, initial_state=[np.zeros((3, 4), "float32")] * 2)


# -- compile / fit / evaluate --------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_matches_keras(keras3, rng, optimizer):
    ids = rng.integers(1, 9, size=(8, 6))
    ids[2, 4:] = 0
    ids[5, 2:] = 0
    labels = rng.integers(0, 3, size=(8,))

    if optimizer == "adam":
        # Keras applies Adam to an Embedding's sparse gradient lazily (rows absent from a batch keep
        # their moments un-decayed); dense inputs through Masking compare the dense update.
        ids = (ids[..., None] * np.array([0.1, -0.2], "float32")).astype("float32")

    def build(ns, models, opt):
        first = [ns.Input((6,), dtype="int32"), ns.Embedding(9, 4, mask_zero=True)] \
            if optimizer == "sgd" else [ns.Input((6, 2)), ns.Masking()]
        m = models.Sequential(first + [ns.LSTM(5), ns.Dense(3, activation="softmax")])
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m
    k_opt = (keras3.optimizers.SGD(0.5, momentum=0.9) if optimizer == "sgd"
             else keras3.optimizers.Adam(0.05))
    o_opt = (lstmkit.optim.SGD(0.5, momentum=0.9) if optimizer == "sgd" else lstmkit.optim.Adam(0.05))
    km, om = build(keras3.layers, keras3, k_opt), build(L, lk, o_opt)
    om.set_weights(km.get_weights())
    kh = km.fit(ids, labels, batch_size=4, epochs=3, shuffle=False, verbose=0)
    oh = om.fit(ids, labels, batch_size=4, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(om.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(oh.history["loss"], kh.history["loss"], atol=1e-4, rtol=1e-4)
    k_eval = km.evaluate(ids, labels, verbose=0)
    o_eval = om.evaluate(ids, labels)
    np.testing.assert_allclose(o_eval, k_eval, atol=1e-4, rtol=1e-4)


def test_fit_needs_compile_and_a_loss(rng):
    m = lk.Sequential([lk.Input((3, 2)), L.LSTM(2)])
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(np.zeros((2, 3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="loss"):
        m.compile(optimizer="adam")


def test_fit_masks_the_loss_like_keras(keras3, rng):
    """Keras applies the mask an output carries to the loss: padded steps of a sequence labelling
    model do not count, and the loss is the mean over the valid steps."""
    ids = rng.integers(1, 9, size=(6, 5))
    ids[1, 3:] = 0
    ids[4, 1:] = 0
    tags = rng.integers(0, 3, size=(6, 5))

    def build(ns, models, opt):
        m = models.Sequential([ns.Input((5,), dtype="int32"), ns.Embedding(9, 4, mask_zero=True),
                               ns.LSTM(5, return_sequences=True),
                               ns.TimeDistributed(ns.Dense(3, activation="softmax"))])
        m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m
    km = build(keras3.layers, keras3, keras3.optimizers.SGD(0.5))
    om = build(L, lk, lstmkit.optim.SGD(0.5))
    om.set_weights(km.get_weights())
    np.testing.assert_allclose(om.evaluate(ids, tags), km.evaluate(ids, tags, verbose=0), atol=1e-5)
    kh = km.fit(ids, tags, batch_size=3, epochs=2, shuffle=False, verbose=0, validation_split=0.5)
    oh = om.fit(ids, tags, batch_size=3, epochs=2, shuffle=False, verbose=0, validation_split=0.5)
    for a, b in zip(om.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(oh.history[key], kh.history[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_stacked_cells(keras3, seqs, rng, go_backwards):
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)
    make = lambda ns: ns.RNN([ns.LSTMCell(4), ns.GRUCell(3), ns.SimpleRNNCell(2)],
                             return_sequences=True, return_state=True, go_backwards=go_backwards)
    ours, theirs, o_layer, k_layer = both(keras3, make, seqs, mask=mask)
    assert [len(s) for s in ours[1:]] == [2, 1, 1]                  # states nested per cell
    close([ours[0], *[a for st in ours[1:] for a in st]],
          [theirs[0], *[a for st in theirs[1:] for a in st]])
    assert o_layer.count_params() == k_layer.count_params()
    init = [[np.zeros((3, 4), "float32"), rng.normal(size=(3, 4)).astype("float32")],
            [np.tanh(rng.normal(size=(3, 3))).astype("float32")], [np.zeros((3, 2), "float32")]]
    close([a for st in o_layer(seqs, initial_state=init)[1:] for a in st],
          [a for st in k_layer(seqs, initial_state=init)[1:] for a in st])


def test_stacked_cells_gradient_in_a_model(keras3, tf, rng):
    def build(ns, models):
        x, h0 = ns.Input(shape=(4, 3)), ns.Input(shape=(2,))
        res = ns.RNN([ns.LSTMCell(5), ns.GRUCell(2)], return_state=True)(
            x, initial_state=[[ns.Dense(5)(h0), ns.Dense(5)(h0)], [h0]])
        return models.Model([x, h0], [res[0], res[1][1]])
    km, om = build(keras3.layers, keras3), build(L, lk)
    om.set_weights(km.get_weights())
    x = [rng.normal(size=(3, 4, 3)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")]
    outs, cache = om.forward(x)
    w = [rng.normal(size=o.shape).astype("float32") for o in outs]
    xt = [tf.constant(a) for a in x]
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.add_n([tf.reduce_sum(o * v) for o, v in zip(km(xt), w)])
    k_grads = tape.gradient(loss, km.trainable_weights + xt)
    om.zero_grad()
    d_x = om.backward(cache, w)
    for a, b in zip(list(om.grads.values()) + d_x, k_grads):
        np.testing.assert_allclose(a, b.numpy(), atol=2e-5, rtol=1e-4)


def test_eager_calls_carry_the_mask_like_keras(keras3):
    ids = np.array([[3, 5, 0, 0], [1, 2, 3, 4]])

    def run(ns):
        emb = ns.Embedding(10, 4, mask_zero=True)
        lstm = ns.LSTM(3, return_sequences=True, return_state=True)
        dense = ns.Dense(2)
        y = emb(ids)
        seq, h, c = lstm(y)                         # uses the mask attached to y
        return emb, lstm, dense, [seq, h, c, dense(seq), lstm(np.asarray(y))[0]]
    k_emb, k_lstm, k_dense, _ = run(keras3.layers)
    o_emb, o_lstm, o_dense, _ = run(L)
    for o, k in ((o_emb, k_emb), (o_lstm, k_lstm), (o_dense, k_dense)):
        o.set_weights(k.get_weights())
    y_o, y_k = o_emb(ids), k_emb(ids)
    np.testing.assert_array_equal(y_o._keras_mask, y_k._keras_mask.numpy())
    seq, h, c = o_lstm(y_o)
    theirs = k_lstm(y_k)
    close([seq, h, c], list(theirs))
    np.testing.assert_array_equal(o_dense(seq)._keras_mask, k_dense(theirs[0])._keras_mask.numpy())
    assert getattr(h, "_keras_mask", None) is None and getattr(seq * 2, "_keras_mask", None) is None
    assert not np.allclose(o_lstm(np.asarray(y_o))[0], seq)        # without the mask: different
    assert repr(seq).startswith("array(")


@pytest.mark.parametrize("name", ["lstm_x", "forward_lstm_x", "backward_lstm_x"])
def test_bidirectional_sublayer_names_match_keras(keras3, name):
    """A prefix already in the wrapped layer's name is not doubled, as in Keras (a Bidirectional
    loaded from a file wraps a layer named forward_...)."""
    k = keras3.layers.Bidirectional(keras3.layers.LSTM(3, name=name))
    o = L.Bidirectional(L.LSTM(3, name=name))
    assert (o.forward_layer.name, o.backward_layer.name) == (k.forward_layer.name, k.backward_layer.name)
