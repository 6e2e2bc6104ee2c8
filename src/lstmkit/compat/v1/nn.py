"""``tf.nn``: the RNN cells and runners, and the activations a cell accepts."""
import numpy as np

from ...kernels.activations import relu, sigmoid
from . import legacy_seq2seq as seq2seq
from . import rnn_cell
from .rnn import bidirectional_dynamic_rnn, dynamic_rnn, static_rnn

tanh = np.tanh

__all__ = ["rnn_cell", "seq2seq", "dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn", "tanh",
           "sigmoid", "relu"]
