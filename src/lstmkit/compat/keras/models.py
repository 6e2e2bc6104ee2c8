"""Keras-named models: ``Model(inputs, outputs)`` and ``Sequential``, with ``compile``/``fit``/
``evaluate`` as Keras's, delegating to :mod:`lstmkit.train`, :mod:`lstmkit.losses` and
:mod:`lstmkit.optim`::

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.1)
    loss, acc = model.evaluate(x, y)
"""
import numpy as np

from ... import model as _model
from ... import train

__all__ = ["Model", "Sequential"]


class _Arrays:
    """Mini-batches of a model's input arrays (one or several) and targets, in the form
    ``lstmkit.train`` expects: ``len(data)`` and ``data.epoch(e)`` yielding ``(x, y[, sample_weight])``
    with ``x`` one array or a list (as the model takes it)."""

    def __init__(self, x, y, sample_weight, batch_size, shuffle, seed):
        self.multi = isinstance(x, (list, tuple))
        self.x = [np.asarray(a) for a in x] if self.multi else [np.asarray(x)]
        self.y = np.asarray(y)
        self.sw = None if sample_weight is None else np.asarray(sample_weight)
        n = len(self.y)
        for i, a in enumerate(self.x):
            if len(a) != n:
                raise ValueError(f"x: every input needs one row per target ({n} in y); input {i} "
                                 f"has shape {a.shape}")
        self.index = train.Batches(np.arange(n), batch_size=batch_size, shuffle=shuffle, seed=seed)

    def __len__(self):
        return len(self.index)

    def epoch(self, e):
        for (rows,) in self.index.epoch(e):
            x = [a[rows] for a in self.x]
            batch = (x if self.multi else x[0], self.y[rows])
            yield batch if self.sw is None else batch + (self.sw[rows],)


class _MaskedSupervised(train.Supervised):
    """``train.Supervised`` plus Keras's rule that the mask an output carries (from
    ``Embedding(mask_zero=True)`` or ``Masking`` through ``return_sequences`` layers) masks the loss --
    the mean over valid positions -- and the metrics."""

    def output_mask(self, cache):
        return cache.output_masks


class _Training:
    """``compile`` / ``fit`` / ``evaluate`` with Keras's arguments over lstmkit's training loop.
    One loss for a model with one output (the common case of the seeds)."""

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        from ... import losses, optim
        unsupported = {k: v for k, v in kwargs.items() if v is not None and k not in ("jit_compile",)}
        if unsupported:
            raise ValueError(f"compile: unsupported argument(s) {sorted(unsupported)}")
        if loss is None:
            raise ValueError("loss: compile needs a loss, e.g. loss='sparse_categorical_crossentropy'")
        if isinstance(loss, (list, tuple, dict)) or isinstance(self.outputs, (list, tuple)):
            raise ValueError("loss: compile/fit take one loss for a model with one output; for several "
                             "outputs use lstmkit.train with model.forward/backward")
        self.optimizer = optim.get(optimizer)
        self.loss = losses.get(loss)
        self._trainable = _MaskedSupervised(self, self.loss, metrics or ())
        self._fit_calls = 0

    def _compiled(self, what):
        if getattr(self, "_trainable", None) is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")
        return self._trainable

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None, **kwargs):
        """Train; returns a History whose ``history`` maps each metric to its per-epoch values."""
        trainable = self._compiled("fit")
        if kwargs:
            raise ValueError(f"fit: unsupported argument(s) {sorted(kwargs)}")
        if y is None:
            raise ValueError("y: fit needs targets")
        if validation_split and validation_data is None:
            # Keras's rule: the LAST fraction of the rows, taken before any shuffling.
            n = len(y)
            cut = int(n * (1.0 - float(validation_split)))
            take = lambda a, s: [v[s] for v in a] if isinstance(a, (list, tuple)) else a[s]
            validation_data = (take(x, slice(cut, None)), take(y, slice(cut, None)))
            x, y = take(x, slice(0, cut)), take(y, slice(0, cut))
            if sample_weight is not None:
                sample_weight = sample_weight[:cut]
        self.predict(x[:1] if not isinstance(x, (list, tuple)) else [a[:1] for a in x])  # build
        data = _Arrays(x, y, sample_weight, batch_size, shuffle, seed=self._fit_calls)
        val = None
        if validation_data is not None:
            vx, vy, *vsw = validation_data
            val = _Arrays(vx, vy, vsw[0] if vsw else None, batch_size, False, 0)
        self._fit_calls += 1
        history = train.fit(trainable, data, optimizer=self.optimizer, epochs=epochs,
                            validation_data=val, callbacks=callbacks or (), verbose=verbose)
        self.history = history
        return history

    def evaluate(self, x=None, y=None, batch_size=32, verbose="auto", sample_weight=None,
                 return_dict=False, **kwargs):
        """The loss (and metrics) over ``(x, y)``: a float, or ``[loss, *metrics]`` as Keras."""
        trainable = self._compiled("evaluate")
        logs = train.evaluate(trainable, _Arrays(x, y, sample_weight, batch_size or 32, False, 0))
        logs = {k: v for k, v in logs.items() if k != "tokens"}
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())


class Model(_Training, _model.Model):
    __doc__ = _model.Model.__doc__


class Sequential(_Training, _model.Sequential):
    __doc__ = _model.Sequential.__doc__
