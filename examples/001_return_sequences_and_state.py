"""Seed 001: return_sequences and return_state of a Keras LSTM (the tutorial's four models).

The tutorial's programs with only the imports changed (``keras`` -> ``lstmkit.keras``). The data is
one sequence of 3 steps with one feature, t1 = 0.1, t2 = 0.2, t3 = 0.3; the weights are random, so
the values differ from the tutorial's, but the shapes and the identities are what it explains:

* LSTM(1): the last step's output, h, shape (1, 1);
* return_sequences=True: the output of every step, (1, 3, 1);
* return_state=True: [lstm1, state_h, state_c], where lstm1 == state_h;
* both: [lstm1, state_h, state_c] with lstm1[:, -1] == state_h.
"""
import numpy as np

from lstmkit.keras.layers import LSTM, Input     # was: from keras.layers import ...
from lstmkit.keras.models import Model           # was: from keras.models import Model
from numpy import array

data = array([0.1, 0.2, 0.3]).reshape((1, 3, 1))

# 1. one hidden state output for the whole sequence
inputs1 = Input(shape=(3, 1))
lstm1 = LSTM(1)(inputs1)
model = Model(inputs=inputs1, outputs=lstm1)
out = model.predict(data)
print(out)
print("LSTM(1):", out.shape)

# 2. return_sequences=True: the hidden state output of every step
inputs1 = Input(shape=(3, 1))
lstm1 = LSTM(1, return_sequences=True)(inputs1)
model = Model(inputs=inputs1, outputs=lstm1)
out = model.predict(data)
print(out)
print("return_sequences=True:", out.shape)

# 3. return_state=True: the last output, h (again) and c
inputs1 = Input(shape=(3, 1))
lstm1, state_h, state_c = LSTM(1, return_state=True)(inputs1)
model = Model(inputs=inputs1, outputs=[lstm1, state_h, state_c])
out = model.predict(data)
print(out)
print("return_state=True:", [o.shape for o in out])
print("lstm1 == state_h:", np.array_equal(out[0], out[1]))

# 4. both: every step's output, then h and c of the last step
inputs1 = Input(shape=(3, 1))
lstm1, state_h, state_c = LSTM(1, return_sequences=True, return_state=True)(inputs1)
model = Model(inputs=inputs1, outputs=[lstm1, state_h, state_c])
out = model.predict(data)
print(out)
print("return_sequences=True, return_state=True:", [o.shape for o in out])
print("lstm1[:, -1] == state_h:", np.array_equal(out[0][:, -1], out[1]))
model.summary()
