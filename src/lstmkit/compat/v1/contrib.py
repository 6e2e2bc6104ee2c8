"""``tf.contrib``'s RNN names that old tutorials use: ``tf.contrib.rnn`` and
``tf.contrib.legacy_seq2seq`` (the same objects as ``tf.nn.rnn_cell`` / ``tf.nn``'s)."""
from types import SimpleNamespace

from . import legacy_seq2seq, rnn_cell
from .rnn import bidirectional_dynamic_rnn, static_rnn

rnn = SimpleNamespace(**{name: getattr(rnn_cell, name) for name in rnn_cell.__all__},
                      static_rnn=static_rnn, bidirectional_dynamic_rnn=bidirectional_dynamic_rnn)

__all__ = ["rnn", "legacy_seq2seq"]
