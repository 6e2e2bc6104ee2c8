"""One step of an LSTM cell with TF1 ``LSTMCell``'s extras: peepholes, cell clipping, a projection.

Canonical layout (Keras's), gate blocks i, f, g, o; any forget bias is already folded into ``bias``::

    kernel            (I, 4U)
    recurrent_kernel  (P, 4U)     P = U without a projection, else the projection's size
    bias              (4U,) or None
    peepholes         (w_i, w_f, w_o), each (U,), or None
    projection        (U, P) or None

The step (Sak et al. 2014, "Long short-term memory recurrent neural network architectures for large
scale acoustic modeling")::

    z   = x @ kernel + h @ recurrent_kernel + bias
    i   = σ(z_i + w_i * c)        f = σ(z_f + w_f * c)        g = act(z_g)       (peepholes read c_{t-1})
    c'  = f * c + i * g           c' = clip(c', -cell_clip, cell_clip)            if cell_clip is not None
    o   = σ(z_o + w_o * c')                                                      (peephole reads c_t)
    m   = o * act(c')
    h'  = m @ projection          h' = clip(h', -proj_clip, proj_clip)            if proj_clip is not None

Without peepholes, clip and projection this is exactly one step of :func:`lstm.lstm_forward`.
Shapes: x (B, I), h (B, P), c (B, U); returns h' (B, P) and c' (B, U).
"""
import numpy as np

from . import activations


def lstm_cell_forward(x, h, c, kernel, recurrent_kernel, bias=None, *, peepholes=None,
                      cell_clip=None, projection=None, proj_clip=None, activation="tanh",
                      recurrent_activation="sigmoid"):
    """One LSTM step. Returns ``(h_new, c_new)``: h_new (B, P) is also the step's output."""
    act, _ = activations.get(activation)
    ract, _ = activations.get(recurrent_activation)
    U = kernel.shape[1] // 4
    z = x @ kernel + h @ recurrent_kernel
    if bias is not None:
        z += bias
    zi, zf, zg, zo = z[:, :U], z[:, U:2 * U], z[:, 2 * U:3 * U], z[:, 3 * U:]
    if peepholes is not None:
        w_i, w_f, w_o = peepholes
        zi = zi + w_i * c
        zf = zf + w_f * c
    c_new = ract(zf) * c + ract(zi) * act(zg)
    if cell_clip is not None:
        c_new = np.clip(c_new, -cell_clip, cell_clip)
    if peepholes is not None:
        zo = zo + w_o * c_new
    h_new = ract(zo) * act(c_new)
    if projection is not None:
        h_new = h_new @ projection
        if proj_clip is not None:
            h_new = np.clip(h_new, -proj_clip, proj_clip)
    return h_new, c_new
