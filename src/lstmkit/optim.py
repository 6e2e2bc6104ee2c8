"""Optimizers named like Keras 3's, gradient clipping, and learning-rate schedules.

An optimizer updates parameter arrays IN PLACE (layers and models hold references to them)::

    opt = lstmkit.optim.Adam(learning_rate=1e-3, global_clipnorm=1.0)
    opt.apply(model.params, model.grads)     # dicts name -> array, same keys
    state = opt.state_dict()                 # plain dict of numpy arrays and scalars
    opt.load_state_dict(state)

Every update follows Keras 3's formulas exactly by default (``formula="keras"``); ``formula="pytorch"``
gives ``torch.optim``'s where they differ. Where an argument's default differs between the two
(``epsilon``, ``rho``, ``initial_accumulator_value``, AdamW's ``weight_decay``), ``None`` means "the
chosen formula's default". With t = the step number (1 for the first), g the gradient, lr the learning
rate at this step:

    SGD       keras:   m = momentum m - lr g;  p += m  (nesterov: p += momentum m - lr g)
              pytorch: b = momentum b + g (b = g at t = 1); p -= lr b (nesterov: lr (g + momentum b))
              -- the same numbers while lr is constant.
    Adam      m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2, then
              keras:   p -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)         eps = 1e-7
              pytorch: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)         eps = 1e-8
              (Keras adds eps to the *uncorrected* sqrt(v): effectively eps * sqrt(1-b2^t).)
    AdamW     Adam after decoupled decay p -= lr wd p (both; wd = 0.004 Keras, 0.01 PyTorch).
    RMSprop   v = rho v + (1-rho) g^2
              keras:   step = lr g / sqrt(v + eps)          rho = 0.9,  eps = 1e-7
              pytorch: step = lr g / (sqrt(v) + eps)        alpha (rho) = 0.99, eps = 1e-8
              centered: v - mean(g)^2 in place of v; momentum: b = momentum b + step; p -= b.
    Adagrad   a += g^2
              keras:   p -= lr g / sqrt(a + eps)             a0 = 0.1, eps = 1e-7
              pytorch: p -= lr g / (sqrt(a) + eps)           a0 = 0,   eps = 1e-10

``weight_decay`` on the other optimizers: Keras decays decoupled (``p -= lr wd p`` before the update);
PyTorch adds ``wd p`` to the gradient (L2). Clipping follows Keras for both formulas and happens before
everything else: ``clipnorm`` clips each gradient to that L2 norm, ``global_clipnorm`` scales all of
them so that their joint norm is at most that, ``clipvalue`` clips each element to [-v, v].

Not offered: PyTorch's SGD ``dampening`` and Adagrad ``lr_decay`` (use a schedule), Keras's ``use_ema``
and gradient accumulation.

``learning_rate`` may be a number or a schedule (a callable of the 0-based step, as Keras's
``LearningRateSchedule``): :class:`ExponentialDecay`, :class:`InverseSqrtDecay`, :class:`LinearWarmup`
(wraps either), and the ``ReduceLROnPlateau`` callback of ``lstmkit.train``.
"""
import math

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "get",
           "ExponentialDecay", "InverseSqrtDecay", "LinearWarmup", "Schedule"]

_FORMULAS = ("keras", "pytorch")


# -- learning-rate schedules ----------------------------------------------------------------------
class Schedule:
    """A learning rate as a function of the 0-based optimizer step: ``lr = schedule(step)``."""

    def __call__(self, step):
        raise NotImplementedError


def _positive(value, argument):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{argument}: expected a number, got {value!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise ValueError(f"{argument}: expected a finite number > 0, got {value!r}")
    return v


class ExponentialDecay(Schedule):
    """``lr = initial_learning_rate * decay_rate ** (step / decay_steps)`` (Keras's; with
    ``staircase=True`` the exponent is floored)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _positive(decay_rate, "decay_rate")
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class InverseSqrtDecay(Schedule):
    """``lr = initial_learning_rate / sqrt(1 + step / decay_steps)``: lr at step 0, halved at step
    ``3 * decay_steps``. Compose with :class:`LinearWarmup` for the Transformer recipe."""

    def __init__(self, initial_learning_rate, decay_steps=1):
        self.initial_learning_rate = _positive(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")

    def __call__(self, step):
        return self.initial_learning_rate / math.sqrt(1.0 + step / self.decay_steps)


class LinearWarmup(Schedule):
    """Ramp linearly to ``after`` over ``warmup_steps`` steps, then follow it.

    ``lr = after(0) * (step + 1) / warmup_steps`` for ``step < warmup_steps``, then
    ``after(step - warmup_steps)``. ``after`` is a number or another schedule.
    """

    def __init__(self, after, warmup_steps):
        if not callable(after):
            after = _positive(after, "after")
        self.after = after
        if not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 1:
            raise ValueError(f"warmup_steps: expected a positive integer, got {warmup_steps!r}")
        self.warmup_steps = int(warmup_steps)

    def _after(self, step):
        return self.after(step) if callable(self.after) else self.after

    def __call__(self, step):
        if step < self.warmup_steps:
            return self._after(0) * (step + 1) / self.warmup_steps
        return self._after(step - self.warmup_steps)


# -- optimizers -----------------------------------------------------------------------------------
class Optimizer:
    """Base class: learning rate (number or schedule), clipping, weight decay, state.

    Subclasses name their per-parameter ``SLOTS`` and implement ``_update(p, g, slots, lr, t)``.
    """

    SLOTS = ()
    DEFAULTS = {}           # argument -> (keras default, pytorch default)

    def __init__(self, learning_rate, *, formula="keras", weight_decay=None, clipnorm=None,
                 global_clipnorm=None, clipvalue=None):
        if formula not in _FORMULAS:
            raise ValueError(f"formula: expected 'keras' or 'pytorch', got {formula!r}")
        self.formula = formula
        self.learning_rate = learning_rate
        if sum(c is not None for c in (clipnorm, global_clipnorm, clipvalue)) > 1:
            raise ValueError("clipnorm, global_clipnorm, clipvalue: pass at most one of them")
        self.clipnorm = None if clipnorm is None else _positive(clipnorm, "clipnorm")
        self.global_clipnorm = (None if global_clipnorm is None
                                else _positive(global_clipnorm, "global_clipnorm"))
        self.clipvalue = None if clipvalue is None else _positive(clipvalue, "clipvalue")
        if weight_decay is not None and (not float(weight_decay) >= 0):
            raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
        self.weight_decay = None if not weight_decay else float(weight_decay)
        self.iterations = 0
        self.slots = {name: {} for name in self.SLOTS}

    def _default(self, value, argument):
        if value is not None:
            return value
        keras, pytorch = self.DEFAULTS[argument]
        return keras if self.formula == "keras" else pytorch

    # the learning rate: a number (validated) or a schedule of the step
    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if not callable(value):
            value = _positive(value, "learning_rate")
        self._learning_rate = value

    def current_learning_rate(self):
        """The learning rate of the next step."""
        lr = self._learning_rate
        if callable(lr):
            lr = lr(self.iterations)
            if not lr > 0:
                raise ValueError(f"learning_rate: the schedule gave {lr!r} at step {self.iterations}; "
                                 "expected a number > 0")
        return float(lr)

    # -- updating -------------------------------------------------------------------------------
    def clip(self, grads):
        """Keras's clipping of a dict of gradients; returns a new dict (the input is not changed)."""
        if self.clipnorm is not None:
            out = {}
            for k, g in grads.items():
                norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
                out[k] = g * g.dtype.type(self.clipnorm / max(norm, self.clipnorm))
            return out
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
            scale = self.global_clipnorm * min(1.0 / norm if norm else math.inf,
                                               1.0 / self.global_clipnorm)
            if not math.isfinite(norm):
                scale = math.nan
            return {k: g * g.dtype.type(scale) for k, g in grads.items()}
        if self.clipvalue is not None:
            return {k: np.clip(g, -self.clipvalue, self.clipvalue) for k, g in grads.items()}
        return grads

    def apply(self, params, grads):
        """One step: update every array of ``params`` in place from ``grads`` (same keys)."""
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"grads: no gradient for parameter(s) {missing}")
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(f"params[{k!r}]: expected a float numpy array, got {type(p).__name__}")
            if grads[k].shape != p.shape:
                raise ValueError(f"grads[{k!r}]: expected shape {p.shape} (the parameter's), "
                                 f"got {grads[k].shape}")
        lr = self.current_learning_rate()
        grads = self.clip({k: np.asarray(grads[k], p.dtype) for k, p in params.items()})
        t = self.iterations + 1
        for k, p in params.items():
            g = grads[k]
            if self.weight_decay is not None and self._decoupled_decay():
                p -= p * p.dtype.type(self.weight_decay * lr)
            elif self.weight_decay is not None:
                g = g + p.dtype.type(self.weight_decay) * p
            slots = {}
            for name in self.SLOTS:
                store = self.slots[name]
                if k not in store:
                    store[k] = self._initial_slot(name, p)
                slots[name] = store[k]
            self._update(p, g, slots, lr, t)
        self.iterations = t

    def _decoupled_decay(self):
        return self.formula == "keras"

    def _initial_slot(self, name, p):
        return np.zeros_like(p)

    def _update(self, p, g, slots, lr, t):
        raise NotImplementedError

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self):
        """A flat dict of numpy arrays and scalars: ``iterations``, ``learning_rate`` (a number; the
        current one when it is a schedule, informational) and ``slots/<slot>/<param name>`` arrays."""
        lr = self._learning_rate
        d = {"iterations": np.int64(self.iterations),
             "learning_rate": np.float64(self.current_learning_rate() if callable(lr) else lr)}
        for slot, store in self.slots.items():
            for k, arr in store.items():
                d[f"slots/{slot}/{k}"] = arr.copy()
        return d

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict`. A number learning rate is restored (a plateau reduction
        survives); a schedule is kept, since it is a function of ``iterations``."""
        try:
            self.iterations = int(state["iterations"])
            lr = float(state["learning_rate"])
        except KeyError as e:
            raise ValueError(f"state: not an optimizer state (missing {e.args[0]!r})") from None
        if not callable(self._learning_rate):
            self.learning_rate = lr
        self.slots = {name: {} for name in self.SLOTS}
        for key, arr in state.items():
            if key.startswith("slots/"):
                _, slot, name = key.split("/", 2)
                if slot not in self.slots:
                    raise ValueError(f"state: slot {slot!r} is not one of {type(self).__name__}'s "
                                     f"{self.SLOTS}")
                self.slots[slot][name] = np.array(arr)

    def get_config(self):
        return {"learning_rate": self._learning_rate, "formula": self.formula,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    def __repr__(self):
        return f"<{type(self).__name__} formula={self.formula!r} lr={self._learning_rate!r}>"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum. See the module docstring."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        if self.momentum:
            self.SLOTS = ("momentum",)
            self.slots = {"momentum": {}}

    def _update(self, p, g, slots, lr, t):
        dt = p.dtype.type
        if not self.momentum:
            p -= dt(lr) * g
            return
        m = slots["momentum"]
        if self.formula == "keras":
            m *= dt(self.momentum)
            m -= g * dt(lr)
            if self.nesterov:
                p += m * dt(self.momentum) - g * dt(lr)
            else:
                p += m
        else:
            if t == 1:
                m[...] = g
            else:
                m *= dt(self.momentum)
                m += g
            p -= dt(lr) * (g + dt(self.momentum) * m if self.nesterov else m)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015). Keras's epsilon sits outside the bias correction; PyTorch's inside.
    See the module docstring for both formulas; ``amsgrad`` keeps the running maximum of v."""

    SLOTS = ("m", "v")
    DEFAULTS = {"epsilon": (1e-7, 1e-8)}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=None, amsgrad=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        for arg, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(b) < 1.0:
                raise ValueError(f"{arg}: expected a number in [0, 1), got {b!r}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = float(self._default(epsilon, "epsilon"))
        self.amsgrad = bool(amsgrad)
        if self.amsgrad:
            self.SLOTS = ("m", "v", "v_max")
            self.slots = {s: {} for s in self.SLOTS}

    def _update(self, p, g, slots, lr, t):
        dt = p.dtype.type
        m, v = slots["m"], slots["v"]
        m += (g - m) * dt(1 - self.beta_1)
        v += (g * g - v) * dt(1 - self.beta_2)
        if self.amsgrad:
            np.maximum(slots["v_max"], v, out=slots["v_max"])
            v = slots["v_max"]
        bc1 = 1 - self.beta_1 ** t
        bc2 = 1 - self.beta_2 ** t
        if self.formula == "keras":
            alpha = lr * math.sqrt(bc2) / bc1
            p -= m * dt(alpha) / (np.sqrt(v) + dt(self.epsilon))
        else:
            p -= dt(lr / bc1) * m / (np.sqrt(v) / dt(math.sqrt(bc2)) + dt(self.epsilon))


class AdamW(Adam):
    """Adam with decoupled weight decay ``p -= lr * weight_decay * p`` before the Adam step (Keras's
    and PyTorch's AdamW agree on this; defaults 0.004 and 0.01)."""

    DEFAULTS = {**Adam.DEFAULTS, "weight_decay": (0.004, 0.01)}

    def __init__(self, learning_rate=0.001, weight_decay=None, beta_1=0.9, beta_2=0.999, epsilon=None,
                 amsgrad=False, formula="keras", **kwargs):
        wd = weight_decay if weight_decay is not None else (
            self.DEFAULTS["weight_decay"][0 if formula == "keras" else 1])
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, formula=formula,
                         weight_decay=wd, **kwargs)

    def _decoupled_decay(self):
        return True


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012); Keras puts epsilon inside the square root, PyTorch outside.
    ``rho`` is PyTorch's ``alpha``."""

    DEFAULTS = {"epsilon": (1e-7, 1e-8), "rho": (0.9, 0.99)}

    def __init__(self, learning_rate=0.001, rho=None, momentum=0.0, epsilon=None, centered=False,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(self._default(rho, "rho"))
        if not 0.0 <= self.rho < 1.0:
            raise ValueError(f"rho: expected a number in [0, 1), got {rho!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = float(self._default(epsilon, "epsilon"))
        self.centered = bool(centered)
        self.SLOTS = ("velocity",) + (("momentum",) if self.momentum else ()) + (
            ("average_gradient",) if self.centered else ())
        self.slots = {s: {} for s in self.SLOTS}

    def _update(self, p, g, slots, lr, t):
        dt = p.dtype.type
        v = slots["velocity"]
        v *= dt(self.rho)
        v += dt(1 - self.rho) * g * g
        var = v
        if self.centered:
            a = slots["average_gradient"]
            a *= dt(self.rho)
            a += dt(1 - self.rho) * g
            var = v - a * a
        if self.formula == "keras":
            step = dt(lr) * g / np.sqrt(var + dt(self.epsilon))
        else:
            step = g / (np.sqrt(var) + dt(self.epsilon))
        if self.momentum:
            b = slots["momentum"]
            b *= dt(self.momentum)
            b += step
            step = b
        if self.formula == "keras":
            p -= step
        else:
            p -= dt(lr) * step


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011); Keras: epsilon inside the root and a0 = 0.1; PyTorch: outside, a0 = 0."""

    SLOTS = ("accumulator",)
    DEFAULTS = {"epsilon": (1e-7, 1e-10), "initial_accumulator_value": (0.1, 0.0)}

    def __init__(self, learning_rate=0.001, initial_accumulator_value=None, epsilon=None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(
            self._default(initial_accumulator_value, "initial_accumulator_value"))
        if self.initial_accumulator_value < 0:
            raise ValueError("initial_accumulator_value: expected a number >= 0, got "
                             f"{initial_accumulator_value!r}")
        self.epsilon = float(self._default(epsilon, "epsilon"))

    def _initial_slot(self, name, p):
        return np.full_like(p, self.initial_accumulator_value)

    def _update(self, p, g, slots, lr, t):
        dt = p.dtype.type
        a = slots["accumulator"]
        a += g * g
        if self.formula == "keras":
            p -= dt(lr) * g / np.sqrt(a + dt(self.epsilon))
        else:
            p -= dt(lr) * g / (np.sqrt(a) + dt(self.epsilon))


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(identifier):
    """An optimizer from a Keras name (``"adam"``, ``"sgd"``, ...) with default arguments, or an
    optimizer object (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"optimizer: expected one of {sorted(_BY_NAME)} or an Optimizer, "
                     f"got {identifier!r}")
