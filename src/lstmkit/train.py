"""The fit loop: seeded mini-batches, validation, callbacks, progress, checkpoints that survive a kill.

The protocol. A *trainable* is any object with

* ``params``: dict name -> np.ndarray (updated in place by the optimizer), ``grads``: same keys;
* ``zero_grad()``;
* ``train_step(batch) -> dict``: forward with ``training=True`` and backward, ADDING into ``grads``;
  returns metrics: at least ``"loss"`` (float), optionally ``"tokens"`` (int, for tokens/s) and others;
* ``eval_step(batch) -> dict``: the same metrics, no gradients;
* ``rngs() -> dict[str, np.random.Generator]``: the dropout generators a checkpoint saves and restores.

:class:`Supervised` makes one from any layer-like model (``forward``/``backward``/``params``/``grads``)
and a loss. Training data is a :class:`Batches` or any object with ``len(data)`` and
``data.epoch(e) -> iterator of batches`` whose order is a pure function of ``e``::

    model = lstmkit.Dense(3)
    trainable = lstmkit.train.Supervised(model, lstmkit.losses.SparseCategoricalCrossentropy(True),
                                         metrics=["accuracy"])
    history = lstmkit.train.fit(trainable, lstmkit.train.Batches(x, y, batch_size=32, seed=0),
                                optimizer=lstmkit.optim.Adam(1e-2), epochs=5,
                                checkpoint="run.npz", checkpoint_every=100, resume="run.npz")
    history.history["loss"]        # one value per epoch

Checkpoints are one ``.npz`` (no pickle) holding the weights, the optimizer's state, the generators'
states, the position (epoch and step within it), the history so far and an architecture fingerprint
(parameter names and shapes). They are written atomically (temporary file, fsync, rename), so a killed
run leaves the previous checkpoint intact, and resuming from one ends with the same weights, bit for bit,
as a run that was never interrupted (same machine, same data order, same seeds).
"""
import csv
import itertools
import json
import math
import os
import sys
import time
import zipfile

import numpy as np

from . import losses as _losses
from . import optim as _optim

__all__ = ["Supervised", "Batches", "fit", "History", "Callback", "EarlyStopping", "ModelCheckpoint",
           "CSVLogger", "ReduceLROnPlateau", "save_checkpoint", "load_checkpoint", "Checkpoint",
           "NonFiniteLossError", "evaluate", "collect_rngs"]

FORMAT = "lstmkit-checkpoint-1"


class NonFiniteLossError(FloatingPointError):
    """The loss (or a gradient) was NaN or infinite at a training step and ``nan_policy="raise"``."""


# -- the trainable for (x, y) data ----------------------------------------------------------------
class Supervised:
    """A trainable from a layer-like ``model`` and a ``loss`` (object or Keras name).

    Batches are ``(x, y)`` or ``(x, y, sample_weight)``; ``model.forward(x, training=...)`` gives the
    predictions (a result with ``.outputs``, like a recurrent layer's, is also accepted) and the
    loss's gradient goes back through ``model.backward``. ``metrics``: ``"accuracy"`` (argmax for
    categorical losses, threshold for binary; padding excluded) or callables
    ``f(y_pred, y_true) -> float``.
    """

    def __init__(self, model, loss, metrics=()):
        for attr in ("forward", "backward", "params", "grads"):
            if not hasattr(model, attr):
                raise TypeError(f"model: expected a layer-like object with forward, backward, params "
                                f"and grads; {type(model).__name__} has no {attr!r}")
        self.model = model
        self.loss = _losses.get(loss)
        if isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]
        for m in metrics:
            if not callable(m) and m not in ("accuracy", "acc"):
                raise ValueError(f"metrics: expected 'accuracy' or callables, got {m!r}")
        self.metrics = list(metrics)

    @property
    def params(self):
        return self.model.params

    @property
    def grads(self):
        return self.model.grads

    def zero_grad(self):
        if hasattr(self.model, "zero_grad"):
            self.model.zero_grad()
        else:
            for g in self.grads.values():
                g[...] = 0

    def rngs(self):
        return collect_rngs(self.model)

    @staticmethod
    def _unpack(batch):
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError("batch: expected (x, y) or (x, y, sample_weight), got "
                            f"{type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}")
        return batch[0], batch[1], batch[2] if len(batch) == 3 else None

    def output_mask(self, cache):
        """Which prediction positions count, (B, T) bool, or None for all. A model whose outputs
        carry a mask (Keras's ``Embedding(mask_zero=True)``) overrides this."""
        return None

    def _run(self, batch, training):
        x, y, sw = self._unpack(batch)
        out, cache = self.model.forward(x, training=training)
        wrapped = not isinstance(out, np.ndarray) and hasattr(out, "outputs")
        y_pred = out.outputs if wrapped else out
        mask = self.output_mask(cache)
        value, lcache = self.loss.forward(y_pred, y, sw, mask=mask)
        tokens = np.prod(np.shape(y_pred)[:-1]) if mask is None else np.count_nonzero(mask)
        ignore = self._ignored(y)
        if ignore is not None:
            tokens = np.count_nonzero(~ignore if mask is None else ~ignore & np.asarray(mask, bool))
        logs = {"loss": float(value), "tokens": int(tokens)}
        for m in self.metrics:
            if callable(m):
                logs[getattr(m, "__name__", "metric")] = float(m(y_pred, y))
            else:
                logs["accuracy"] = self._accuracy(y_pred, y, mask)
        return logs, (cache, lcache, wrapped)

    def _ignored(self, y):
        """(B, T) True at labels equal to the loss's ``ignore_index``, or None."""
        ignore = getattr(self.loss, "ignore_index", None)
        if ignore is None:
            return None
        y = np.asarray(y)
        return (y[..., 0] if y.ndim > 1 and y.shape[-1] == 1 else y) == ignore

    def _accuracy(self, y_pred, y, mask):
        y = np.asarray(y)
        if isinstance(self.loss, _losses.SparseCategoricalCrossentropy):
            if y.shape == y_pred.shape[:-1] + (1,):
                y = y[..., 0]
            hit = np.argmax(y_pred, axis=-1) == y
        elif isinstance(self.loss, _losses.CategoricalCrossentropy):
            hit = np.argmax(y_pred, axis=-1) == np.argmax(y, axis=-1)
        elif isinstance(self.loss, _losses.BinaryCrossentropy):
            threshold = 0.0 if self.loss.from_logits else 0.5
            hit = (y_pred > threshold) == (y > 0.5)
        else:
            raise ValueError(f"metrics: 'accuracy' needs a cross-entropy loss, got {self.loss!r}")
        valid = None if mask is None else np.asarray(mask, bool)
        ignore = self._ignored(y)
        if ignore is not None:
            valid = ~ignore if valid is None else valid & ~ignore
        if valid is None:
            return float(np.mean(hit))
        valid = np.broadcast_to(valid.reshape(valid.shape + (1,) * (hit.ndim - valid.ndim)), hit.shape)
        return float(hit[valid].mean()) if valid.any() else 0.0

    def train_step(self, batch):
        logs, (cache, lcache, wrapped) = self._run(batch, training=True)
        d = self.loss.backward(lcache)
        self.model.backward(cache, (d, None) if wrapped else d)
        return logs

    def eval_step(self, batch):
        return self._run(batch, training=False)[0]


def collect_rngs(model):
    """The dropout generators of a model: its own ``rngs()`` if it has one, else every
    ``numpy.random.Generator`` named ``rng`` on it or on the layers it holds (in attributes and lists),
    keyed by attribute path (``"lstm/forward_layer"``, ``"layers/2"``): stable across processes, unlike
    automatic layer names."""
    if callable(getattr(model, "rngs", None)):
        return dict(model.rngs())
    out, seen = {}, set()

    def visit(obj, path):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        g = getattr(obj, "rng", None)
        if isinstance(g, np.random.Generator):
            out[path or "rng"] = g
        # public before private, named attributes before lists: "lstm/forward_layer", not "layers/1"
        for attr, value in sorted(vars(obj).items(), key=lambda kv: (
                kv[0].startswith("_"), isinstance(kv[1], (list, tuple)), kv[0])):
            items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
            for i, item in items:
                if hasattr(item, "params") and hasattr(item, "__dict__") and not isinstance(item, type):
                    sub = attr if i is None else f"{attr}/{i}"
                    visit(item, f"{path}/{sub}" if path else sub)

    visit(model, "")
    return out


# -- batches ---------------------------------------------------------------------------------------
class Batches:
    """Seeded mini-batches of aligned arrays (same first axis): ``batches.epoch(e)`` yields tuples.

    The order is a pure function of ``(seed, e)``, so a resumed run sees the very same batches.
    With ``lengths`` (one per example), examples are bucketed by length: shuffled, cut into pools of
    ``pool_size`` batches, sorted by length within each pool, batched, and the batches shuffled -- so
    a batch holds sequences of similar lengths. ``trim=True`` then cuts every array of 2 or more
    dimensions along axis 1 (time) to the longest length in the batch.

    Example::

        >>> b = Batches(np.arange(10), np.arange(10) * 2, batch_size=4, seed=1)
        >>> len(b), [x.tolist() for x, y in b.epoch(0)] == [x.tolist() for x, y in b.epoch(0)]
        (3, True)
    """

    def __init__(self, *arrays, batch_size, shuffle=True, seed=0, lengths=None, drop_last=False,
                 pool_size=50, trim=False):
        if not arrays:
            raise ValueError("arrays: expected at least one array")
        self.arrays = [np.asarray(a) for a in arrays]
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"arrays: every array needs the same first axis (examples); array 0 "
                                 f"has {n}, array {i} has shape {a.shape}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self.n, self.batch_size = n, int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.pool_size, self.trim = int(pool_size), bool(trim)
        self.lengths = None
        if lengths is not None:
            self.lengths = np.asarray(lengths)
            if self.lengths.shape != (n,):
                raise ValueError(f"lengths: expected shape ({n},) (one per example), got "
                                 f"{self.lengths.shape}")
        if trim and self.lengths is None:
            raise ValueError("trim: needs lengths")

    def __len__(self):
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _chunks(self, order):
        bs = self.batch_size
        chunks = [order[i:i + bs] for i in range(0, len(order), bs)]
        if self.drop_last and chunks and len(chunks[-1]) < bs:
            chunks.pop()
        return chunks

    def indices(self, epoch):
        """The example indices of each batch of ``epoch``."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        if self.lengths is None:
            order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
            return self._chunks(order)
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        pool = self.batch_size * self.pool_size
        chunks = []
        for start in range(0, self.n, pool):
            part = order[start:start + pool]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            chunks.extend(self._chunks(part))
        if self.drop_last:
            chunks = [c for c in chunks if len(c) == self.batch_size]
        if self.shuffle:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        return chunks

    def epoch(self, epoch):
        for idx in self.indices(epoch):
            batch = [a[idx] for a in self.arrays]
            if self.trim:
                t = max(int(self.lengths[idx].max()), 1)
                batch = [b[:, :t] if b.ndim >= 2 else b for b in batch]
            yield tuple(batch)


def _as_batches(data, argument):
    if hasattr(data, "epoch") and hasattr(data, "__len__"):
        return data
    if isinstance(data, (tuple, list)) and data and all(hasattr(a, "shape") for a in data):
        return Batches(*data, batch_size=256, shuffle=False)
    raise TypeError(f"{argument}: expected lstmkit.train.Batches (or an object with __len__ and "
                    f"epoch(e)) or a tuple of arrays, got {type(data).__name__}")


# -- history and callbacks ---------------------------------------------------------------------------
class Callback:
    """Base class (Keras's hooks). ``self.trainable``, ``self.optimizer`` and ``self.run`` are set by
    ``fit``; set ``self.run.stop_training = True`` to stop after this epoch."""

    trainable = optimizer = run = None

    def set_context(self, trainable, optimizer, run):
        self.trainable, self.optimizer, self.run = trainable, optimizer, run

    def on_train_begin(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_end(self, logs=None): pass

    def state_dict(self):
        """What a checkpoint must keep for a resumed run to behave the same (JSON values and numpy
        arrays, nested in dicts), or None."""
        return None

    def load_state_dict(self, state):
        pass


class History(Callback):
    """``history.history``: dict metric -> list (one value per epoch); ``history.epoch``: epochs."""

    def __init__(self):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"


def _better(mode, monitor):
    if mode == "auto":
        mode = "max" if any(s in monitor for s in ("acc", "auc", "bleu")) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    return (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b), mode


def _get_monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        raise ValueError(f"monitor: {who} watches {monitor!r}, but the logs have only "
                         f"{sorted(logs or {})}")
    return logs[monitor]


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs
    (Keras's). ``restore_best_weights=True``: the trainable ends with the weights of its best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, baseline=None, start_from_epoch=0):
        self.monitor, self.min_delta, self.patience = monitor, abs(float(min_delta)), int(patience)
        self.better, self.mode = _better(mode, monitor)
        self.restore_best_weights, self.baseline = bool(restore_best_weights), baseline
        self.start_from_epoch = int(start_from_epoch)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, None, None, None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _get_monitored(logs, self.monitor, "EarlyStopping")
        self.wait += 1
        shifted = current + self.min_delta if self.mode == "min" else current - self.min_delta
        if self.better(shifted, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = {k: v.copy() for k, v in self.trainable.params.items()}
            if self.baseline is None or self.better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.run.stop_training = True

    def state_dict(self):
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            for k, v in self.best_weights.items():
                self.trainable.params[k][...] = v


class ModelCheckpoint(Callback):
    """Save a (resumable) checkpoint at each epoch's end to ``filepath``, which may hold Keras-style
    fields: ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"`` (epoch counted from 1, as Keras).
    ``save_best_only``: only when ``monitor`` improves."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        self.filepath, self.monitor, self.save_best_only = str(filepath), monitor, bool(save_best_only)
        self.better, self.mode = _better(mode, monitor)
        self.best = None

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            current = _get_monitored(logs, self.monitor, "ModelCheckpoint")
            if self.best is not None and not self.better(current, self.best):
                return
            self.best = current
        path = self.filepath.format(epoch=epoch + 1, **logs)
        self.last_saved = path
        save_checkpoint(path, self.trainable, self.optimizer, epoch=epoch + 1, step=0,
                        history=self.run.history.history if self.run else None)


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` then the logs' keys, sorted) to a CSV file."""

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = str(filename), separator, bool(append)
        self.keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        if exists:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header else None
        else:
            open(self.filename, "w").close()
            self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        with open(self.filename, "a", newline="") as f:
            w = csv.writer(f, delimiter=self.separator)
            if self.keys is None:
                self.keys = sorted(logs)
                w.writerow(["epoch"] + self.keys)
            w.writerow([epoch] + [logs.get(k, "") for k in self.keys])


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (Keras's, with ``cooldown`` and ``min_lr``). Needs a number learning rate."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"factor: expected a number in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.better, self.mode = _better(mode, monitor)
        self.min_delta, self.cooldown, self.min_lr = float(min_delta), int(cooldown), float(min_lr)

    def on_train_begin(self, logs=None):
        if callable(self.optimizer.learning_rate):
            raise TypeError("ReduceLROnPlateau: the optimizer's learning_rate is a schedule; give it "
                            "a number to let this callback change it")
        self.wait, self.cooldown_counter = 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def state_dict(self):
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}

    def load_state_dict(self, state):
        for k, v in state.items():
            setattr(self, k, v)

    def on_epoch_end(self, epoch, logs=None):
        current = _get_monitored(logs, self.monitor, "ReduceLROnPlateau")
        logs["learning_rate"] = float(self.optimizer.learning_rate)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        shifted = current + self.min_delta if self.mode == "min" else current - self.min_delta
        if self.better(shifted, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                lr = float(self.optimizer.learning_rate)
                if lr > self.min_lr:
                    self.optimizer.learning_rate = max(lr * self.factor, self.min_lr)
                    self.cooldown_counter, self.wait = self.cooldown, 0


# -- progress ----------------------------------------------------------------------------------------
class _Progress:
    """A single-line bar on a terminal (``verbose=1``), one line per epoch otherwise (``verbose=2``)."""

    def __init__(self, verbose, epochs, stream=None):
        self.stream = stream or sys.stdout
        if verbose == "auto":
            verbose = 1 if getattr(self.stream, "isatty", lambda: False)() else 2
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose: expected 'auto', 0, 1 or 2, got {verbose!r}")
        self.verbose, self.epochs, self.last = int(verbose), epochs, 0.0

    def batch(self, epoch, step, total, loss, tokens_per_s, force=False):
        if self.verbose != 1:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        width = 20
        done = int(width * step / max(total, 1))
        bar = "=" * done + (">" if done < width else "") + "." * max(width - done - 1, 0)
        tps = f" {tokens_per_s:,.0f} tok/s" if tokens_per_s else ""
        self.stream.write(f"\repoch {epoch + 1}/{self.epochs} {step}/{total} [{bar}] "
                          f"loss {loss:.4f}{tps}   ")
        self.stream.flush()

    def epoch_end(self, epoch, logs, seconds, tokens_per_s=0.0):
        if not self.verbose:
            return
        parts = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in logs.items())
        if tokens_per_s:
            parts += f" ({tokens_per_s:,.0f} tok/s)"
        prefix = "\r" if self.verbose == 1 else ""
        self.stream.write(f"{prefix}epoch {epoch + 1}/{self.epochs} {seconds:.1f}s {parts}\n")
        self.stream.flush()

    def note(self, text):
        if self.verbose:
            self.stream.write(("\n" if self.verbose == 1 else "") + text + "\n")
            self.stream.flush()


# -- fit ---------------------------------------------------------------------------------------------
class _Run:
    """What callbacks may look at during fit: ``stop_training``, ``history``, ``epoch`` (0-based) and
    ``step`` (batches of this epoch done, counting the current one)."""

    def __init__(self, history):
        self.stop_training, self.history, self.epoch, self.step = False, history, 0, 0


class _Means:
    """Running means of metrics over batches, weighted by batch size (Keras's)."""

    def __init__(self, state=None):
        self.sums, self.weight, self.tokens = dict((state or {}).get("sums", {})), \
            float((state or {}).get("weight", 0.0)), int((state or {}).get("tokens", 0))

    def add(self, logs, weight):
        for k, v in logs.items():
            if k != "tokens":
                self.sums[k] = self.sums.get(k, 0.0) + float(v) * weight
        self.tokens += int(logs.get("tokens", 0))
        self.weight += weight

    def result(self, prefix=""):
        return {prefix + k: v / self.weight for k, v in self.sums.items()} if self.weight else {}

    def state(self):
        return {"sums": self.sums, "weight": self.weight, "tokens": self.tokens}


def _batch_size(batch):
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    while isinstance(first, (tuple, list, dict)):
        first = first[0] if not isinstance(first, dict) else next(iter(first.values()))
    return len(first) if hasattr(first, "__len__") else 1


def _check_trainable(t):
    for attr in ("params", "grads", "zero_grad", "train_step", "eval_step", "rngs"):
        if not hasattr(t, attr):
            raise TypeError(f"trainable: expected an object with params, grads, zero_grad(), "
                            f"train_step(batch), eval_step(batch) and rngs(); "
                            f"{type(t).__name__} has no {attr!r} (wrap a model in "
                            "lstmkit.train.Supervised(model, loss))")


def _reseed(trainable, seed):
    for i, (name, g) in enumerate(sorted(trainable.rngs().items())):
        child = np.random.SeedSequence([int(seed), i])
        g.bit_generator.state = type(g.bit_generator)(child).state


def _all_finite(trainable):
    return all(np.isfinite(g).all() for g in trainable.grads.values())


def evaluate(trainable, data):
    """Mean metrics of ``trainable.eval_step`` over ``data`` (Batches-like, epoch 0, or arrays)."""
    data = _as_batches(data, "data")
    means = _Means()
    for batch in data.epoch(0):
        means.add(trainable.eval_step(batch), _batch_size(batch))
    return means.result()


def fit(trainable, train_data, *, optimizer, epochs=1, validation_data=None, callbacks=(),
        checkpoint=None, checkpoint_every=None, resume=None, nan_policy="raise", verbose="auto",
        seed=None):
    """Train ``trainable`` on ``train_data`` for ``epochs`` epochs; returns a :class:`History`.

    Args:
        trainable: see the module docstring (e.g. ``Supervised(model, loss)``).
        train_data: a :class:`Batches` (or an object with ``__len__`` and ``epoch(e)``).
        optimizer: an ``lstmkit.optim`` optimizer (or a Keras name such as ``"adam"``).
        validation_data: Batches-like or a tuple of arrays; evaluated after every epoch, its metrics
            logged as ``val_<name>``.
        callbacks: :class:`Callback` objects (EarlyStopping, ModelCheckpoint, CSVLogger, ...).
        checkpoint: path of a checkpoint (``.npz``) written at every epoch's end, and every
            ``checkpoint_every`` steps when given.
        resume: path of a checkpoint to continue from (if the file exists; otherwise start fresh,
            so ``checkpoint=p, resume=p`` is the idiom for a restartable job).
        nan_policy: ``"raise"`` a :class:`NonFiniteLossError` naming the step, or ``"skip"`` the
            update (gradients dropped) and report it; ``logs["skipped_steps"]`` counts them.
        verbose: ``"auto"`` (a bar on a terminal, a line per epoch otherwise), 0, 1 (bar), 2 (lines).
        seed: reseed the trainable's dropout generators (a fresh run's randomness in one number).
    """
    _check_trainable(trainable)
    optimizer = _optim.get(optimizer)
    train_data = _as_batches(train_data, "train_data")
    if validation_data is not None:
        validation_data = _as_batches(validation_data, "validation_data")
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs: expected an integer >= 0, got {epochs!r}")
    if nan_policy not in ("raise", "skip"):
        raise ValueError(f"nan_policy: expected 'raise' or 'skip', got {nan_policy!r}")
    if checkpoint_every is not None and (not isinstance(checkpoint_every, (int, np.integer))
                                         or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}")
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("checkpoint_every: needs checkpoint=path")
    progress = _Progress(verbose, epochs)
    if seed is not None:
        _reseed(trainable, seed)

    history = History()
    run = _Run(history)
    start_epoch, start_step, means_state, skipped, ckpt = 0, 0, None, 0, None
    if resume is not None and os.path.exists(resume):
        ckpt = load_checkpoint(resume)
        if any(k not in trainable.params for k in ckpt.params):
            trainable.eval_step(next(iter(train_data.epoch(0))))     # build lazily built weights
        ckpt.restore(trainable, optimizer)
        start_epoch, start_step = ckpt.epoch, ckpt.step
        history.history = {k: list(v) for k, v in ckpt.meta.get("history", {}).items()}
        history.epoch = list(range(len(next(iter(history.history.values()), []))))
        means_state, skipped = ckpt.meta.get("epoch_means"), int(ckpt.meta.get("skipped_steps", 0))
        progress.note(f"resumed from {resume} at epoch {start_epoch + 1}, step {start_step}")

    callbacks = [history] + list(callbacks)
    for cb in callbacks:
        if hasattr(cb, "set_context"):
            cb.set_context(trainable, optimizer, run)
    for cb in callbacks:
        cb.on_train_begin({})
    keyed = {f"{i}:{type(cb).__name__}": cb for i, cb in enumerate(callbacks[1:])}
    if ckpt is not None:
        for key, state in ckpt.callbacks.items():
            if key in keyed:
                keyed[key].load_state_dict(state)

    def save(epoch, step, means):
        states = {k: cb.state_dict() for k, cb in keyed.items() if hasattr(cb, "state_dict")}
        save_checkpoint(checkpoint, trainable, optimizer, epoch=epoch, step=step,
                        history=history.history,
                        callbacks={k: v for k, v in states.items() if v is not None},
                        extra={"epoch_means": means.state() if means else None,
                               "skipped_steps": skipped})

    total = len(train_data)
    for epoch in range(start_epoch, epochs):
        run.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        means = _Means(means_state if epoch == start_epoch and start_step else None)
        first = start_step if epoch == start_epoch else 0
        t0, tokens0 = time.monotonic(), means.tokens
        batches = itertools.islice(train_data.epoch(epoch), first, None)
        for step, batch in enumerate(batches, start=first + 1):
            run.step = step
            for cb in callbacks:
                cb.on_train_batch_begin(step - 1, {})
            trainable.zero_grad()
            logs = trainable.train_step(batch)
            loss = float(logs["loss"])
            if not math.isfinite(loss) or not _all_finite(trainable):
                what = f"loss {loss}" if not math.isfinite(loss) else "a gradient is not finite"
                where = f"epoch {epoch + 1}, step {step} of {total}"
                if nan_policy == "raise":
                    trainable.zero_grad()
                    raise NonFiniteLossError(f"{what} at {where} (optimizer step "
                                             f"{optimizer.iterations + 1}); nan_policy='skip' skips "
                                             "such steps")
                skipped += 1
                trainable.zero_grad()
                progress.note(f"skipped {where}: {what}")
            else:
                optimizer.apply(trainable.params, trainable.grads)
                means.add(logs, _batch_size(batch))
            dt = time.monotonic() - t0
            progress.batch(epoch, step, total, loss, (means.tokens - tokens0) / dt if dt > 0 else 0)
            for cb in callbacks:
                cb.on_train_batch_end(step - 1, logs)      # Keras's 0-based batch index
            if checkpoint_every and step % checkpoint_every == 0 and step < total:
                save(epoch, step, means)
        epoch_logs = means.result()
        seconds = time.monotonic() - t0
        tokens_per_s = (means.tokens - tokens0) / seconds if seconds > 0 else 0.0
        if skipped:
            epoch_logs["skipped_steps"] = skipped
        if validation_data is not None:
            epoch_logs.update({"val_" + k: v for k, v in evaluate(trainable, validation_data).items()})
        for cb in callbacks:
            cb.on_epoch_end(epoch, epoch_logs)
        progress.epoch_end(epoch, epoch_logs, seconds, tokens_per_s)
        means_state = None
        if checkpoint is not None:
            save(epoch + 1, 0, None)
        if run.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    return history


# -- checkpoints ---------------------------------------------------------------------------------
class Checkpoint:
    """A loaded checkpoint: ``params``, ``optimizer`` (state dict), ``rngs`` (bit-generator states),
    ``epoch`` and ``step`` (the next batch to run: ``step`` batches of ``epoch`` are done), ``meta``."""

    def __init__(self, path, params, optimizer, rngs, meta, callbacks=None):
        self.path, self.params, self.optimizer, self.rngs, self.meta = path, params, optimizer, rngs, meta
        self.epoch, self.step = int(meta["epoch"]), int(meta["step"])
        self.callbacks = callbacks or {}      # "index:ClassName" -> the callback's state_dict()

    def check_architecture(self, params):
        """Raise ValueError unless ``params`` has exactly this checkpoint's names and shapes."""
        mine = {k: tuple(v.shape) for k, v in self.params.items()}
        theirs = {k: tuple(np.shape(v)) for k, v in params.items()}
        for k, shape in mine.items():
            if k not in theirs:
                raise ValueError(f"checkpoint {self.path}: parameter {k!r} (shape {shape}) is not in "
                                 f"the model (it has {sorted(theirs)}); another architecture?")
            if theirs[k] != shape:
                raise ValueError(f"checkpoint {self.path}: parameter {k!r} has shape {shape} in the "
                                 f"checkpoint but {theirs[k]} in the model; another architecture?")
        extra = sorted(set(theirs) - set(mine))
        if extra:
            raise ValueError(f"checkpoint {self.path}: the model has parameter(s) {extra} that the "
                             "checkpoint lacks; another architecture?")

    def restore(self, trainable, optimizer=None):
        """Copy weights (in place), the optimizer's state and the generators' states into a run."""
        self.check_architecture(trainable.params)
        for k, v in self.params.items():
            trainable.params[k][...] = v
        if optimizer is not None and self.optimizer:
            saved = self.meta.get("optimizer_class")
            if saved and saved != type(optimizer).__name__:
                raise ValueError(f"optimizer: the checkpoint {self.path} was written by {saved}, "
                                 f"got {type(optimizer).__name__}")
            optimizer.load_state_dict(self.optimizer)
        gens = trainable.rngs()
        for name, state in self.rngs.items():
            if name not in gens:
                raise ValueError(f"checkpoint {self.path}: random generator {name!r} is not in the "
                                 f"trainable's rngs() ({sorted(gens)})")
            gens[name].bit_generator.state = state


def save_checkpoint(path, trainable, optimizer=None, *, epoch=0, step=0, history=None, callbacks=None,
                    extra=None):
    """Write a checkpoint atomically: a temporary file in the same folder, fsync, ``os.replace``.

    ``callbacks``: name -> state (JSON values and numpy arrays nested in dicts); arrays are stored as
    arrays of the ``.npz``, the rest as JSON text.
    """
    path = os.fspath(path)
    arrays = {f"param/{k}": np.asarray(v) for k, v in trainable.params.items()}
    callbacks = {k: _split_arrays(v, f"callback/{k}", arrays) for k, v in (callbacks or {}).items()}
    if optimizer is not None:
        for k, v in optimizer.state_dict().items():
            arrays[f"optim/{k}"] = np.asarray(v)
    meta = {"format": FORMAT, "epoch": int(epoch), "step": int(step),
            "architecture": {k: list(np.shape(v)) for k, v in trainable.params.items()},
            "rngs": {k: _jsonable(g.bit_generator.state) for k, g in trainable.rngs().items()},
            "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
            "history": history or {}, "callbacks": callbacks}
    meta.update(extra or {})
    arrays["__meta__"] = np.array(json.dumps(meta, default=_json_default))
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:                      # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def _json_default(obj):
    """numpy scalars and small arrays that callbacks may put in the logs."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} in the metadata (JSON)")


def _split_arrays(obj, prefix, arrays):
    """Replace the numpy arrays inside nested dicts by references to entries of ``arrays``."""
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__npz__": prefix}
    if isinstance(obj, dict):
        return {k: _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def _join_arrays(obj, data):
    if isinstance(obj, dict):
        if "__npz__" in obj:
            return data[obj["__npz__"]]
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: _join_arrays(v, data) for k, v in obj.items()}
    return obj


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_json(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def load_checkpoint(path):
    """Read a checkpoint written by :func:`fit` or :func:`save_checkpoint` (never unpickles).

    Raises ValueError for a file that is not an lstmkit checkpoint or is truncated/corrupted;
    :meth:`Checkpoint.check_architecture` (called by ``restore``) names a mismatching parameter.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":
        raise ValueError(f"checkpoint {path}: not an lstmkit checkpoint (not a .npz/zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            if "__meta__" not in files:
                raise ValueError(f"checkpoint {path}: not an lstmkit checkpoint (a .npz without "
                                 "lstmkit's metadata; arrays: " + ", ".join(files[:5]) + ")")
            data = {k: z[k] for k in files}
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as e:
        raise ValueError(f"checkpoint {path}: truncated or corrupted ({type(e).__name__}: {e}); "
                         "use an earlier checkpoint") from None
    except ValueError as e:
        if "lstmkit" in str(e):
            raise
        raise ValueError(f"checkpoint {path}: truncated or corrupted ({e})") from None
    try:
        meta = json.loads(str(data.pop("__meta__")))
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint {path}: corrupted metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    opt = {k[len("optim/"):]: v for k, v in data.items() if k.startswith("optim/")}
    arch = {k: tuple(s) for k, s in meta.get("architecture", {}).items()}
    if arch != {k: v.shape for k, v in params.items()}:
        raise ValueError(f"checkpoint {path}: corrupted (weights do not match its fingerprint)")
    callbacks = _join_arrays(meta.get("callbacks") or {}, data)
    return Checkpoint(path, params, opt, _from_json(meta.get("rngs", {})), meta, callbacks)
