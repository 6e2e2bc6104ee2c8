"""Properties every recurrent layer must have, whatever the sizes, lengths and weights (hypothesis).

Run in float64 so that "equal" can mean equal to rounding, whatever the batch size of the products."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.kernels.sequence import reverse_within_lengths  # noqa: E402

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
TOL = dict(rtol=1e-10, atol=1e-12)

LAYERS = {
    "lstm": lambda **kw: lstmkit.LSTM(3, **kw),
    "gru": lambda **kw: lstmkit.GRU(3, **kw),
    "gru_reset_before": lambda **kw: lstmkit.GRU(3, reset_after=False, **kw),
    "rnn": lambda **kw: lstmkit.SimpleRNN(3, **kw),
}


@st.composite
def problems(draw, min_len=0):
    """A layer (random configuration), inputs (B, T, 2) and lengths (B,)."""
    cell = draw(st.sampled_from(sorted(LAYERS)))
    B = draw(st.integers(1, 3))
    T = draw(st.integers(max(1, min_len), 6))
    lengths = np.array(draw(st.lists(st.integers(min_len, T), min_size=B, max_size=B)))
    mode = draw(st.sampled_from(["zero", "repeat"]))
    num_layers = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2 ** 16))
    layer = LAYERS[cell](num_layers=num_layers, masked_output=mode, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, 2))
    layer.build(x.shape)
    for p in layer.params.values():     # non-zero biases
        p += rng.uniform(-0.3, 0.3, size=p.shape)
    return layer, x, lengths, rng


def random_state(layer, B, rng):
    shape = (B, layer.units) if layer.num_layers == 1 else (layer.num_layers, B, layer.units)
    return layer.State(*(rng.normal(size=shape) for _ in layer.State._fields))


def assert_state_equal(a, b):
    for f in a._fields:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), **TOL, err_msg=f)


@SETTINGS
@given(problems(), st.integers(1, 3))
def test_padding_never_changes_the_valid_part(problem, extra):
    layer, x, lengths, rng = problem
    B, T, _ = x.shape
    res = layer(x, lengths=lengths)
    # garbage in the padded steps, and more padded steps at the end
    noisy = np.concatenate([x, rng.normal(size=(B, extra, 2)) * 100], axis=1)
    pad = np.arange(T + extra)[None] >= lengths[:, None]
    noisy[pad] = rng.normal(size=(int(pad.sum()), 2)) * 100
    res2 = layer(noisy, lengths=lengths)
    valid = np.arange(T)[None] < lengths[:, None]
    np.testing.assert_allclose(res2.outputs[:, :T][valid], res.outputs[valid], **TOL)
    assert_state_equal(res2.state, res.state)
    if layer.masked_output == "zero":
        assert not np.any(res2.outputs[pad])


@SETTINGS
@given(problems())
def test_a_batch_equals_its_rows_run_one_by_one(problem):
    layer, x, lengths, rng = problem
    state0 = random_state(layer, x.shape[0], rng)
    res = layer(x, lengths=lengths, initial_state=state0)
    for b in range(x.shape[0]):
        row_state = layer.State(*(s[..., b:b + 1, :] for s in state0))
        row = layer(x[b:b + 1], lengths=lengths[b:b + 1], initial_state=row_state)
        np.testing.assert_allclose(row.outputs[0], res.outputs[b], **TOL)
        for f in layer.State._fields:
            np.testing.assert_allclose(getattr(row.state, f)[..., 0, :],
                                       getattr(res.state, f)[..., b, :], **TOL)


@SETTINGS
@given(problems(), st.data())
def test_split_sequence_with_carried_state_equals_the_whole(problem, data):
    layer, x, lengths, rng = problem
    T = x.shape[1]
    cut = data.draw(st.integers(0, T))
    state0 = random_state(layer, x.shape[0], rng)
    whole = layer(x, lengths=lengths, initial_state=state0)
    first = layer(x[:, :cut], lengths=np.minimum(lengths, cut), initial_state=state0)
    second = layer(x[:, cut:], lengths=np.maximum(lengths - cut, 0), initial_state=first.state)
    outs = np.concatenate([first.outputs, second.outputs], axis=1)
    if layer.masked_output == "zero":
        np.testing.assert_allclose(outs, whole.outputs, **TOL)
    else:   # a repeat restarts from zero in the second part: compare the valid steps
        valid = np.arange(T)[None] < lengths[:, None]
        np.testing.assert_allclose(outs[valid], whole.outputs[valid], **TOL)
    assert_state_equal(second.state, whole.state)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 7), st.integers(0, 1000), st.data())
def test_reverse_within_lengths_twice_is_identity(B, T, seed, data):
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    x = np.random.default_rng(seed).normal(size=(B, T, 3))
    once = reverse_within_lengths(x, lengths)
    np.testing.assert_array_equal(reverse_within_lengths(once, lengths), x)
    pad = np.arange(T)[None] >= lengths[:, None]
    np.testing.assert_array_equal(once[pad], x[pad])     # padding stays where it is
    for b in range(B):
        np.testing.assert_array_equal(once[b, :lengths[b]], x[b, :lengths[b]][::-1])


@SETTINGS
@given(problems())
def test_reverse_layer_is_forward_layer_on_reversed_data(problem):
    layer, x, lengths, rng = problem
    rev = type(layer)(**{**layer.get_config(), "reverse": True})
    rev.build(x.shape)
    for k, v in layer.params.items():
        rev.params[k][...] = v
    res = rev(x, lengths=lengths)
    ref = layer(reverse_within_lengths(x, lengths), lengths=lengths)
    expected = reverse_within_lengths(ref.outputs, lengths)
    if layer.masked_output == "repeat":
        # a reversed run meets the padding first, before any output to repeat: zeros there
        expected[np.arange(x.shape[1])[None] >= lengths[:, None]] = 0
    np.testing.assert_allclose(res.outputs, expected, **TOL)
    assert_state_equal(res.state, ref.state)


@SETTINGS
@given(problems())
def test_zero_length_sequences_output_zero_and_keep_the_initial_state(problem):
    layer, x, lengths, rng = problem
    lengths = lengths.copy()
    lengths[0] = 0
    state0 = random_state(layer, x.shape[0], rng)
    res = layer(x, lengths=lengths, initial_state=state0)
    np.testing.assert_array_equal(res.outputs[0], 0)
    for f in layer.State._fields:
        np.testing.assert_array_equal(getattr(res.state, f)[..., 0, :], getattr(state0, f)[..., 0, :])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("masked_output", ["zero", "repeat"])
@pytest.mark.parametrize("cls", [lstmkit.LSTM, lstmkit.GRU, lstmkit.SimpleRNN])
def test_final_h_is_bit_equal_to_the_last_valid_output(cls, masked_output, reverse, kernel_backend):
    # The identity seed 003 is about: final_state.h[i] == outputs[i, length_i - 1], exactly (as TF's).
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 7, 5)).astype(np.float32)
    lengths = rng.integers(1, 8, size=32)
    res = cls(16, seed=1, masked_output=masked_output, reverse=reverse)(x, lengths=lengths)
    last = np.zeros_like(lengths) if reverse else lengths - 1
    np.testing.assert_array_equal(res.h, res.outputs[np.arange(32), last])
