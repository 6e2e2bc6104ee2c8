"""``lstmkit demo``: what each tensor an LSTM returns is, shown on a tiny batch with lengths."""
import numpy as np

from . import LSTM


def run():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2)).astype(np.float32)
    lengths = np.array([4, 2, 1])
    lstm = LSTM(3, seed=0)
    res = lstm(x, lengths=lengths)
    np.set_printoptions(precision=4, suppress=True)
    print("x: batch of 3 sequences, 4 steps, 2 features; lengths", lengths.tolist())
    print(f"kernel {lstm.params['kernel'].shape} = (input, 4*units), recurrent_kernel "
          f"{lstm.params['recurrent_kernel'].shape} = (units, 4*units), bias "
          f"{lstm.params['bias'].shape}; gate blocks i, f, g, o")
    print(f"res.outputs {res.outputs.shape}: h at every step, zero past each length")
    print(res.outputs)
    print(f"res.h {res.h.shape}: h at each sequence's last valid step")
    print(res.h)
    print(f"res.c {res.c.shape}: the cell state at the same step (never an output)")
    print(res.c)
    for b, n in enumerate(lengths):
        same = np.array_equal(res.h[b], res.outputs[b, n - 1])
        print(f"sequence {b}: length {n}, h == outputs[{b}, {n - 1}]: {same}; "
              f"h == outputs[{b}, -1]: {np.array_equal(res.h[b], res.outputs[b, -1])}")
    print("res.state is LSTMState(h, c): pass it as initial_state= to a decoder LSTM of 3 units")
