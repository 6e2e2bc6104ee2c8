"""The TF1 seed examples run as programs (a subprocess each) and their identities hold."""
import numpy as np
import pytest

import lstmkit.compat.v1 as ktf
from helpers import run_example


def test_002_rnn_cell_state():
    out = run_example("002_rnn_cell_state.py")
    assert out.splitlines()[0] == "LSTMStateTuple(c=10, h=10)"
    assert "variable kernel: (60, 40)" in out
    assert "each gate block: (60, 10)" in out
    assert "new_h is new_state.h: True" in out
    assert "state_is_tuple=False: state_size 20 state (32, 20)" in out


def test_003_dynamic_rnn_final_state():
    out = run_example("003_dynamic_rnn_final_state.py")
    for i, (n, last) in enumerate([(3, 2), (1, 0), (2, 1)]):
        assert (f"sequence {i}: length {n}: final_state.h[{i}] == output[{i}][{last}]: True; "
                f"outputs past the length are zero: True") in out
    assert "LSTMStateTuple(c=array(" in out


def test_004_tf1_basic_rnn_seq2seq():
    out = run_example("004_tf1_basic_rnn_seq2seq.py")
    assert "decoder started from the encoder's (c, h): True" in out
    assert "with h alone the first output differs: True" in out


@pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning")
def test_seed_003_program_matches_tensorflow(tf):
    """The seed's own program (int32 inputs fed to a float32 run) in TF and in lstmkit, same weights."""
    inputs_ = np.asarray([[[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[6, 6, 6], [7, 7, 7], [8, 8, 8]],
                          [[9, 9, 9], [10, 10, 10], [11, 11, 11]]], dtype=np.int32)
    lengths_ = np.asarray([3, 1, 2], dtype=np.int32)
    theirs = tf.compat.v1.nn.rnn_cell.LSTMCell(4, state_is_tuple=True)
    tf_out, tf_state = tf.compat.v1.nn.dynamic_rnn(theirs, tf.constant(inputs_, tf.float32),
                                                   lengths_, dtype=tf.float32)
    ours = ktf.nn.rnn_cell.LSTMCell(4, state_is_tuple=True)
    ours.set_weights([w.numpy() for w in theirs.weights])
    out, state = ktf.nn.dynamic_rnn(ours, inputs_, lengths_, dtype=ktf.float32)
    np.testing.assert_allclose(out, tf_out.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(state.c, tf_state.c.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(state.h, tf_state.h.numpy(), atol=1e-5, rtol=1e-5)
