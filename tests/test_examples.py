"""The Keras seed examples run as programs (a subprocess each) and print the identities they discuss."""

from helpers import run_example


def test_000_lstm_returns():
    out = run_example("000_lstm_returns.py")
    for line in ("number of tensors: 3", "whole_seq_output (outputs): (2, 2, 4)",
                 "final_memory_state (h): (2, 4)", "final_carry_state (c): (2, 4)",
                 "outputs[:, -1] == h: True", "h == c: False",
                 "h recomputed from the gate equations: True",
                 "c recomputed from the gate equations: True"):
        assert line in out.splitlines(), line


def test_001_return_sequences_and_state():
    lines = run_example("001_return_sequences_and_state.py").splitlines()
    for line in ("LSTM(1): (1, 1)", "return_sequences=True: (1, 3, 1)",
                 "return_state=True: [(1, 1), (1, 1), (1, 1)]", "lstm1 == state_h: True",
                 "return_sequences=True, return_state=True: [(1, 3, 1), (1, 1), (1, 1)]",
                 "lstm1[:, -1] == state_h: True", " Total params: 12 (48.00 B)"):
        assert line in lines, line


def test_004_keras_seq2seq_state():
    out = run_example("004_keras_seq2seq_state.py")
    lines = out.splitlines()
    for line in ("encoder input: (2, 4, 6)  decoder input: (2, 3, 5)  output: (2, 3, 5)",
                 "encoder state: h (2, 8)  c (2, 8)", "encoder h == its last output: True",
                 "decoder started from the encoder's [h, c]: True",
                 "decoder started from zeros gives the same: False",
                 " Total params: 973 (3.80 KB)"):
        assert line in lines, line
    assert any(l.startswith("initial_state=[c, h] refused: these look like (c, h)") for l in lines)
    assert any(l.startswith("initial_state=h refused: initial_state: a Keras LSTM needs 2 arrays [h, c]")
               for l in lines)


def test_004_summary_counts_equal_keras(keras3):
    # The example's model, built in Keras 3: the same parameter count as the example prints.
    L = keras3.layers
    enc_in, dec_in = keras3.Input((None, 6)), keras3.Input((None, 5))
    _, h, c = L.LSTM(8, return_state=True)(enc_in)
    seq, _, _ = L.LSTM(8, return_sequences=True, return_state=True)(dec_in, initial_state=[h, c])
    model = keras3.Model([enc_in, dec_in], L.Dense(5, activation="softmax")(seq))
    assert model.count_params() == 973
