"""TF1's ``legacy_seq2seq``: an encoder's final state as the decoder's initial state. Eager.

The state handed over is the encoder's WHOLE final state: for an LSTM, ``LSTMStateTuple(c, h)`` —
both the cell state and the hidden state, c first. Inputs are Python lists of (B, I) arrays, one per
time step, as in TF1.
"""
import copy

from .rnn import _check_cell, static_rnn


def rnn_decoder(decoder_inputs, initial_state, cell, loop_function=None, scope=None):
    """Run ``cell`` over ``decoder_inputs`` from ``initial_state``. Returns ``(outputs, state)``.

    decoder_inputs: list of T arrays (B, I). ``loop_function(prev_output, i)``, if given, makes the
    input of step i >= 1 from the previous step's output (greedy decoding); ``decoder_inputs[0]`` is
    still the first input. outputs: list of T arrays (B, cell.output_size); state: the last step's.
    """
    _check_cell(cell)
    if not isinstance(decoder_inputs, (list, tuple)) or not decoder_inputs:
        raise TypeError("decoder_inputs: expected a non-empty list of (batch, features) arrays, one "
                        f"per time step, got {type(decoder_inputs).__name__}")
    state = initial_state
    outputs = []
    prev = None
    for i, inp in enumerate(decoder_inputs):
        if loop_function is not None and prev is not None:
            inp = loop_function(prev, i)
        output, state = cell(inp, state)
        outputs.append(output)
        if loop_function is not None:
            prev = output
    return outputs, state


def basic_rnn_seq2seq(encoder_inputs, decoder_inputs, cell, dtype="float32", scope=None):
    """Encode ``encoder_inputs`` with a copy of ``cell``, then decode from its final state.

    As in TF1 the encoder is ``copy.deepcopy(cell)``: its own variables, starting equal to
    ``cell``'s if ``cell`` is already built. The copy is made at the first call and kept (as
    ``cell.encoder_cell``), so repeated calls use the same encoder. Returns ``(outputs, state)`` of
    :func:`rnn_decoder`.
    """
    _check_cell(cell)
    enc_cell = getattr(cell, "encoder_cell", None)
    if enc_cell is None:
        enc_cell = copy.deepcopy(cell)
        cell.encoder_cell = enc_cell
    _, enc_state = static_rnn(enc_cell, encoder_inputs, dtype=dtype)
    return rnn_decoder(decoder_inputs, enc_state, cell)


def tied_rnn_seq2seq(encoder_inputs, decoder_inputs, cell, loop_function=None, dtype="float32",
                     scope=None):
    """As :func:`basic_rnn_seq2seq`, but the encoder and the decoder share ``cell``'s variables."""
    _check_cell(cell)
    _, enc_state = static_rnn(cell, encoder_inputs, dtype=dtype)
    return rnn_decoder(decoder_inputs, enc_state, cell, loop_function=loop_function)
