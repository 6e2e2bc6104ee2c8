"""TF1 variables and checkpoints in and out, checked by running the real TF1 graph (tf.compat.v1)."""
import numpy as np
import pytest

import lstmkit
from lstmkit import interop

B, T, I, U = 3, 5, 3, 4
LENGTHS = np.array([5, 2, 1], np.int32)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
CASES = [  # cell, layers, style
    ("lstm", 1, "plain"), ("lstm", 2, "multi"), ("gru", 1, "plain"), ("rnn", 2, "multi"),
    ("lstm", 1, "bidirectional"), ("lstm", 2, "stack_bidirectional"), ("basic_lstm", 1, "plain"),
]


def _graph(tf, cell, layers, style, x, ckpt_in=None, ckpt_out=None, forget_bias=1.0):
    """Build the TF1 graph, initialise (or restore) it, run it. Returns outputs, final state pieces
    (list of (h, c) top-layer per direction) and the variables by name."""
    v1 = tf.compat.v1
    cells = {"lstm": lambda: v1.nn.rnn_cell.LSTMCell(U, forget_bias=forget_bias),
             "basic_lstm": lambda: v1.nn.rnn_cell.BasicLSTMCell(U, forget_bias=forget_bias),
             "gru": lambda: v1.nn.rnn_cell.GRUCell(U), "rnn": lambda: v1.nn.rnn_cell.BasicRNNCell(U)}
    make = cells[cell]
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        xs = v1.placeholder(tf.float32, [None, None, I])
        ls = v1.placeholder(tf.int32, [None])
        init = v1.random_uniform_initializer(-0.5, 0.5)
        with v1.variable_scope(v1.get_variable_scope(), initializer=init):
            if style == "plain":
                out, st = v1.nn.dynamic_rnn(make(), xs, sequence_length=ls, dtype=tf.float32)
                tops = [st]
            elif style == "multi":
                cellm = v1.nn.rnn_cell.MultiRNNCell([make() for _ in range(layers)])
                out, st = v1.nn.dynamic_rnn(cellm, xs, sequence_length=ls, dtype=tf.float32)
                tops = [st[-1]]
            elif style == "bidirectional":
                (of, ob), (sf, sb) = v1.nn.bidirectional_dynamic_rnn(make(), make(), xs, sequence_length=ls,
                                                                     dtype=tf.float32)
                out, tops = tf.concat([of, ob], -1), [sf, sb]
            else:
                out, sfs, sbs = _stack_bidi(v1, make, layers, xs, ls)
                tops = [sfs[-1], sbs[-1]]
        variables = v1.global_variables()
        saver = v1.train.Saver()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            if ckpt_in is not None:
                saver.restore(sess, str(ckpt_in))
            o, t = sess.run([out, tops], {xs: x, ls: LENGTHS})
            values = dict(zip([v.op.name for v in variables], sess.run(variables)))
            if ckpt_out is not None:
                saver.save(sess, str(ckpt_out))
    return o, t, values


def _stack_bidi(v1, make, layers, xs, ls):
    """Stacked bidirectional RNN, as tf.contrib.rnn.stack_bidirectional_dynamic_rnn built it (same
    variable names; contrib is gone from TF 2)."""
    import tensorflow as tf
    inp, sfs, sbs = xs, [], []
    with v1.variable_scope("stack_bidirectional_rnn"):
        for k in range(layers):
            with v1.variable_scope(f"cell_{k}"):
                (of, ob), (sf, sb) = v1.nn.bidirectional_dynamic_rnn(make(), make(), inp,
                                                                     sequence_length=ls, dtype=tf.float32)
            inp = tf.concat([of, ob], -1)
            sfs.append(sf)
            sbs.append(sb)
    return inp, sfs, sbs


def _check(res, o, tops, cell, bidi, atol=1e-5):
    np.testing.assert_allclose(res.outputs, o, atol=atol)
    mine = [res.forward.state, res.backward.state] if bidi else [res.state]
    for m, t in zip(mine, tops):
        h = m.h if m.h.ndim == 2 else m.h[-1]
        if cell in ("lstm", "basic_lstm"):
            c = m.c if m.c.ndim == 2 else m.c[-1]
            np.testing.assert_allclose(c, t.c, atol=atol)   # LSTMStateTuple(c, h): by name
            np.testing.assert_allclose(h, t.h, atol=atol)
        else:
            np.testing.assert_allclose(h, t, atol=atol)


@pytest.mark.parametrize("cell, layers, style", CASES)
def test_tf1_checkpoint_to_lstmkit_and_back(cell, layers, style, tf, rng, tmp_path):
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    ckpt = tmp_path / "model.ckpt"
    o, tops, values = _graph(tf, cell, layers, style, x, ckpt_out=ckpt)
    bidi = "bidirectional" in style
    layer = interop.load_tf1(ckpt)                                # from the checkpoint file
    assert isinstance(layer, lstmkit.Bidirectional) == bidi
    _check(layer(x, lengths=LENGTHS), o, tops, cell, bidi)
    _check(interop.load_tf1(values)(x, lengths=LENGTHS), o, tops, cell, bidi)   # from a dict
    # lstmkit writes a checkpoint that the TF1 graph restores, with new weights
    for p in layer.params.values():
        p[...] = rng.normal(scale=0.4, size=p.shape)
    out = tmp_path / "lstmkit.ckpt"
    cell_name = "basic_lstm_cell" if cell == "basic_lstm" else None
    interop.save_tf1(layer, out, scope=None, cell_name=cell_name)
    o2, tops2, _ = _graph(tf, cell, layers, style, x, ckpt_in=out)
    _check(layer(x, lengths=LENGTHS), o2, tops2, cell, bidi)


def test_forget_bias_folded(tf, rng, tmp_path):
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    o, tops, values = _graph(tf, "lstm", 1, "plain", x, forget_bias=0.3)
    _check(interop.load_tf1(values, forget_bias=0.3)(x, lengths=LENGTHS), o, tops, "lstm", False)
    with pytest.raises(AssertionError):   # the default forget_bias=1.0 would be wrong here
        _check(interop.load_tf1(values)(x, lengths=LENGTHS), o, tops, "lstm", False)


def test_npz_without_tensorflow(tmp_path, rng):
    layer = lstmkit.GRU(U, reset_after=False, num_layers=2, seed=0)
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    res = layer(x, lengths=LENGTHS)
    names = interop.save_tf1(layer, tmp_path / "w.npz")
    assert sorted(names) == sorted(f"rnn/multi_rnn_cell/cell_{k}/gru_cell/{v}" for k in range(2)
                                   for v in ("gates/kernel", "gates/bias", "candidate/kernel",
                                             "candidate/bias"))
    back = interop.load_tf1(tmp_path / "w.npz")
    np.testing.assert_array_equal(back(x, lengths=LENGTHS).outputs, res.outputs)


def test_errors(rng, tmp_path):
    k = rng.normal(size=(I + U, 4 * U)).astype(np.float32)
    b = np.zeros(4 * U, np.float32)
    with pytest.raises(ValueError, match=r"missing \['rnn/lstm_cell/bias'\]"):
        interop.load_tf1({"rnn/lstm_cell/kernel": k, "rnn/multi_rnn_cell/cell_0/lstm_cell/bias": b},
                         scope="rnn", layer=_built(lstmkit.LSTM(U)))
    with pytest.raises(ValueError, match=r"unexpected \['global_step'\]"):
        interop.load_tf1({"rnn/lstm_cell/kernel": k, "rnn/lstm_cell/bias": b, "global_step": 3})
    assert interop.load_tf1({"rnn/lstm_cell/kernel:0": k, "rnn/lstm_cell/bias:0": b, "global_step": 3},
                            scope="rnn").units == U
    with pytest.raises(ValueError, match=r"variables\['rnn/lstm_cell/kernel'\]: expected shape \(8, 16\), "
                                         r"found \(7, 16\)"):
        interop.load_tf1({"rnn/lstm_cell/kernel": k, "rnn/lstm_cell/bias": b}, _built(lstmkit.LSTM(U), I + 1))
    with pytest.raises(NotImplementedError, match="use_peepholes"):
        interop.load_tf1({"rnn/lstm_cell/kernel": k, "rnn/lstm_cell/bias": b,
                          "rnn/lstm_cell/w_f_diag": b[:U]})
    with pytest.raises(ValueError, match="several RNNs"):
        interop.load_tf1({"enc/lstm_cell/kernel": k, "enc/lstm_cell/bias": b,
                          "dec/lstm_cell/kernel": k, "dec/lstm_cell/bias": b})
    with pytest.raises(ValueError, match="reset_after=True"):
        interop.load_tf1({"rnn/gru_cell/gates/kernel": np.zeros((I + U, 2 * U)),
                          "rnn/gru_cell/gates/bias": np.zeros(2 * U),
                          "rnn/gru_cell/candidate/kernel": np.zeros((I + U, U)),
                          "rnn/gru_cell/candidate/bias": np.zeros(U)}, _built(lstmkit.GRU(U)))


def test_bad_checkpoint_file(tf, tmp_path):
    (tmp_path / "junk.index").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable TF checkpoint"):
        interop.load_tf1(tmp_path / "junk")


def _built(layer, inputs=I):
    layer.build((1, 1, inputs))
    return layer


def test_bidirectional_multi_rnn_cell_by_scope(tf, rng):
    """bidirectional_dynamic_rnn over MultiRNNCells stacks each direction on its own: refused as a
    whole, and each direction loads by scope as a stacked LSTM (the backward one reversed)."""
    v1 = tf.compat.v1
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    with tf.Graph().as_default():
        xs = v1.placeholder(tf.float32, [None, None, I])
        init = v1.random_uniform_initializer(-0.5, 0.5, seed=1)
        with v1.variable_scope("enc", initializer=init):
            cells = [v1.nn.rnn_cell.MultiRNNCell([v1.nn.rnn_cell.LSTMCell(U) for _ in range(2)])
                     for _ in range(2)]
            (of, ob), _ = v1.nn.bidirectional_dynamic_rnn(*cells, xs, sequence_length=LENGTHS,
                                                          dtype=tf.float32)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            of, ob = sess.run([of, ob], {xs: x})
            values = {v.op.name: sess.run(v) for v in v1.global_variables()}
    with pytest.raises(NotImplementedError, match="stacks each direction on its own"):
        interop.load_tf1(values)
    fw = interop.load_tf1(values, scope="enc/bidirectional_rnn/fw")
    np.testing.assert_allclose(fw(x, lengths=LENGTHS).outputs, of, atol=1e-5)
    bw = interop.load_tf1(values, _built(lstmkit.LSTM(U, num_layers=2, reverse=True)),
                          scope="enc/bidirectional_rnn/bw")
    np.testing.assert_allclose(bw(x, lengths=LENGTHS).outputs, ob, atol=1e-5)
