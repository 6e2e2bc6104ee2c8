"""TF1's sequence runners: ``dynamic_rnn``, ``static_rnn``, ``bidirectional_dynamic_rnn``. Eager.

What ``sequence_length`` means (the question every TF1 user asks once)::

    outputs, final_state = tf.nn.dynamic_rnn(cell, inputs, sequence_length=lengths, dtype=tf.float32)
    outputs[i, t]    = h at step t for t < lengths[i], ZERO for t >= lengths[i]
    final_state      = the state at each sequence's LAST VALID step, lengths[i] - 1 (not at step T-1):
    final_state.h[i] == outputs[i, lengths[i] - 1]

A plain ``BasicLSTMCell``/``LSTMCell`` (no peepholes, clip or projection), ``GRUCell``,
``BasicRNNCell``, or a ``MultiRNNCell`` of them runs as whole-sequence kernels; any other cell (an
``LSTMCell`` with extras, a cell of your own) is stepped through time, calling the cell.
"""
import numpy as np

from ...layers.recurrent import lengths_to_mask
from .rnn_cell import _float_dtype


def _leaves(structure):
    if isinstance(structure, (tuple, list)):
        for s in structure:
            yield from _leaves(s)
    else:
        yield structure


def _map(fn, *structures):
    first = structures[0]
    if isinstance(first, (tuple, list)):
        values = [_map(fn, *parts) for parts in zip(*structures)]
        if hasattr(first, "_fields"):
            return type(first)(*values)
        return type(first)(values)
    return fn(*structures)


def _check_cell(cell, argument="cell"):
    if not callable(cell) or not hasattr(cell, "state_size") or not hasattr(cell, "output_size"):
        raise TypeError(f"{argument}: expected an RNN cell (tf.nn.rnn_cell.BasicLSTMCell(...) or an "
                        f"RNNCell subclass), got {type(cell).__name__}")


def _sequence_mask(sequence_length, batch, steps):
    """(B,) lengths -> (B, T) bool mask, True at valid steps, or None for full length."""
    if sequence_length is None:
        return None
    return lengths_to_mask(sequence_length, batch, steps, "sequence_length")


def _run_dtype(cell, initial_state, dtype, caller):
    """The float dtype of a run: ``dtype``, else the initial state's; and check the cell agrees."""
    cell_dtype = getattr(cell, "dtype", None)
    if dtype is not None:
        dt = _float_dtype(dtype)
    elif cell_dtype is not None:
        dt = np.dtype(cell_dtype)
    elif initial_state is not None:
        first = next(_leaves(initial_state))
        kind = np.asarray(first).dtype
        dt = kind if kind in (np.float32, np.float64) else np.dtype("float32")
    else:
        raise ValueError(f"{caller}: without an initial_state you must give a dtype (as in TF1), "
                         f"e.g. dtype=tf.float32")
    if getattr(cell, "built", False) and cell_dtype is not None and np.dtype(cell_dtype) != dt:
        raise TypeError(f"dtype: the cell was built for {np.dtype(cell_dtype).name}, this run asks "
                        f"for {dt.name}")
    if hasattr(cell, "_resolve_dtype"):
        cell._resolve_dtype(dt)
    return dt


def _as_inputs(inputs, dtype, argument="inputs"):
    x = np.asarray(inputs)
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{argument}: expected a numeric array, got dtype {x.dtype}")
    return x.astype(dtype, copy=False)


def _run(cell, x, mask, initial_state, dtype):
    """Run ``cell`` over batch-major ``x`` (B, T, I). Returns outputs (B, T, O) and the final state."""
    B, T, I = x.shape
    if not getattr(cell, "built", True):
        cell.build((B, I))
    elif getattr(cell, "input_size", None) not in (None, I):
        raise ValueError(f"inputs: the cell was built for {cell.input_size} features, got {I} "
                         f"(shape {x.shape})")
    if initial_state is None:
        state = cell.zero_state(B, dtype)
    elif hasattr(cell, "_parse_state"):
        state = cell._parse_state(initial_state, B, dtype, "initial_state")
    else:
        state = initial_state
    if getattr(cell, "_has_fast_path", lambda: False)():
        return cell._run_sequence(x, mask, state)

    step = cell._stepper() if hasattr(cell, "_stepper") else cell
    outputs = None
    for t in range(T):
        out, new_state = step(x[:, t], state)
        out = np.asarray(out)
        if outputs is None:
            outputs = np.zeros((B, T) + out.shape[1:], out.dtype)
        if mask is None:
            outputs[:, t] = out
            state = new_state
        else:
            # Past a sequence's length: output zero, state carried (TF1's copy-through).
            m = mask[:, t]
            outputs[:, t] = np.where(m.reshape((B,) + (1,) * (out.ndim - 1)), out, 0)
            state = _map(lambda new, old: np.where(m[:, None], new, old), new_state, state)
    if outputs is None:
        outputs = np.zeros((B, 0, _leading_size(cell.output_size)), dtype)
    return outputs, state


def _leading_size(size):
    return size if isinstance(size, (int, np.integer)) else sum(_leaves(size))


def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None,
                parallel_iterations=None, swap_memory=False, time_major=False, scope=None):
    """Run ``cell`` over ``inputs``. Returns ``(outputs, final_state)``.

    inputs: (B, T, I), or (T, B, I) with ``time_major=True``; integers are cast to ``dtype``.
    sequence_length: (B,) ints in [0, T]: outputs are zero past each length and ``final_state`` is
        the state at each sequence's last valid step. None: every sequence has T steps.
    initial_state: shaped like ``cell.zero_state(B, dtype)`` (an ``LSTMStateTuple(c, h)`` for an
        LSTM); None starts from zeros and then ``dtype`` is required, as in TF1.
    Returns outputs (B, T, cell.output_size) (time-major if ``time_major``) and the final state in
    the cell's state structure. ``parallel_iterations``, ``swap_memory`` and ``scope`` are accepted
    and ignored (they tune TF graphs).

    Example:
        >>> import numpy as np, lstmkit.compat.v1 as tf
        >>> cell = tf.nn.rnn_cell.LSTMCell(4)
        >>> x = np.random.rand(3, 5, 2).astype("float32")
        >>> outputs, state = tf.nn.dynamic_rnn(cell, x, sequence_length=[5, 1, 3], dtype=tf.float32)
        >>> bool(np.all(state.h[1] == outputs[1, 0])), bool(np.all(outputs[1, 1:] == 0))
        (True, True)
    """
    _check_cell(cell)
    dt = _run_dtype(cell, initial_state, dtype, "dynamic_rnn")
    x = _as_inputs(inputs, dt)
    if x.ndim != 3:
        layout = "(time, batch, features)" if time_major else "(batch, time, features)"
        raise ValueError(f"inputs: expected a 3-D array {layout}, got shape {x.shape}")
    if time_major:
        x = x.transpose(1, 0, 2)
    B, T, _ = x.shape
    mask = _sequence_mask(sequence_length, B, T)
    outputs, state = _run(cell, np.ascontiguousarray(x), mask, initial_state, dt)
    if time_major:
        outputs = outputs.transpose(1, 0, 2)
    return outputs, state


def static_rnn(cell, inputs, initial_state=None, dtype=None, sequence_length=None, scope=None):
    """:func:`dynamic_rnn` over a Python list of T arrays (B, I). Returns ``(outputs, final_state)``
    with ``outputs`` a list of T arrays (B, cell.output_size)."""
    _check_cell(cell)
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"inputs: expected a non-empty list of (batch, features) arrays, one per "
                        f"time step, got {type(inputs).__name__}")
    shapes = {np.shape(a) for a in inputs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"inputs: expected arrays of one shape (batch, features), got shapes "
                         f"{sorted(shapes)}")
    dt = _run_dtype(cell, initial_state, dtype, "static_rnn")
    x = np.stack([_as_inputs(a, dt, "inputs") for a in inputs], axis=1)
    mask = _sequence_mask(sequence_length, x.shape[0], x.shape[1])
    outputs, state = _run(cell, x, mask, initial_state, dt)
    return [outputs[:, t] for t in range(outputs.shape[1])], state


def reverse_sequence(input, seq_lengths, seq_axis=1, batch_axis=0, name=None):
    """Reverse the first ``seq_lengths[b]`` entries along ``seq_axis`` of each batch row ``b``;
    entries past the length stay where they are (TF's ``tf.reverse_sequence``)."""
    x = np.asarray(input)
    moved = np.moveaxis(x, (batch_axis, seq_axis), (0, 1))
    B, T = moved.shape[:2]
    lengths = np.full(B, T) if seq_lengths is None else np.asarray(seq_lengths)
    if lengths.shape != (B,) or (B and (lengths.min() < 0 or lengths.max() > T)):
        raise ValueError(f"seq_lengths: expected shape ({B},) with values in [0, {T}], got "
                         f"{lengths.tolist()}")
    t = np.arange(T)[None, :]
    index = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    out = np.take_along_axis(moved, index.reshape((B, T) + (1,) * (moved.ndim - 2)), axis=1)
    return np.moveaxis(out, (0, 1), (batch_axis, seq_axis))


def bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, sequence_length=None, initial_state_fw=None,
                              initial_state_bw=None, dtype=None, parallel_iterations=None,
                              swap_memory=False, time_major=False, scope=None):
    """A forward and a backward :func:`dynamic_rnn`. Returns
    ``((output_fw, output_bw), (output_state_fw, output_state_bw))``.

    The backward cell reads each sequence reversed WITHIN its length (its first step is step
    ``length - 1``), and ``output_bw`` is reversed back, so ``output_fw[:, t]`` and
    ``output_bw[:, t]`` both belong to input step t. Concatenate them for a (B, T, 2U) output.
    """
    _check_cell(cell_fw, "cell_fw")
    _check_cell(cell_bw, "cell_bw")
    out_fw, state_fw = dynamic_rnn(cell_fw, inputs, sequence_length, initial_state_fw, dtype,
                                   time_major=time_major)
    seq_axis, batch_axis = (0, 1) if time_major else (1, 0)
    x = np.asarray(inputs)
    reversed_x = reverse_sequence(x, sequence_length, seq_axis, batch_axis)
    out_bw, state_bw = dynamic_rnn(cell_bw, reversed_x, sequence_length, initial_state_bw, dtype,
                                   time_major=time_major)
    out_bw = reverse_sequence(out_bw, sequence_length, seq_axis, batch_axis)
    return (out_fw, out_bw), (state_fw, state_bw)
