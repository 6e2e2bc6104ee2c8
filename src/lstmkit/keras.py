"""``lstmkit.keras``: the Keras-named API (an alias of :mod:`lstmkit.compat.keras`), so that
``import lstmkit.keras as keras`` and ``from lstmkit.keras.layers import LSTM`` work as with Keras."""
import sys

from .compat import keras as _keras
from .compat.keras import layers as _layers
from .compat.keras import models as _models

sys.modules[__name__ + ".layers"] = _layers
sys.modules[__name__ + ".models"] = _models
sys.modules[__name__ + ".optimizers"] = _keras.optimizers
sys.modules[__name__ + ".losses"] = _keras.losses
sys.modules[__name__] = _keras
