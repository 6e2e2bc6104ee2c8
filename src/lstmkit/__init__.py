"""lstmkit: LSTM, GRU and simple-RNN networks and sequence-to-sequence models on NumPy.

The native API returns named results, so there is nothing to guess::

    import lstmkit
    res = lstmkit.LSTM(64)(x, lengths=lengths)
    res.outputs, res.h, res.c, res.state
"""
from .layers import (GRU, LSTM, Bidirectional, BidirectionalResult, Dense, Dropout, Embedding,
                     HiddenState, Layer, LSTMState, RecurrentGrads, RecurrentResult, SimpleRNN)
from .explain import explain   # after this, lstmkit.explain is the function, not its module

__version__ = "0.1.0"

# Loaded on first use, so that `import lstmkit` costs little more than importing NumPy.
_SUBMODULES = ("layouts", "losses", "optim", "train", "model", "keras", "interop", "seq2seq",
               "compat", "kernels")


def __getattr__(name):
    import importlib
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lstmkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


__all__ = ["LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense", "Embedding", "Dropout", "Layer",
           "LSTMState", "HiddenState", "RecurrentResult", "BidirectionalResult", "RecurrentGrads",
           "explain", "layouts", "losses", "optim", "train"]
