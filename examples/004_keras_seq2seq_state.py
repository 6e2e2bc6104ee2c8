"""Seed 004 (Keras half): an encoder-decoder whose decoder starts from the encoder's [h, c].

The seed's two questions, answered with a Keras program (only the imports changed):

1. Both the hidden state h AND the cell state c go to the decoder -- Keras orders them [h, c]
   (TF1's LSTMStateTuple is (c, h)); ``return_state=True`` gives them.
2. A Keras LSTM takes its starting state at call time: ``decoder(x, initial_state=[h, c])``.

Then the identity, checked on the numbers: running the whole model equals running the encoder,
taking its [h, c], and starting the decoder layer from exactly that state; starting from zeros does not.
"""
import numpy as np

from lstmkit.keras.layers import LSTM, Dense, Input   # was: from keras.layers import ...
from lstmkit.keras.models import Model                # was: from keras.models import Model

num_encoder_tokens, num_decoder_tokens, latent_dim = 6, 5, 8

encoder_inputs = Input(shape=(None, num_encoder_tokens))
encoder = LSTM(latent_dim, return_state=True)
encoder_outputs, state_h, state_c = encoder(encoder_inputs)
encoder_states = [state_h, state_c]                  # h AND c, in Keras's order

decoder_inputs = Input(shape=(None, num_decoder_tokens))
decoder_lstm = LSTM(latent_dim, return_sequences=True, return_state=True)
decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
decoder_dense = Dense(num_decoder_tokens, activation="softmax")
decoder_outputs = decoder_dense(decoder_outputs)

model = Model([encoder_inputs, decoder_inputs], decoder_outputs)
model.summary()

rng = np.random.default_rng(0)
question = rng.random((2, 4, num_encoder_tokens)).astype("float32")     # 2 sequences of 4 steps
answer = rng.random((2, 3, num_decoder_tokens)).astype("float32")       # shifted answers, 3 steps
probs = model.predict([question, answer])
print("encoder input:", question.shape, " decoder input:", answer.shape, " output:", probs.shape)

# -- what the seed asks ----------------------------------------------------------------------------
encoder_model = Model(encoder_inputs, encoder_states)
h, c = encoder_model.predict(question)
print("encoder state: h", h.shape, " c", c.shape)
print("encoder h == its last output:", np.array_equal(h, encoder(question)[0]))

seq, dec_h, dec_c = decoder_lstm(answer, initial_state=[h, c])
print("decoder started from the encoder's [h, c]:", np.allclose(decoder_dense(seq), probs, atol=1e-6))
zeros = [np.zeros_like(h), np.zeros_like(c)]
seq0, _, _ = decoder_lstm(answer, initial_state=zeros)
print("decoder started from zeros gives the same:", np.allclose(decoder_dense(seq0), probs, atol=1e-6))

# Passing the state in TF1's order (c, h) is caught rather than silently used:
try:
    decoder_lstm(answer, initial_state=[c, h])
except ValueError as err:
    print("initial_state=[c, h] refused:", str(err).split(":")[1].strip().split(";")[0])
# ... and so is passing h alone to an LSTM:
try:
    decoder_lstm(answer, initial_state=h)
except ValueError as err:
    print("initial_state=h refused:", str(err).split(";")[0])
