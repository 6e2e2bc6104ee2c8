"""Seed 003: hidden states vs. the final state that tf.nn.dynamic_rnn returns, with sequence lengths.

The seed's TF1 program with only the import changed. lstmkit's TF1 API is eager: the two placeholders
become the arrays that were fed to them (``inputs_`` and ``lengths_``), and the ``tf.Session`` block
goes away because ``dynamic_rnn`` returns NumPy arrays at once. (``inputs_`` is int32 as in the seed:
it is cast to ``dtype``, as feeding the float32 placeholder did.) The weights are random, so the
numbers differ from the seed's; the structure and the identities do not.
"""
import numpy as np

import lstmkit.compat.v1 as tf   # was: import tensorflow as tf

np.set_printoptions(precision=5, suppress=True)
tf.set_random_seed(0)

dim = 3
hidden = 4

cell = tf.nn.rnn_cell.LSTMCell(hidden, state_is_tuple=True)

inputs_ = np.asarray([[[0, 0, 0], [1, 1, 1], [2, 2, 2]],
                      [[6, 6, 6], [7, 7, 7], [8, 8, 8]],
                      [[9, 9, 9], [10, 10, 10], [11, 11, 11]]],
                     dtype=np.int32)
lengths_ = np.asarray([3, 1, 2], dtype=np.int32)

# was: placeholders, then sess.run([output, final_state], {inputs: inputs_, lengths: lengths_})
output_, final_state_ = tf.nn.dynamic_rnn(cell, inputs_, lengths_, dtype=tf.float32)

print('hidden states:')
print(output_)
print('final state :')
print(final_state_)

# -- what the answer explains ----------------------------------------------------------------------
print("outputs:", output_.shape, " final_state.c:", final_state_.c.shape,
      " final_state.h:", final_state_.h.shape)
for i, n in enumerate(lengths_):
    # h of the final state is the output at each sequence's LAST VALID step, not at step T-1
    same = np.array_equal(final_state_.h[i], output_[i, n - 1])
    zeros = not output_[i, n:].any()
    print(f"sequence {i}: length {n}: final_state.h[{i}] == output[{i}][{n - 1}]: {same}; "
          f"outputs past the length are zero: {zeros}")
    assert same and zeros
# ...and it differs from the output at the last time step wherever that step is padding
assert not np.allclose(final_state_.h[1], output_[1, -1])
print("final_state.h[1] == output[1][-1] (the padded last step):",
      np.allclose(final_state_.h[1], output_[1, -1]))
# c is the cell state: a second, different array (TF1 puts it FIRST in LSTMStateTuple(c, h))
assert not np.allclose(final_state_.c, final_state_.h)
