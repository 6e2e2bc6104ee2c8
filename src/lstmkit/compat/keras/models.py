"""Keras-named models: ``Model(inputs, outputs)`` and ``Sequential``, with ``compile``/``fit``/
``evaluate`` delegating to :mod:`lstmkit.train`, :mod:`lstmkit.losses` and :mod:`lstmkit.optim`."""
from ... import model as _model

__all__ = ["Model", "Sequential"]


class _Training:
    """``compile`` / ``fit`` / ``evaluate`` as Keras's, over lstmkit's training loop."""

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        raise NotImplementedError("compile: not available yet")


class Model(_Training, _model.Model):
    __doc__ = _model.Model.__doc__


class Sequential(_Training, _model.Sequential):
    __doc__ = _model.Sequential.__doc__
