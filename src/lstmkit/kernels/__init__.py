"""Pure functions of arrays: the math of every layer, forward and backward. No classes, no state.

Each ``*_forward`` returns its results and a ``cache``; the matching ``*_backward`` takes that cache and
the gradients of the results and returns the gradients of every input and weight.
"""
from .attention import (attention_backward, attention_forward, attention_memory_backward,
                        attention_memory_forward)
from .backend import constant_weights, get_backend, get_num_threads, set_backend, set_num_threads
from .decoder import decoder_step
from .dense import dense_backward, dense_forward
from .dropout import dropout_mask
from .embedding import embedding_backward, embedding_forward
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward

__all__ = [
    "attention_forward", "attention_backward", "attention_memory_forward", "attention_memory_backward",
    "constant_weights", "get_backend", "set_backend", "get_num_threads", "set_num_threads",
    "decoder_step", "dense_forward", "dense_backward", "dropout_mask", "embedding_forward", "embedding_backward",
    "gru_forward", "gru_backward", "lstm_forward", "lstm_backward", "rnn_forward", "rnn_backward",
]
