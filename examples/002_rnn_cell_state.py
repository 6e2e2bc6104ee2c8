"""Seed 002: what is inside a TF1 BasicLSTMCell — state_size, zero_state, and what cell.call computes.

The seed's TF1 program with only the import changed. lstmkit's TF1 API is eager, so the placeholder
``input = tf.placeholder(dtype=tf.float32, shape=[batch_size, 50])`` becomes the array it would have
been fed (here random numbers), and every result is a NumPy array at once.
"""
import numpy as np

import lstmkit.compat.v1 as tf   # was: import tensorflow as tf

output_size = 10
batch_size = 32
dim = 50
cell = tf.nn.rnn_cell.BasicLSTMCell(num_units=output_size)
print(cell.state_size)                                          # LSTMStateTuple(c=10, h=10)

input = tf.random.normal([batch_size, dim], seed=0)             # was: tf.placeholder(tf.float32, [32, 50])
h0 = cell.zero_state(batch_size=batch_size, dtype=tf.float32)
print("zero_state: LSTMStateTuple(c=%s, h=%s)" % (h0.c.shape, h0.h.shape))

new_h, new_state = cell.call(input, h0)

# -- what the seed explains -------------------------------------------------------------------------
assert cell.state_size == tf.LSTMStateTuple(c=10, h=10)
assert h0.c.shape == h0.h.shape == (batch_size, output_size) and not h0.c.any() and not h0.h.any()
print("new_h:", new_h.shape, " new_state.c:", new_state.c.shape, " new_state.h:", new_state.h.shape)
assert np.array_equal(new_h, new_state.h)                       # the output IS the new h
print("new_h is new_state.h:", np.array_equal(new_h, new_state.h))

# One kernel (dim + output_size, 4 * output_size) = [x; h] rows, four gate blocks i, j, f, o; each
# block is one of the seed's "4 parameters of shape [output_size + n, output_size]".
for name, value in cell.variables.items():
    print(f"variable {name}: {value.shape}")
kernel, bias = cell.variables["kernel"], cell.variables["bias"]
assert kernel.shape == (dim + output_size, 4 * output_size) and bias.shape == (4 * output_size,)
W_i, W_j, W_f, W_o = np.split(kernel, 4, axis=1)
print("each gate block:", W_i.shape)

# cell.call, written out as in the seed's listing of TF's source (forget_bias = 1.0 added at run time)
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


c, h = h0
concat = np.concatenate([input, h], axis=1) @ kernel + bias
i, j, f, o = np.split(concat, 4, axis=1)
expect_c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
expect_h = np.tanh(expect_c) * sigmoid(o)
assert np.allclose(new_state.c, expect_c, atol=1e-6) and np.allclose(new_h, expect_h, atol=1e-6)
print("new_c = c*sigmoid(f + forget_bias) + sigmoid(i)*tanh(j); new_h = tanh(new_c)*sigmoid(o): True")

# state_is_tuple=False: the state is ONE array, [c, h] concatenated
flat = tf.nn.rnn_cell.BasicLSTMCell(num_units=output_size, state_is_tuple=False)
flat.set_weights(cell.get_weights())
out, flat_state = flat(input, flat.zero_state(batch_size, tf.float32))
print("state_is_tuple=False: state_size", flat.state_size, "state", flat_state.shape)
assert flat.state_size == 2 * output_size and flat_state.shape == (batch_size, 2 * output_size)
assert np.allclose(flat_state[:, :output_size], new_state.c) and np.allclose(flat_state[:, output_size:], new_h)
print("[c, h] order: c first:", np.allclose(flat_state[:, :output_size], new_state.c))
