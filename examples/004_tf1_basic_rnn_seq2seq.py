"""Seed 004 (the TensorFlow half): in seq2seq, the decoder starts from the encoder's WHOLE final state.

The seed quotes TF1's ``basic_rnn_seq2seq``::

    _, enc_state = rnn.static_rnn(enc_cell, encoder_inputs, dtype=dtype)
    return rnn_decoder(decoder_inputs, enc_state, cell)

and the RNN tutorial's ``output, state = lstm(current_batch_of_words, state)``. Here both run with
only the import changed; the inputs, which TF1 programs feed through placeholders, are arrays.
"""
import numpy as np

import lstmkit.compat.v1 as tf   # was: import tensorflow as tf

tf.set_random_seed(0)
lstm_size, batch_size, features = 8, 2, 6
encoder_inputs = [tf.random.normal([batch_size, features], seed=t) for t in range(5)]   # 5 steps
decoder_inputs = [tf.random.normal([batch_size, features], seed=10 + t) for t in range(4)]

lstm = tf.contrib.rnn.BasicLSTMCell(lstm_size)
outputs, state = tf.contrib.legacy_seq2seq.basic_rnn_seq2seq(encoder_inputs, decoder_inputs, lstm)
print("decoder outputs:", len(outputs), "steps of", outputs[0].shape, " final state:",
      type(state).__name__, state.c.shape, state.h.shape)

# Question 1 of the seed: is it h alone, or h and the cell state c? Both: the LSTMStateTuple(c, h).
_, enc_state = tf.nn.static_rnn(lstm.encoder_cell, encoder_inputs, dtype=tf.float32)
print("encoder final state:", enc_state._fields, enc_state.c.shape, enc_state.h.shape)

# Question 2: set the initial state yourself -- the tutorial's loop, started from the encoder's state.
state = enc_state
by_hand = []
for current_batch_of_words in decoder_inputs:
    output, state = lstm(current_batch_of_words, state)
    by_hand.append(output)
same = all(np.allclose(a, b, atol=1e-6) for a, b in zip(by_hand, outputs))
print("decoder started from the encoder's (c, h):", same)
assert same

# Handing over h alone (c = 0) is a different model: the outputs change.
h_only = tf.LSTMStateTuple(c=np.zeros_like(enc_state.c), h=enc_state.h)
first, _ = lstm(decoder_inputs[0], h_only)
print("with h alone the first output differs:", not np.allclose(first, outputs[0]))
assert not np.allclose(first, outputs[0])

# The encoder is a copy of the cell with its own variables (TF1 deep-copies the cell).
print("encoder and decoder share variables:",
      lstm.encoder_cell.variables["kernel"] is lstm.variables["kernel"])
