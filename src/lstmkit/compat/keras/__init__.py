"""Keras-named API over lstmkit: ``import lstmkit.keras as keras`` and keep Keras code as it is.

    from lstmkit.keras.layers import Input, LSTM, Dense
    from lstmkit.keras.models import Model

Same return structures, masking and weight layout as Keras 3 (see :mod:`.layers`).
"""
from ... import losses, optim as optimizers
from . import layers, models
from .layers import Input
from .models import Model, Sequential

__all__ = ["layers", "models", "optimizers", "losses", "Input", "Model", "Sequential"]
