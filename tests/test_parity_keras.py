"""Parity with Keras 3 LSTM / GRU (reset_after True and False) / SimpleRNN: the same weights give the
same outputs, final states and gradients (tf.GradientTape), float32.

Keras's masked steps carry the state and REPEAT the last valid output: lstmkit's
``masked_output="repeat"``. Keras's ``go_backwards`` (without a mask) reverses the whole padded
sequence and returns the outputs in processing order: lstmkit's ``reverse=True`` over full-length
sequences, with the outputs flipped back along time."""
import numpy as np
import pytest

import lstmkit

B, T, I, U = 3, 5, 4, 3
TOL = dict(rtol=1e-5, atol=1e-5)

CELLS = {
    "lstm": ("LSTM", lstmkit.LSTM, {}),
    "gru": ("GRU", lstmkit.GRU, {"reset_after": True}),
    "gru_reset_before": ("GRU", lstmkit.GRU, {"reset_after": False}),
    "rnn": ("SimpleRNN", lstmkit.SimpleRNN, {}),
}
POST_MASK = np.arange(T)[None] < np.array([5, 2, 0])[:, None]          # lengths 5, 2, 0
PRE_MASK = np.arange(T)[None] >= np.array([0, 2, 4])[:, None]          # valid steps at the end
HOLES_MASK = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], bool)


def make_pair(keras3, cell, rng, go_backwards=False, **act):
    keras_name, cls, kw = CELLS[cell]
    if cell == "rnn":
        act.pop("recurrent_activation", None)
    k_layer = getattr(keras3.layers, keras_name)(U, return_sequences=True, return_state=True,
                                                 go_backwards=go_backwards, **kw, **act)
    k_layer.build((None, T, I))
    weights = [rng.uniform(-0.7, 0.7, size=w.shape).astype("float32") for w in k_layer.get_weights()]
    k_layer.set_weights(weights)
    ours = cls(U, masked_output="repeat", reverse=go_backwards, **kw, **act)
    ours.build((B, T, I))
    ours.set_weights(weights)     # the canonical layout is Keras's: nothing to convert
    return k_layer, ours


def run_keras(tf, k_layer, x, mask, state0, d_out, d_state):
    xv = tf.Variable(x)
    sv = None if state0 is None else [tf.Variable(s) for s in state0]
    with tf.GradientTape() as tape:
        kw = {}
        if mask is not None:
            kw["mask"] = tf.constant(mask)
        if sv is not None:
            kw["initial_state"] = list(sv)
        out, *state = k_layer(xv, **kw)
        loss = tf.reduce_sum(out * d_out) + sum(tf.reduce_sum(s * d) for s, d in zip(state, d_state))
    watched = [xv] + (sv or []) + list(k_layer.trainable_weights)
    grads = tape.gradient(loss, watched)
    n = 1 + (0 if sv is None else len(sv))
    return out.numpy(), [s.numpy() for s in state], grads[0].numpy(), \
        [g.numpy() for g in grads[1:n]], [g.numpy() for g in grads[n:]]


def check(keras3, tf, rng, cell, mask=None, with_state=False, go_backwards=False, **act):
    k_layer, ours = make_pair(keras3, cell, rng, go_backwards, **act)
    fields = ours.State._fields
    x = rng.normal(size=(B, T, I)).astype("float32")
    state0 = [rng.normal(size=(B, U)).astype("float32") for _ in fields] if with_state else None
    d_out = rng.normal(size=(B, T, U)).astype("float32")
    d_state = [rng.normal(size=(B, U)).astype("float32") for _ in fields]

    k_out, k_state, k_dx, k_ds0, k_dw = run_keras(tf, k_layer, x, mask, state0, d_out, d_state)

    init = None if state0 is None else ours.State(*state0)
    res, cache = ours.forward(x, mask=mask, initial_state=init, training=True)
    out = res.outputs[:, ::-1] if go_backwards else res.outputs     # Keras: processing order
    np.testing.assert_allclose(out, k_out, **TOL, err_msg="outputs")
    for f, ks in zip(fields, k_state):
        np.testing.assert_allclose(getattr(res.state, f), ks, **TOL, err_msg=f)

    ours.zero_grad()
    g = ours.backward(cache, (d_out[:, ::-1] if go_backwards else d_out, ours.State(*d_state)))
    np.testing.assert_allclose(g.inputs, k_dx, **TOL, err_msg="d inputs")
    for f, kd in zip(fields, k_ds0):
        np.testing.assert_allclose(getattr(g.initial_state, f), kd, **TOL, err_msg=f"d {f}0")
    for (name, ours_g), kg in zip(ours.grads.items(), k_dw):
        np.testing.assert_allclose(ours_g, kg, rtol=1e-5, atol=2e-5, err_msg=f"d {name}")


@pytest.mark.parametrize("cell", list(CELLS))
def test_plain(keras3, tf, cell, rng):
    check(keras3, tf, rng, cell)


@pytest.mark.parametrize("mask", [POST_MASK, PRE_MASK, HOLES_MASK], ids=["post", "pre", "holes"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_masking_repeats_outputs_and_carries_state(keras3, tf, cell, mask, kernel_backend, rng):
    check(keras3, tf, rng, cell, mask=mask, with_state=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_initial_state(keras3, tf, cell, rng):
    check(keras3, tf, rng, cell, with_state=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_go_backwards_without_mask(keras3, tf, cell, rng):
    check(keras3, tf, rng, cell, go_backwards=True, with_state=True)


@pytest.mark.parametrize("mask", [POST_MASK, HOLES_MASK], ids=["post", "holes"])
@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before"])
def test_go_backwards_with_mask(keras3, tf, cell, mask, kernel_backend, rng):
    """With a mask Keras reverses x and the mask together and repeats in processing order: lstmkit's
    reverse=True with masked_output="repeat", outputs flipped to processing order."""
    check(keras3, tf, rng, cell, mask=mask, go_backwards=True, with_state=True)


@pytest.mark.parametrize("cell", list(CELLS))
def test_non_default_activations(keras3, tf, cell, rng):
    check(keras3, tf, rng, cell, mask=POST_MASK, activation="relu",
          recurrent_activation="hard_sigmoid")


def test_masked_output_repeat_is_what_keras_does(keras3, tf, rng):
    """The claim itself, stated on Keras alone: a masked step's output equals the previous one."""
    k_layer, _ = make_pair(keras3, "lstm", rng)
    out = k_layer(rng.normal(size=(B, T, I)).astype("float32"), mask=tf.constant(POST_MASK))[0].numpy()
    np.testing.assert_array_equal(out[1, 2:], np.repeat(out[1, 1:2], T - 2, axis=0))
    np.testing.assert_array_equal(out[2], 0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_without_bias(keras3, tf, cell, rng):
    keras_name, cls, kw = CELLS[cell]
    k_layer = getattr(keras3.layers, keras_name)(U, return_sequences=True, return_state=True,
                                                 use_bias=False, **kw)
    k_layer.build((None, T, I))
    weights = [rng.uniform(-0.7, 0.7, size=w.shape).astype("float32") for w in k_layer.get_weights()]
    k_layer.set_weights(weights)
    ours = cls(U, use_bias=False, masked_output="repeat", **kw)
    ours.build((B, T, I))
    ours.set_weights(weights)
    x = rng.normal(size=(B, T, I)).astype("float32")
    k_out, *k_state = k_layer(x, mask=tf.constant(POST_MASK))
    res = ours(x, mask=POST_MASK)
    np.testing.assert_allclose(res.outputs, k_out.numpy(), **TOL)
    np.testing.assert_allclose(res.h, k_state[0].numpy(), **TOL)


@pytest.mark.parametrize("mask", [POST_MASK, PRE_MASK, HOLES_MASK], ids=["post", "pre", "holes"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_keras_bidirectional_with_mask_is_reverse_within_length(keras3, tf, cell, mask, rng):
    """Keras's Bidirectional zeroes masked outputs and its backward layer, reading the reversed padded
    sequence, meets the padding first: with post-padding that is lstmkit's Bidirectional."""
    keras_name, cls, kw = CELLS[cell]
    k_layer = keras3.layers.Bidirectional(getattr(keras3.layers, keras_name)(
        U, return_sequences=True, return_state=True, **kw))
    k_layer.build((None, T, I))
    weights = [rng.uniform(-0.7, 0.7, size=w.shape).astype("float32") for w in k_layer.get_weights()]
    k_layer.set_weights(weights)
    ours = lstmkit.Bidirectional(cls(U, **kw))
    ours.build((B, T, I))
    ours.set_weights(weights)
    x = rng.normal(size=(B, T, I)).astype("float32")
    d_out = rng.normal(size=(B, T, 2 * U)).astype("float32")
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        k_out, *k_states = k_layer(xv, mask=tf.constant(mask))
        loss = tf.reduce_sum(k_out * d_out)
    k_grads = tape.gradient(loss, [xv] + list(k_layer.trainable_weights))
    res, cache = ours.forward(x, mask=mask, training=True)
    np.testing.assert_allclose(res.outputs, k_out.numpy(), **TOL)
    n = len(k_states) // 2
    for f, a, b in zip(res.forward.state._fields, res.forward.state, k_states[:n]):
        np.testing.assert_allclose(a, b.numpy(), **TOL, err_msg=f"forward {f}")
    for f, a, b in zip(res.backward.state._fields, res.backward.state, k_states[n:]):
        np.testing.assert_allclose(a, b.numpy(), **TOL, err_msg=f"backward {f}")
    ours.zero_grad()
    g = ours.backward(cache, (d_out, None))
    np.testing.assert_allclose(g.inputs, k_grads[0].numpy(), **TOL)
    for (name, ours_g), kg in zip(ours.grads.items(), k_grads[1:]):
        np.testing.assert_allclose(ours_g, kg.numpy(), rtol=1e-5, atol=2e-5, err_msg=f"d {name}")
