"""lstmkit.compat.v1 against the real tf.compat.v1 (TF 2 eager with tf-keras's legacy cells).

Every parity test gives both sides the same random weights and compares float32 results to 1e-5.
"""
import copy
import subprocess
import sys

import numpy as np
import pytest

import lstmkit.compat.v1 as ktf
from lstmkit.compat.v1.rnn_cell import LSTMStateTuple

ATOL = RTOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning")

# (cell class name, constructor keyword arguments)
LSTM_CASES = [
    ("BasicLSTMCell", {}),
    ("BasicLSTMCell", {"forget_bias": 0.0}),
    ("BasicLSTMCell", {"forget_bias": 2.5, "state_is_tuple": False}),
    ("LSTMCell", {}),
    ("LSTMCell", {"use_peepholes": True}),
    ("LSTMCell", {"cell_clip": 0.3}),
    ("LSTMCell", {"num_proj": 3}),
    ("LSTMCell", {"num_proj": 3, "proj_clip": 0.05}),
    ("LSTMCell", {"forget_bias": 0.5, "state_is_tuple": False}),
    ("LSTMCell", {"use_peepholes": True, "cell_clip": 0.4, "num_proj": 6, "proj_clip": 0.2,
                  "forget_bias": 0.7, "state_is_tuple": False}),
]
OTHER_CASES = [("GRUCell", {}), ("BasicRNNCell", {}), ("BasicLSTMCell", {"activation": "relu"})]
ALL_CASES = LSTM_CASES + OTHER_CASES
UNITS, INPUTS, BATCH, STEPS = 5, 3, 4, 6


def _ids(cases):
    return [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in cases]


def _make(tf, name, kwargs, units=UNITS):
    ours = getattr(ktf.nn.rnn_cell, name)(units, **kwargs)
    tf_kwargs = dict(kwargs)
    if tf_kwargs.get("activation") == "relu":
        tf_kwargs["activation"] = tf.nn.relu
    theirs = getattr(tf.compat.v1.nn.rnn_cell, name)(units, **tf_kwargs)
    return ours, theirs


def _build_same(tf, ours, theirs, input_size, rng, scale=0.5):
    """Build both cells and give them the same random weights. Checks names and shapes match."""
    batch = 2
    theirs(np.zeros((batch, input_size), np.float32), theirs.zero_state(batch, tf.float32))
    ours.build((None, input_size))
    tf_names = [w.name.split("/", 1)[1][:-2] for w in theirs.weights]
    assert tf_names == list(ours.variables)
    assert [tuple(w.shape) for w in theirs.weights] == [v.shape for v in ours.variables.values()]
    weights = [(rng.standard_normal(tuple(w.shape)) * scale).astype(np.float32)
               for w in theirs.weights]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return weights


def _flat(state):
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _flat(s)]
    return [np.asarray(state)]


def _close(ours, theirs):
    a, b = _flat(ours), _flat(theirs)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=ATOL, rtol=RTOL)


def _random_state(cell, batch, rng):
    return _map_size(cell.state_size, lambda n: rng.standard_normal((batch, n)).astype(np.float32))


def _map_size(size, fn):
    if isinstance(size, (int, np.integer)):
        return fn(int(size))
    vals = [_map_size(s, fn) for s in size]
    return type(size)(*vals) if hasattr(size, "_fields") else tuple(vals)


def _tf_state(tf, state):
    """Our state structure -> TF's (LSTMStateTuple of TF's own class where needed)."""
    if isinstance(state, LSTMStateTuple):
        return tf.compat.v1.nn.rnn_cell.LSTMStateTuple(tf.constant(state.c), tf.constant(state.h))
    if isinstance(state, tuple):
        return tuple(_tf_state(tf, s) for s in state)
    return tf.constant(state)


# -- cells ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", ALL_CASES, ids=_ids(ALL_CASES))
def test_cell_structure_matches_tf(tf, name, kwargs):
    ours, theirs = _make(tf, name, kwargs)
    assert ours.state_size == theirs.state_size
    assert ours.output_size == theirs.output_size
    assert str(ours.state_size) == str(theirs.state_size)
    _close(ours.zero_state(3, ktf.float32), theirs.zero_state(3, tf.float32))
    assert _flat(ours.zero_state(3, ktf.float32))[0].dtype == np.float32


@pytest.mark.parametrize("name,kwargs", ALL_CASES, ids=_ids(ALL_CASES))
def test_cell_step_matches_tf(tf, rng, name, kwargs):
    ours, theirs = _make(tf, name, kwargs)
    _build_same(tf, ours, theirs, INPUTS, rng)
    x = rng.standard_normal((BATCH, INPUTS)).astype(np.float32)
    state = _random_state(ours, BATCH, rng)
    out, new_state = ours(x, state)
    tf_out, tf_state = theirs(x, _tf_state(tf, state))
    _close(out, tf_out.numpy())
    _close(new_state, _flat(tf_state))
    assert type(new_state) is type(state)
    out2, _ = ours.call(x, state)          # the seed calls cell.call directly
    np.testing.assert_allclose(out, out2, rtol=1e-6, atol=1e-7)


def test_multi_rnn_cell_step_matches_tf(tf, rng):
    cells = [("BasicLSTMCell", {}), ("GRUCell", {}), ("LSTMCell", {"num_proj": 2, "use_peepholes": True})]
    ours = ktf.nn.rnn_cell.MultiRNNCell([getattr(ktf.nn.rnn_cell, n)(4, **k) for n, k in cells])
    theirs = tf.compat.v1.nn.rnn_cell.MultiRNNCell(
        [getattr(tf.compat.v1.nn.rnn_cell, n)(4, **k) for n, k in cells])
    _build_same(tf, ours, theirs, INPUTS, rng)
    assert str(ours.state_size) == str(theirs.state_size)
    x = rng.standard_normal((BATCH, INPUTS)).astype(np.float32)
    state = _random_state(ours, BATCH, rng)
    out, new_state = ours(x, state)
    tf_out, tf_state = theirs(x, _tf_state(tf, state))
    _close(out, tf_out.numpy())
    _close(new_state, _flat(tf_state))


def test_default_initialization_is_tf1s():
    gru = ktf.nn.rnn_cell.GRUCell(3, seed=0)
    gru.build((None, 2))
    np.testing.assert_array_equal(gru.variables["gates/bias"], np.ones(6))      # TF1: starts at 1
    np.testing.assert_array_equal(gru.variables["candidate/bias"], np.zeros(3))
    lstm = ktf.nn.rnn_cell.LSTMCell(3, seed=0)
    lstm.build((None, 2))
    np.testing.assert_array_equal(lstm.variables["bias"], np.zeros(12))          # forget_bias not stored
    limit = np.sqrt(6.0 / (5 + 12))                                               # glorot on (I+U, 4U)
    assert np.abs(lstm.variables["kernel"]).max() <= limit
    assert np.abs(lstm.variables["kernel"]).max() > 0.5 * limit


def test_seeded_initializers_reproduce():
    a = ktf.nn.rnn_cell.BasicLSTMCell(4, seed=7)
    b = ktf.nn.rnn_cell.BasicLSTMCell(4, seed=7)
    x = np.ones((2, 3), np.float32)
    a(x, a.zero_state(2, ktf.float32))
    b(x, b.zero_state(2, ktf.float32))
    np.testing.assert_array_equal(a.variables["kernel"], b.variables["kernel"])
    ktf.set_random_seed(3)
    c = ktf.nn.rnn_cell.LSTMCell(4, initializer=ktf.random_uniform_initializer(-0.1, 0.1))
    c.build((None, 3))
    ktf.set_random_seed(3)
    d = ktf.nn.rnn_cell.LSTMCell(4, initializer=ktf.random_uniform_initializer(-0.1, 0.1))
    d.build((None, 3))
    np.testing.assert_array_equal(c.variables["kernel"], d.variables["kernel"])
    assert np.abs(c.variables["kernel"]).max() <= 0.1


def test_set_weights_by_tf1_name_builds_the_cell(tf, rng):
    theirs = tf.compat.v1.nn.rnn_cell.LSTMCell(UNITS, num_proj=2, use_peepholes=True)
    x = rng.standard_normal((3, 4, INPUTS)).astype(np.float32)
    tf_out, _ = tf.compat.v1.nn.dynamic_rnn(theirs, tf.constant(x), dtype=tf.float32)
    ours = ktf.nn.rnn_cell.LSTMCell(UNITS, num_proj=2, use_peepholes=True)
    ours.set_weights({w.name: w.numpy() for w in theirs.weights})   # "rnn/lstm_cell/kernel:0" ...
    assert ours.input_size == INPUTS
    out, _ = ktf.nn.dynamic_rnn(ours, x, dtype=ktf.float32)
    _close(out, tf_out.numpy())


# -- dynamic_rnn -----------------------------------------------------------------------------------
def _dynamic_case(tf, rng, ours, theirs, lengths, time_major=False, initial=True):
    x = rng.standard_normal((BATCH, STEPS, INPUTS)).astype(np.float32)
    if time_major:
        x = x.transpose(1, 0, 2).copy()
    kw = {"sequence_length": lengths, "time_major": time_major}
    if initial:
        state = _random_state(ours, BATCH, rng)
        out, fin = ktf.nn.dynamic_rnn(ours, x, initial_state=state, **kw)
        tf_out, tf_fin = tf.compat.v1.nn.dynamic_rnn(theirs, tf.constant(x),
                                                     initial_state=_tf_state(tf, state), **kw)
    else:
        out, fin = ktf.nn.dynamic_rnn(ours, x, dtype=ktf.float32, **kw)
        tf_out, tf_fin = tf.compat.v1.nn.dynamic_rnn(theirs, tf.constant(x), dtype=tf.float32, **kw)
    _close(out, tf_out.numpy())
    _close(fin, _flat(tf_fin))
    return out, fin


@pytest.mark.parametrize("name,kwargs", ALL_CASES, ids=_ids(ALL_CASES))
def test_dynamic_rnn_matches_tf(tf, rng, name, kwargs):
    ours, theirs = _make(tf, name, kwargs)
    _build_same(tf, ours, theirs, INPUTS, rng)
    lengths = np.array([6, 1, 0, 4])
    out, fin = _dynamic_case(tf, rng, ours, theirs, lengths)
    assert np.all(out[1, 1:] == 0) and np.all(out[2] == 0)
    _dynamic_case(tf, rng, ours, theirs, None, time_major=True, initial=False)


def test_dynamic_rnn_time_major_with_lengths(tf, rng):
    ours, theirs = _make(tf, "LSTMCell", {"use_peepholes": True})
    _build_same(tf, ours, theirs, INPUTS, rng)
    _dynamic_case(tf, rng, ours, theirs, [2, 6, 3, 5], time_major=True)


def test_dynamic_rnn_final_state_is_at_the_last_valid_step(rng):
    cell = ktf.nn.rnn_cell.LSTMCell(4, seed=1)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    lengths = np.array([5, 1, 3])
    outputs, state = ktf.nn.dynamic_rnn(cell, x, lengths, dtype=ktf.float32)
    assert isinstance(state, LSTMStateTuple)
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(state.h[i], outputs[i, n - 1])
        assert np.all(outputs[i, n:] == 0)
    # padding never changes the valid part
    longer = np.concatenate([x, rng.standard_normal((3, 2, 2)).astype(np.float32)], axis=1)
    out2, state2 = ktf.nn.dynamic_rnn(cell, longer, lengths, dtype=ktf.float32)
    np.testing.assert_allclose(out2[:, :5], outputs, atol=1e-6)
    _close(state2, state)


def test_fast_path_equals_stepping_through_time(rng):
    """The whole-sequence kernels and the step-by-step loop agree (a subclass forces the loop)."""
    class Stepped(ktf.nn.rnn_cell.LSTMCell):
        def _has_fast_path(self):
            return False
    fast, slow = ktf.nn.rnn_cell.LSTMCell(4, forget_bias=0.3), Stepped(4, forget_bias=0.3)
    fast.build((None, 3))
    slow.set_weights(fast.get_weights())
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    a = ktf.nn.dynamic_rnn(fast, x, [6, 2, 4], dtype=ktf.float32)
    b = ktf.nn.dynamic_rnn(slow, x, [6, 2, 4], dtype=ktf.float32)
    _close(a, b)


def test_dynamic_rnn_with_a_user_defined_cell(rng):
    class Accumulator(ktf.nn.rnn_cell.RNNCell):
        """h' = h + x: the final state is the sum over the valid steps."""
        state_size = output_size = 2

        def call(self, inputs, state):
            new = state + inputs
            return new, new
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    out, state = ktf.nn.dynamic_rnn(Accumulator(), x, [4, 2], dtype=ktf.float32)
    np.testing.assert_allclose(state, np.stack([x[0].sum(0), x[1, :2].sum(0)]), rtol=1e-6)
    assert np.all(out[1, 2:] == 0)


@pytest.mark.parametrize("stack", [
    [("BasicLSTMCell", {}), ("GRUCell", {}), ("BasicRNNCell", {})],                  # fast path
    [("LSTMCell", {"use_peepholes": True, "num_proj": 3}), ("BasicLSTMCell", {})],   # stepped
], ids=["fast", "stepped"])
def test_multi_rnn_cell_dynamic_rnn_matches_tf(tf, rng, stack):
    ours = ktf.nn.rnn_cell.MultiRNNCell([getattr(ktf.nn.rnn_cell, n)(4, **k) for n, k in stack])
    theirs = tf.compat.v1.nn.rnn_cell.MultiRNNCell(
        [getattr(tf.compat.v1.nn.rnn_cell, n)(4, **k) for n, k in stack])
    _build_same(tf, ours, theirs, INPUTS, rng)
    assert all(k.startswith("cell_") for k in ours.variables)
    _dynamic_case(tf, rng, ours, theirs, [6, 3, 1, 5])


def test_bidirectional_dynamic_rnn_matches_tf(tf, rng):
    fw, tf_fw = _make(tf, "LSTMCell", {})
    bw, tf_bw = _make(tf, "GRUCell", {})
    _build_same(tf, fw, tf_fw, INPUTS, rng)
    _build_same(tf, bw, tf_bw, INPUTS, rng)
    x = rng.standard_normal((BATCH, STEPS, INPUTS)).astype(np.float32)
    lengths = [6, 2, 4, 1]
    (o_fw, o_bw), (s_fw, s_bw) = ktf.nn.bidirectional_dynamic_rnn(fw, bw, x, lengths,
                                                                  dtype=ktf.float32)
    (t_fw, t_bw), (ts_fw, ts_bw) = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        tf_fw, tf_bw, tf.constant(x), lengths, dtype=tf.float32)
    _close([o_fw, o_bw], [t_fw.numpy(), t_bw.numpy()])
    _close([s_fw, s_bw], _flat((ts_fw, ts_bw)))
    # the backward direction starts at each sequence's last valid step: its output there is one
    # step of the cell from zeros on that input
    one, _ = bw(x[1:2, 1], bw.zero_state(1, ktf.float32))
    np.testing.assert_allclose(o_bw[1, 1], one[0], atol=1e-6)
    np.testing.assert_array_equal(s_bw[1], o_bw[1, 0])


def test_bidirectional_time_major_without_lengths(tf, rng):
    fw, tf_fw = _make(tf, "BasicRNNCell", {})
    bw, tf_bw = _make(tf, "BasicRNNCell", {})
    _build_same(tf, fw, tf_fw, INPUTS, rng)
    _build_same(tf, bw, tf_bw, INPUTS, rng)
    x = rng.standard_normal((STEPS, BATCH, INPUTS)).astype(np.float32)
    ours = ktf.nn.bidirectional_dynamic_rnn(fw, bw, x, dtype=ktf.float32, time_major=True)
    theirs = tf.compat.v1.nn.bidirectional_dynamic_rnn(tf_fw, tf_bw, tf.constant(x), dtype=tf.float32,
                                                       time_major=True)
    _close(ours, _flat(theirs))


def test_static_rnn_matches_tf(tf, rng):
    ours, theirs = _make(tf, "BasicLSTMCell", {"forget_bias": 0.5})
    _build_same(tf, ours, theirs, INPUTS, rng)
    xs = [rng.standard_normal((BATCH, INPUTS)).astype(np.float32) for _ in range(STEPS)]
    lengths = [6, 3, 1, 5]
    out, fin = ktf.nn.static_rnn(ours, xs, dtype=ktf.float32, sequence_length=lengths)
    tf_out, tf_fin = tf.compat.v1.nn.static_rnn(theirs, [tf.constant(x) for x in xs], dtype=tf.float32,
                                                sequence_length=lengths)
    assert isinstance(out, list) and len(out) == STEPS
    _close(out, [o.numpy() for o in tf_out])
    _close(fin, [s.numpy() for s in tf_fin])
    assert ktf.contrib.rnn.static_rnn is ktf.nn.static_rnn


@pytest.mark.parametrize("spelling", ["legacy_seq2seq", "contrib.legacy_seq2seq", "nn.seq2seq"])
def test_basic_rnn_seq2seq_matches_tf(tf, rng, spelling):
    """TF 2 has no legacy_seq2seq: the oracle is its definition, written with TF's own ops
    (encoder = deepcopy(cell) run by static_rnn, decoder = the cell stepped from the encoder's state)."""
    ours, theirs = _make(tf, "BasicLSTMCell", {})
    _build_same(tf, ours, theirs, INPUTS, rng)
    enc = [rng.standard_normal((BATCH, INPUTS)).astype(np.float32) for _ in range(5)]
    dec = [rng.standard_normal((BATCH, INPUTS)).astype(np.float32) for _ in range(3)]
    module = ktf
    for part in spelling.split("."):
        module = getattr(module, part)
    out, state = module.basic_rnn_seq2seq(enc, dec, ours)

    tf_enc = copy.deepcopy(theirs)
    _, tf_state = tf.compat.v1.nn.static_rnn(tf_enc, [tf.constant(x) for x in enc], dtype=tf.float32)
    enc_c, enc_h = tf_state.c.numpy(), tf_state.h.numpy()
    tf_out = []
    for x in dec:
        o, tf_state = theirs(x, tf_state)
        tf_out.append(o.numpy())
    _close(out, tf_out)
    _close(state, [tf_state.c.numpy(), tf_state.h.numpy()])
    # the decoder started from the encoder's (c, h), both of them
    _, enc_state = ktf.nn.static_rnn(ours.encoder_cell, enc, dtype=ktf.float32)
    _close(enc_state, [enc_c, enc_h])
    first, _ = ours(dec[0], enc_state)
    np.testing.assert_allclose(first, out[0], atol=1e-6)


def test_rnn_decoder_loop_function(rng):
    cell = ktf.nn.rnn_cell.GRUCell(3, seed=0)
    dec = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(4)]
    state0 = rng.standard_normal((2, 3)).astype(np.float32)
    out, state = ktf.legacy_seq2seq.rnn_decoder(dec, state0, cell, loop_function=lambda prev, i: prev)
    h = state0
    o, h = cell(dec[0], h)
    expect = [o]
    for _ in range(3):
        o, h = cell(o, h)
        expect.append(o)
    _close(out, expect)
    _close(state, h)


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: ktf.placeholder(ktf.float32, [None, 3]),
    lambda: ktf.Session(),
    lambda: ktf.global_variables_initializer(),
    lambda: ktf.get_variable("w", [3, 3]),
    lambda: ktf.variable_scope("rnn"),
])
def test_graph_mode_names_explain_the_eager_rewrite(call):
    with pytest.raises(NotImplementedError, match="eager"):
        call()


def test_sequence_length_longer_than_time_is_an_error():
    cell = ktf.nn.rnn_cell.BasicLSTMCell(3)
    with pytest.raises(ValueError, match=r"sequence_length: .*\[0, 4\]"):
        ktf.nn.dynamic_rnn(cell, np.ones((2, 4, 2)), sequence_length=[4, 5], dtype=ktf.float32)
    with pytest.raises(ValueError, match=r"sequence_length: expected shape \(2,\)"):
        ktf.nn.dynamic_rnn(cell, np.ones((2, 4, 2)), sequence_length=[4, 1, 2], dtype=ktf.float32)


def test_dtype_or_initial_state_is_required():
    with pytest.raises(ValueError, match="dtype"):
        ktf.nn.dynamic_rnn(ktf.nn.rnn_cell.GRUCell(3), np.ones((2, 4, 2)))


def test_wrong_state_types_are_explained():
    cell = ktf.nn.rnn_cell.BasicLSTMCell(3)
    x = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"LSTMStateTuple\(c, h\).*state_is_tuple=False"):
        cell(x, np.zeros((2, 6), np.float32))
    flat = ktf.nn.rnn_cell.BasicLSTMCell(3, state_is_tuple=False)
    with pytest.raises(TypeError, match="one array"):
        flat(x, (np.zeros((2, 3)), np.zeros((2, 3))))
    proj = ktf.nn.rnn_cell.LSTMCell(4, num_proj=2)
    c, h = np.zeros((2, 4)), np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"swapped.*\(c, h\)"):
        proj(x, (h, c))
    with pytest.raises(TypeError, match="one array"):
        ktf.nn.rnn_cell.GRUCell(3)(x, (np.zeros((2, 3)),))
    multi = ktf.nn.rnn_cell.MultiRNNCell([ktf.nn.rnn_cell.GRUCell(3), ktf.nn.rnn_cell.GRUCell(3)])
    with pytest.raises(TypeError, match="tuple of 2 states"):
        ktf.nn.dynamic_rnn(multi, np.ones((2, 4, 2)), initial_state=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"initial_state.h: expected shape \(2, 3\)"):
        ktf.nn.dynamic_rnn(cell, np.ones((2, 4, 2)), initial_state=LSTMStateTuple(
            np.zeros((2, 3)), np.zeros((3, 3))))


def test_wrong_inputs_are_explained():
    cell = ktf.nn.rnn_cell.BasicLSTMCell(3)
    with pytest.raises(ValueError, match="dynamic_rnn"):
        cell(np.ones((2, 4, 2)), cell.zero_state(2, ktf.float32))
    cell(np.ones((2, 2)), cell.zero_state(2, ktf.float32))
    with pytest.raises(ValueError, match="built for 2 features, got 5"):
        ktf.nn.dynamic_rnn(cell, np.ones((2, 4, 5)), dtype=ktf.float32)
    with pytest.raises(ValueError, match="3-D"):
        ktf.nn.dynamic_rnn(cell, np.ones((4, 2)), dtype=ktf.float32)


def test_lstmkit_native_state_is_read_by_name():
    from lstmkit import LSTMState
    cell = ktf.nn.rnn_cell.LSTMCell(3, num_proj=2, seed=0)
    x = np.ones((2, 2), np.float32)
    c, h = np.full((2, 3), 0.5, np.float32), np.full((2, 2), -0.5, np.float32)
    a, _ = cell(x, LSTMStateTuple(c, h))
    b, _ = cell(x, LSTMState(h=h, c=c))
    np.testing.assert_array_equal(a, b)


def test_helpers_and_lazy_keras():
    assert ktf.float32 is np.float32
    parts = ktf.unstack(ktf.zeros([2, 3, 4]), axis=1)
    assert len(parts) == 3 and parts[0].shape == (2, 4)
    assert ktf.concat([np.ones((2, 1)), np.zeros((2, 2))], 1).shape == (2, 3)
    assert ktf.random_normal([3, 2], seed=1).shape == (3, 2)
    np.testing.assert_array_equal(ktf.random.normal([3], seed=1), ktf.random.normal([3], seed=1))
    np.testing.assert_array_equal(ktf.reverse_sequence(np.arange(8).reshape(2, 4), [3, 4], 1, 0),
                                  [[2, 1, 0, 3], [7, 6, 5, 4]])
    code = ("import sys, lstmkit.compat.v1 as tf; assert 'lstmkit.keras' not in sys.modules; "
            "print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "ok"


def test_tf_keras_is_lstmkit_keras():
    import lstmkit.keras
    assert ktf.keras is lstmkit.keras


@pytest.mark.parametrize("name", ["BasicLSTMCell", "LSTMCell", "GRUCell"])
def test_float64_when_asked(rng, name):
    kwargs = {"use_peepholes": True, "num_proj": 2} if name == "LSTMCell" else {}
    c32 = getattr(ktf.nn.rnn_cell, name)(3, **kwargs)
    c64 = getattr(ktf.nn.rnn_cell, name)(3, dtype=ktf.float64, **kwargs)
    c32.build((None, 2))
    c64.set_weights(c32.get_weights())
    x = rng.standard_normal((2, 4, 2))
    out64, state64 = ktf.nn.dynamic_rnn(c64, x, [4, 2], dtype=ktf.float64)
    out32, state32 = ktf.nn.dynamic_rnn(c32, x, [4, 2], dtype=ktf.float32)
    assert out64.dtype == np.float64 and all(s.dtype == np.float64 for s in _flat(state64))
    assert out32.dtype == np.float32
    _close(out64, out32.astype(np.float64))
    with pytest.raises(TypeError, match="built for float64"):
        ktf.nn.dynamic_rnn(c64, x, dtype=ktf.float32)


def test_lstm_cell_kernel_without_extras_is_one_step_of_lstm_forward(rng):
    from lstmkit.kernels import lstm_forward
    from lstmkit.kernels.lstm_cell import lstm_cell_forward
    B, I, U = 3, 4, 5
    k, rk, b = (rng.standard_normal(s) for s in [(I, 4 * U), (U, 4 * U), (4 * U,)])
    x, h, c = (rng.standard_normal(s) for s in [(B, I), (B, U), (B, U)])
    h1, c1 = lstm_cell_forward(x, h, c, k, rk, b)
    outs, h2, c2, _ = lstm_forward(x[:, None], None, h, c, k, rk, b)
    np.testing.assert_allclose(h1, h2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c1, c2, rtol=1e-12, atol=1e-12)
    # the extras are switched on one at a time and each changes the result
    for extra in [{"peepholes": tuple(rng.standard_normal((3, U)))}, {"cell_clip": 0.1},
                  {"projection": rng.standard_normal((U, U))}]:
        assert not np.allclose(lstm_cell_forward(x, h, c, k, rk, b, **extra)[0], h1)
