"""What every recurrent kernel shares: masks, direction, and what a padded step outputs.

The recurrent kernels work time-major in *processing order*: step p of the loop reads input
position p, or T-1-p when ``reverse`` is true. With a post-padded mask (valid steps first), running in
reverse and skipping the padded steps is exactly "reverse within each length" (PyTorch's and TF1's
bidirectional backward direction), and the outputs written back at their input positions line up with
the forward direction's. Keras's ``go_backwards`` is the same loop with the outputs left in processing
order; that flip belongs to the Keras adaptor, not here.

At a step where ``mask[b, t]`` is False the state of row b is carried unchanged and its output is either
zero (``masked_output="zero"``: PyTorch, TF1 ``sequence_length``, ONNX) or a repeat of the last output
of a valid step, zero before the first one (``masked_output="repeat"``: Keras).
"""
import numpy as np

from . import buffers

MASKED_OUTPUTS = ("zero", "repeat")


def to_processing_order(x, mask, reverse, dtype):
    """(B, T, F) batch-major input and (B, T) mask -> time-major arrays in processing order.

    Returns ``xs`` (T, B, F) and ``ms`` (T, B, 1) of ``dtype`` (ones where valid) or None if no mask.
    """
    xs = np.asarray(x, dtype=dtype).transpose(1, 0, 2)
    ms = None if mask is None else np.asarray(mask, dtype=dtype).T[:, :, None]
    if reverse:
        xs = xs[::-1]
        ms = None if ms is None else ms[::-1]
    return buffers.contiguous(xs, dtype), ms


def to_batch_major(ys, reverse):
    """Inverse of :func:`to_processing_order` for a (T, B, F) array."""
    if reverse:
        ys = ys[::-1]
    return ys.transpose(1, 0, 2)


def masked_output(out, new, prev_out, m, mode):
    """Write the output of one step into ``out`` given the step's mask column ``m`` (B, 1)."""
    if m is None:
        out[...] = new
    elif mode == "zero":
        np.multiply(new, m, out=out)
        out += 0.0   # -0.0 * 0 would print as -0.
    else:  # repeat
        out[...] = np.where(m != 0, new, prev_out)


def output_grad(d_out_t, m, mode, pending):
    """Gradient reaching the freshly computed output of step t, walking the steps backwards.

    With ``repeat``, a padded step's output is a copy of an earlier step's; its gradient is held in
    ``pending`` (B, U) until the step it copied. Returns the gradient for step t (zero where masked).
    """
    if m is None:
        return d_out_t
    if mode == "zero":
        return d_out_t * m
    total = pending + d_out_t
    pending[...] = total * (1 - m)
    return total * m


def check_mode(mode):
    if mode not in MASKED_OUTPUTS:
        raise ValueError(f"masked_output: expected 'zero' or 'repeat', got {mode!r}")


def reverse_within_lengths(x, lengths):
    """Reverse each row's first ``lengths[b]`` steps and leave its padding in place (TF's
    ``reverse_sequence``): ``y[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``, else ``x[b, t]``.

    x: (B, T, ...), lengths: (B,) ints in [0, T]. Applying it twice gives x back. A post-padded
    recurrent pass with ``reverse=True`` equals the forward pass over this transform's output, with
    the outputs transformed back.
    """
    x = np.asarray(x)
    lengths = np.asarray(lengths)
    T = x.shape[1]
    t = np.arange(T)[None, :]
    src = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return np.take_along_axis(x, src.reshape(src.shape + (1,) * (x.ndim - 2)), axis=1)
