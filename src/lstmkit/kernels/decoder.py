"""One decoding step of an LSTM decoder with Luong attention and input feeding, fused (inference):

    x                = [table[tokens]; a_prev]                        (N, E + A)
    h, c             = LSTM step of x from (h_prev, c_prev)           kernel (E + A, 4U), recurrent (U, 4U)
    context, weights = attention of h over memory and keys (mask)     dot or general scores (``attention``)
    a                = tanh([context; h] @ W_a + b_a)                 (N, A)
    log_probs        = log_softmax(a @ W_o + b_o)                     (N, V)

The same results as the layers' step, to float rounding. Compiled, the whole step is one start of
lstmkit's threads: each computes its units of the cell, its rows of the attention and its columns of
the two products and of the log-softmax (partial row maxima and sums, combined after a wait), where
the layers' step starts them once per product and leaves the rest to one core and to Python
(beam 5 over 8 sentences, H=256, V=2000, two cores: 0.94 -> 0.68 ms a step). It reads the weights as a
:func:`constant_weights` block packed them; elsewhere :func:`decoder_step` returns None and the
caller takes the layers' step.
"""
import numpy as np

from . import backend


def decoder_step(tokens, table, feed, h, c, kernel, recurrent_kernel, bias, memory, keys, mask, W_a, b_a, W_o,
                 b_o):
    """``log_probs, weights, h, c, a`` (see above), or None where the step cannot run fused: no
    compiled backend, or weights not in a :func:`constant_weights` block. ``tokens`` (N,) ids already
    checked in range; ``h``, ``c`` (N, U), ``feed`` = a_prev (N, A), ``memory`` (N, S, U) (the keys
    themselves for dot scores), ``keys`` (N, S, Dv), ``mask`` (N, S) bool or None, ``bias`` (4U,)."""
    loops = backend.compiled_loops(kernel.dtype)
    if loops is None or not loops.PACKED or not backend.is_constant(kernel):
        return None
    table, feed, h, c, bias, memory, keys, b_a, b_o = (np.ascontiguousarray(a, kernel.dtype) for a in (
        table, feed, h, c, bias, memory, keys, b_a, b_o))
    return loops.decoder_step(tokens, table, feed, h, c, kernel, recurrent_kernel, bias, memory, keys, mask,
                              W_a, b_a, W_o, b_o)
