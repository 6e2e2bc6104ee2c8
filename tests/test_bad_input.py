"""Every bad input gets a ValueError/TypeError whose message names the argument, what was expected and
what was given; never a NumPy error from deep inside, never a silently wrong answer."""
import numpy as np
import pytest

import lstmkit
from lstmkit import HiddenState, LSTMState

B, T, I, U = 2, 4, 3, 5
LAYERS = [lambda **kw: lstmkit.LSTM(U, seed=0, **kw), lambda **kw: lstmkit.GRU(U, seed=0, **kw),
          lambda **kw: lstmkit.SimpleRNN(U, seed=0, **kw)]
IDS = ["lstm", "gru", "rnn"]


def x_ok():
    return np.random.default_rng(0).normal(size=(B, T, I)).astype("float32")


def state_of(layer, *shapes):
    fields = layer.State._fields
    shapes = shapes or [(B, U)] * len(fields)
    return layer.State(*(np.zeros(s, "float32") for s in shapes))


@pytest.fixture(params=LAYERS, ids=IDS)
def make(request):
    return request.param


def raises(exc, *fragments):
    """pytest.raises that also checks that every fragment appears in the message."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            handled = self.ctx.__exit__(*args)
            msg = str(self.info.value)
            for f in fragments:
                assert f in msg, f"{f!r} not in message {msg!r}"
            return handled
    return _Check()


def test_wrong_rank(make):
    with raises(ValueError, "x:", "3-D", "(2, 3)"):
        make()(np.zeros((2, 3), "float32"))


def test_wrong_feature_size_after_build(make):
    layer = make()
    layer(x_ok())
    with raises(ValueError, "x:", f"built for {I} features", "got 7"):
        layer(np.zeros((B, T, 7), "float32"))


def test_batch_mismatch_between_inputs_and_initial_state(make):
    layer = make()
    bad = state_of(layer, *[(B + 1, U)] * len(layer.State._fields))
    with raises(ValueError, "initial_state.h", f"({B}, {U})", f"({B + 1}, {U})"):
        layer(x_ok(), initial_state=bad)


def test_transposed_state_gets_a_hint(make):
    layer = make()
    bad = state_of(layer, *[(U, B)] * len(layer.State._fields))
    with raises(ValueError, "initial_state.h", "transposed"):
        layer(x_ok(), initial_state=bad)


def test_state_of_wrong_size_units():
    h = np.zeros((B, U), "float32")
    with raises(ValueError, "initial_state.c", f"({B}, {U})", f"({B}, {U + 1})"):
        lstmkit.LSTM(U)(x_ok(), initial_state=LSTMState(h, np.zeros((B, U + 1), "float32")))


def test_bare_tuple_state_is_refused_as_ambiguous():
    h = c = np.zeros((B, U), "float32")
    for bare in ((c, h), [h, c]):
        with raises(TypeError, "initial_state", "ambiguous", "[h, c]", "(c, h)", "LSTMState"):
            lstmkit.LSTM(U)(x_ok(), initial_state=bare)


def test_lstm_state_given_to_a_gru_or_the_reverse():
    h = np.zeros((B, U), "float32")
    with raises(TypeError, "initial_state", "LSTMState"):
        lstmkit.LSTM(U)(x_ok(), initial_state=HiddenState(h))
    with raises(TypeError, "initial_state", "missing", "'c'"):
        lstmkit.LSTM(U)(x_ok(), initial_state={"h": h})


def test_stacked_layer_wants_layers_axis():
    layer = lstmkit.LSTM(U, num_layers=2)
    h = np.zeros((B, U), "float32")
    with raises(ValueError, "initial_state.h", f"(2, {B}, {U})", "layers", f"({B}, {U})"):
        layer(x_ok(), initial_state=LSTMState(h, h))


@pytest.mark.parametrize("lengths,fragments", [
    ([-1, 2], ("lengths", f"[0, {T}]", "min -1")),
    ([2, T + 1], ("lengths", f"[0, {T}]", f"max {T + 1}")),
    ([1, 2, 3], ("lengths", f"({B},)", "(3,)")),
    ([[1, 2]], ("lengths", f"({B},)", "(1, 2)")),
])
def test_bad_lengths_raise_value_error(make, lengths, fragments):
    with raises(ValueError, *fragments):
        make()(x_ok(), lengths=lengths)


def test_fractional_lengths_are_a_type_error(make):
    with raises(TypeError, "lengths", "integers", "float"):
        make()(x_ok(), lengths=[1.5, 2])


def test_mask_of_wrong_shape_and_mask_with_lengths(make):
    with raises(ValueError, "mask", f"({B}, {T})", f"({B}, {T - 1})"):
        make()(x_ok(), mask=np.ones((B, T - 1), bool))
    with raises(ValueError, "lengths and mask"):
        make()(x_ok(), lengths=[1, 2], mask=np.ones((B, T), bool))


def test_non_finite_inputs_when_asked_to_check(make):
    x = x_ok()
    x[1, 2, 0] = np.nan
    with raises(ValueError, "x:", "finite", "nan", "(1, 2, 0)"):
        make()(x, check_finite=True)
    layer = make()
    st = state_of(layer)
    st.h[0, 1] = np.inf
    with raises(ValueError, "initial_state.h", "finite", "inf"):
        layer(x_ok(), initial_state=st, check_finite=True)


def test_integer_inputs_are_cast_like_tensorflow(make):
    """Integers are cast to the layer's dtype (as TF/Keras do), giving the float result exactly."""
    xi = np.arange(B * T * I).reshape(B, T, I) % 3
    layer = make()
    a = layer(xi)
    b = layer(xi.astype("float32"))
    assert a.outputs.dtype == np.float32
    np.testing.assert_array_equal(a.outputs, b.outputs)


@pytest.mark.parametrize("bad", [np.zeros((B, T, I), bool), np.zeros((B, T, I), complex),
                                 np.full((B, T, I), "a")], ids=["bool", "complex", "str"])
def test_non_numeric_inputs_are_a_type_error(make, bad):
    with raises(TypeError, "x:", "float", str(bad.dtype)):
        make()(bad)


@pytest.mark.parametrize("kwargs,exc,fragments", [
    ({"units": 0}, ValueError, ("units", "positive integer", "0")),
    ({"units": 2.5}, ValueError, ("units", "2.5")),
    ({"num_layers": 0}, ValueError, ("num_layers", "0")),
    ({"dropout": 1.0}, ValueError, ("dropout", "[0, 1)", "1.0")),
    ({"recurrent_dropout": -0.1}, ValueError, ("recurrent_dropout", "-0.1")),
    ({"activation": "swish7"}, ValueError, ("activation", "tanh", "swish7")),
    ({"masked_output": "keep"}, ValueError, ("masked_output", "'zero'", "'keep'")),
    ({"dtype": "int32"}, TypeError, ("dtype", "float32", "int32")),
])
def test_bad_constructor_arguments(kwargs, exc, fragments):
    kwargs = {"units": U, **kwargs}
    with raises(exc, *fragments):
        lstmkit.LSTM(**kwargs)


def test_bidirectional_initial_state_must_be_a_pair():
    layer = lstmkit.Bidirectional(lstmkit.LSTM(U))
    h = np.zeros((B, U), "float32")
    with raises(TypeError, "initial_state", "(forward_state, backward_state)"):
        layer(x_ok(), initial_state=LSTMState(h, h))


def test_set_weights_names_the_weight_and_shapes():
    layer = lstmkit.LSTM(U)
    layer(x_ok())
    w = layer.get_weights()
    w[1] = w[1].T[:, :U]
    with raises(ValueError, "recurrent_kernel", f"({U}, {4 * U})", f"({4 * U}, {U})"):
        layer.set_weights(w)
    with raises(ValueError, "weights", "expects 3", "got 2"):
        layer.set_weights(w[:2])


def test_backward_checks_the_gradient_shapes(make):
    layer = make()
    res, cache = layer.forward(x_ok(), training=True)
    with raises(ValueError, "d_outputs", f"({B}, {T}, {U})", f"({B}, {T - 1}, {U})"):
        layer.backward(cache, (np.ones((B, T - 1, U)), None))
    bad = layer.State(*(np.ones((B + 1, U)) for _ in layer.State._fields))
    with raises(ValueError, "d_state.h", f"({B}, {U})", f"({B + 1}, {U})"):
        layer.backward(cache, (None, bad))
    with raises(TypeError, "grad", "(d_outputs, d_state)"):
        layer.backward(cache, np.ones((B, T, U)))


def test_bidirectional_backward_checks_the_gradient_shapes():
    layer = lstmkit.Bidirectional(lstmkit.GRU(U))
    res, cache = layer.forward(x_ok(), training=True)
    with raises(ValueError, "d_outputs", f"({B}, {T}, {2 * U})", f"({B}, {T}, {U})"):
        layer.backward(cache, (np.ones((B, T, U)), None))
