"""lstmkit: LSTM, GRU and simple-RNN networks and sequence-to-sequence models on NumPy.

The native API returns named results, so there is nothing to guess::

    import lstmkit
    res = lstmkit.LSTM(64)(x, lengths=lengths)
    res.outputs, res.h, res.c, res.state
"""
from .layers import (GRU, LSTM, Bidirectional, BidirectionalResult, Dense, Dropout, Embedding,
                     HiddenState, Layer, LSTMState, RecurrentGrads, RecurrentResult, SimpleRNN)
from . import layouts   # NumPy only: cheap
from . import losses, optim, train   # NumPy only: cheap

from .explain import explain

__version__ = "0.1.0"

__all__ = ["LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense", "Embedding", "Dropout", "Layer",
           "LSTMState", "HiddenState", "RecurrentResult", "BidirectionalResult", "RecurrentGrads",
           "explain", "losses", "optim", "train"]
