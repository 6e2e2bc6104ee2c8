"""Layer objects: own parameters and gradients, call the kernels."""
from .base import Layer
from .core import Dense, Dropout, Embedding
from .recurrent import (GRU, LSTM, Bidirectional, BidirectionalResult, HiddenState, LSTMState,
                        RecurrentGrads, RecurrentResult, SimpleRNN)

__all__ = ["Layer", "Dense", "Dropout", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional",
           "LSTMState", "HiddenState", "RecurrentResult", "BidirectionalResult", "RecurrentGrads"]
