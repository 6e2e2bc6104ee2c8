"""Seed 000: "What does a TensorFlow LSTM return?" -- the three tensors of return_state.

The seed's program with only the import changed (its stray parenthesis fixed): ``tf.random.normal``
and ``tf.keras.layers.LSTM`` come from lstmkit's TF1-named namespace, whose ``keras`` is
``lstmkit.keras``. The answer the seed arrives at, checked on the numbers:

* result[0]: the output at every step (return_sequences=True), (batch, time, units);
* result[1]: h, the hidden ("memory") state after the last step -- equal to result[0][:, -1];
* result[2]: c, the cell ("carry") state, which is never an output; h = o * tanh(c).
"""
import numpy as np

import lstmkit.compat.v1 as tf   # was: import tensorflow as tf

tensor = tf.random.normal(shape=[2, 2, 2], seed=0)
lstm = tf.keras.layers.LSTM(units=4, return_sequences=True, return_state=True)
result = lstm((tensor))
print("result:\n", result)

# -- what the seed explains -------------------------------------------------------------------------
whole_seq_output, final_memory_state, final_carry_state = result
print("number of tensors:", len(result))
print("whole_seq_output (outputs):", whole_seq_output.shape)
print("final_memory_state (h):", final_memory_state.shape)
print("final_carry_state (c):", final_carry_state.shape)
print("outputs[:, -1] == h:", np.allclose(whole_seq_output[:, -1], final_memory_state))
print("h == c:", np.allclose(final_memory_state, final_carry_state))

# h = o * tanh(c) with the output gate o in (0, 1): |h| <= |tanh(c)|, sign of c -- so h never exceeds
# 1 in size while c may. Recompute h from c with the layer's own weights, step by step.
kernel, recurrent_kernel, bias = lstm.get_weights()
U = 4
h = np.zeros((2, U), "float32")
c = np.zeros((2, U), "float32")
sigmoid = lambda z: 1 / (1 + np.exp(-z))
for t in range(2):
    z = tensor[:, t] @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = sigmoid(z[:, :U]), sigmoid(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), sigmoid(z[:, 3 * U:])
    c = f * c + i * g
    h = o * np.tanh(c)
print("h recomputed from the gate equations:", np.allclose(h, final_memory_state, atol=1e-6))
print("c recomputed from the gate equations:", np.allclose(c, final_carry_state, atol=1e-6))
