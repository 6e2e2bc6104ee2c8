"""TF1-named API, eager: ``import lstmkit.compat.v1 as tf`` runs TF1 RNN code on NumPy arrays.

Arrays in, arrays out: no graphs, placeholders or sessions (those names raise NotImplementedError
saying how to rewrite the line). Same numbers as TensorFlow's ``tf.compat.v1`` for the same weights::

    import lstmkit.compat.v1 as tf
    cell = tf.nn.rnn_cell.LSTMCell(4)
    outputs, final_state = tf.nn.dynamic_rnn(cell, inputs, sequence_length=lengths, dtype=tf.float32)
    final_state            # LSTMStateTuple(c=..., h=...): c FIRST; h[i] == outputs[i, lengths[i] - 1]

Names: ``nn`` (``rnn_cell``, ``dynamic_rnn``, ``static_rnn``, ``bidirectional_dynamic_rnn``,
``tanh``/``sigmoid``/``relu``), ``legacy_seq2seq`` (also ``nn.seq2seq`` and ``contrib.legacy_seq2seq``),
``contrib.rnn``, the initializers (``random_uniform_initializer`` ...), ``random`` and a few array
helpers (``zeros``, ``constant``, ``concat``, ``unstack``, ``float32`` ...). ``tf.keras`` is
``lstmkit.keras``.
"""
import importlib

from . import contrib, legacy_seq2seq, nn, random
from .array_ops import *  # noqa: F401,F403  (dtypes and array helpers)
from .graph import *  # noqa: F401,F403  (graph-mode names that explain the eager rewrite)
from .init_ops import (constant_initializer, glorot_uniform_initializer, ones_initializer,
                       orthogonal_initializer, random_normal_initializer, random_uniform_initializer,
                       truncated_normal_initializer, zeros_initializer)
from .rnn_cell import LSTMStateTuple

random_normal = random.normal
random_uniform = random.uniform
truncated_normal = random.truncated_normal
set_random_seed = random.set_seed


def __getattr__(name):
    if name == "keras":   # imported on first use: it is a separate, larger namespace
        return importlib.import_module("lstmkit.keras")
    raise AttributeError(f"lstmkit.compat.v1 has no attribute {name!r} (it covers TF1's RNN API: "
                         f"nn.rnn_cell, nn.dynamic_rnn, legacy_seq2seq, and a few array helpers)")
