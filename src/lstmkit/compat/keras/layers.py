"""Keras-named layers (``keras.layers.*``) as thin adaptors over lstmkit's layers and kernels.

Each adaptor takes Keras's arguments, runs a native layer and returns exactly what Keras returns::

    lstm = LSTM(4, return_sequences=True, return_state=True)
    out, h, c = lstm(x)        # x (B, T, I): out (B, T, 4), h and c (B, 4); Keras's order [h, c]

Called on a symbolic tensor from ``Input`` a layer records itself into a graph for ``Model``.
Keras's semantics kept here (checked against Keras 3 in tests/test_keras_compat.py):

* a masked step (``Embedding(mask_zero=True)``, ``Masking``, ``mask=``) carries the state and
  REPEATS the last valid output (zero before the first); ``Bidirectional`` with
  ``return_sequences=True`` outputs zeros there instead (Keras forces ``zero_output_for_mask``);
* ``go_backwards=True`` reads the (padded) sequence from its end and returns the outputs in that
  reversed order; ``Bidirectional`` flips the backward outputs back before merging;
* ``initial_state=[h, c]`` for an LSTM (``[h]`` or ``h`` for a GRU / SimpleRNN); ``return_state``
  gives ``[out, h, c]`` (``[out, h]``); a Bidirectional one ``[out, fw_h, fw_c, bw_h, bw_c]``.
"""
import numpy as np

from ...kernels import activations as _activations
from ...kernels.softmax import softmax_backward, softmax_forward
from ...layers import core as _core
from ...layers import recurrent as _rnn
from ...layers.base import Layer as _NativeLayer
from ...layers.base import as_float_input
from ...model import Input as _Input
from ...model import InputLayer
from ...model import is_symbolic, probing, symbolic_call

__all__ = ["Layer", "Input", "InputLayer", "LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell",
           "SimpleRNNCell", "RNN", "Bidirectional", "Dense", "TimeDistributed", "Embedding", "Masking",
           "RepeatVector", "Concatenate", "Dropout", "Activation"]

_UNSUPPORTED = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                "activity_regularizer", "embeddings_regularizer", "kernel_constraint",
                "recurrent_constraint", "bias_constraint", "embeddings_constraint")


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, **kwargs):
    """``keras.Input``: a symbolic input; ``shape`` excludes the batch axis (``batch_shape`` has it)."""
    for key, value in kwargs.items():
        if key not in ("sparse", "ragged", "tensor", "optional") or value not in (None, False):
            raise TypeError(f"Input: unsupported argument {key}={value!r}")
    if batch_shape is not None:
        if shape is not None:
            raise ValueError("shape and batch_shape: pass one of them, not both")
        batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
    if shape is None:
        raise ValueError("shape: expected the shape of one example, e.g. Input(shape=(timesteps, "
                         "features)), got None")
    return _Input(shape, dtype=dtype or "float32", name=name, batch_size=batch_size)


class KerasLayer(_NativeLayer):
    """Base of the Keras-named layers: Keras's call convention (``layer(inputs, **kwargs)``, symbolic
    or eager), Keras's base arguments, and masks. ``params``/``grads`` are the wrapped native
    layer's (the same arrays), so ``get_weights()`` is in Keras's order."""

    supports_masking = False

    def __init__(self, *, name=None, dtype=None, input_shape=None, trainable=True, **kwargs):
        for key, value in kwargs.items():
            if key in _UNSUPPORTED and value is None:
                continue
            if key in _UNSUPPORTED:
                raise ValueError(f"{key}: regularizers and constraints are not supported; got {value!r}")
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument {key!r}")
        self._built = False
        super().__init__(name=name, dtype=dtype or "float32")
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.trainable = bool(trainable)
        self._natives = []   # the native layers whose params this layer owns, in Keras's order

    def _own(self, *natives):
        self._natives = list(natives)
        if len(natives) == 1:
            self.params, self.grads = natives[0].params, natives[0].grads

    @property
    def built(self):
        return self._built or (bool(self._natives) and all(n.built for n in self._natives))

    @built.setter
    def built(self, value):
        self._built = value

    @property
    def weights(self):
        return [w for n in self._natives for w in n.params.values()] if self._natives else \
            list(self.params.values())

    trainable_weights = weights

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        if not self._natives or len(self._natives) == 1:
            return super().set_weights(weights)
        want = sum(len(n.params) for n in self._natives)
        if len(weights) != want:
            raise ValueError(f"weights: layer {self.name!r} expects {want} arrays, got {len(weights)}")
        for n in self._natives:
            n.set_weights(weights[:len(n.params)])
            weights = weights[len(n.params):]

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    def zero_grad(self):
        for n in self._natives:
            n.zero_grad()

    def __call__(self, *args, **kwargs):
        if is_symbolic(list(args), list(kwargs.values())):
            kwargs.pop("training", None)
            return symbolic_call(self, args, kwargs)
        training = bool(kwargs.pop("training", False) or False)
        if not self.supports_masking:
            return self.forward(*args, training=training, **kwargs)[0]
        # Eager masking as Keras 3's: a mask attached to the only array argument is used, and the
        # outputs get the mask compute_mask gives.
        arrays = [a for a in list(args) + [v for k, v in kwargs.items() if k != "mask"]
                  if any(isinstance(t, np.ndarray) for t in _leaves(a))]
        if kwargs.get("mask") is None and len(arrays) == 1:
            mask = _attached_mask(arrays[0])
            if mask is not None:
                kwargs["mask"] = mask
        previous = kwargs.get("mask")
        if previous is None and args:
            previous = _attached_mask(args[0])
        out = self.forward(*args, training=training, **kwargs)[0]
        out_mask = self.compute_mask(args[0], previous) if args else None
        if isinstance(out, list):
            masks = out_mask if isinstance(out_mask, list) else [out_mask]
            masks = masks + [None] * (len(out) - len(masks))
            return [_attach(o, m) if not isinstance(m, list) else o for o, m in zip(out, masks)]
        return _attach(out, out_mask)

    def compute_mask(self, inputs, mask=None):
        return mask if self.supports_masking else None


def _initializer(value):
    """Keras's initializer spellings: "glorot_uniform" or its class name "GlorotUniform"."""
    if isinstance(value, str) and value[:1].isupper():
        return "".join("_" + ch.lower() if ch.isupper() and i else ch.lower()
                       for i, ch in enumerate(value))
    return value


class MaskedArray(np.ndarray):
    """An array returned by a Keras-named layer with Keras's mask attached as ``_keras_mask``
    ((batch, time) booleans, True at valid steps), as Keras 3 attaches it to eager tensors: the
    next layer called on it uses the mask. Anything computed from it carries no mask."""

    _keras_mask = None

    def __array_finalize__(self, obj):
        pass      # results of NumPy operations on it are not masked

    def __repr__(self):
        return repr(self.view(np.ndarray))


def _attach(out, mask):
    if mask is None or not isinstance(out, np.ndarray):
        return out
    out = out.view(MaskedArray)
    out._keras_mask = np.asarray(mask, dtype=bool)
    return out


def _leaves(value):
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _attached_mask(value):
    if isinstance(value, (list, tuple)):
        masks = [_attached_mask(v) for v in value]
        return None if all(m is None for m in _leaves(masks)) else masks
    return getattr(value, "_keras_mask", None)


# -- activations by Keras's names (softmax included) -------------------------------------------------
def _check_activation(name):
    if name in (None, "linear", "softmax"):
        return name
    _activations.get(name)
    return name


def _activation_forward(name, z):
    if name in (None, "linear"):
        return z, None
    if name == "softmax":
        return softmax_forward(z)
    y = _activations.get(name)[0](z)
    return y, y


def _activation_backward(name, cache, d):
    if name in (None, "linear"):
        return d
    if name == "softmax":
        return softmax_backward(cache, d)
    return d * _activations.get(name)[1](cache)


# -- recurrent cells and the RNN wrapper ------------------------------------------------------------
class _Cell(KerasLayer):
    """A Keras cell: the configuration (and parameters) of one step, run by :class:`RNN`.

    Called alone, ``cell(inputs, states) -> (output, new_states)`` runs one step: inputs (B, I),
    states a list like ``[h, c]``.
    """

    NATIVE = None
    STATE_NAMES = ("h",)

    def __init__(self, units, *, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0,
                 recurrent_dropout=0.0, seed=None, native_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self._init_kwargs = dict(units=units, activation=activation, use_bias=use_bias,
                                 kernel_initializer=kernel_initializer,
                                 recurrent_initializer=recurrent_initializer,
                                 bias_initializer=bias_initializer, dropout=dropout,
                                 recurrent_dropout=recurrent_dropout, seed=seed,
                                 dtype=self.dtype.name, **(native_kwargs or {}))
        self.layer = self.NATIVE(units, activation=activation, use_bias=use_bias,
                                 kernel_initializer=_initializer(kernel_initializer),
                                 recurrent_initializer=_initializer(recurrent_initializer),
                                 bias_initializer=_initializer(bias_initializer), input_dropout=dropout,
                                 recurrent_dropout=recurrent_dropout, masked_output="repeat",
                                 name=self.name, dtype=self.dtype, seed=seed,
                                 **(native_kwargs or {}))
        self.units = self.layer.units
        self._own(self.layer)

    def _clone(self):
        """A new, unbuilt cell of the same configuration (Bidirectional's two directions)."""
        return type(self)(**self._init_kwargs)

    @property
    def state_size(self):
        return self.units if len(self.STATE_NAMES) == 1 else [self.units] * len(self.STATE_NAMES)

    @property
    def kernel(self):
        return self.params["kernel"]

    @property
    def recurrent_kernel(self):
        return self.params["recurrent_kernel"]

    @property
    def bias(self):
        return self.params.get("bias")

    def state_from_keras(self, initial_state, batch):
        """Keras's ``initial_state`` (a list in Keras's order) -> the native named state, checked."""
        if initial_state is None:
            return None
        kind = type(self).__name__.replace("Cell", "")
        names, U = self.STATE_NAMES, self.units
        wanted = "[" + ", ".join(names) + "]"
        if isinstance(initial_state, self.layer.State):
            return initial_state
        if getattr(initial_state, "_fields", None) == ("c", "h"):
            raise TypeError(f"initial_state: got a TF1 LSTMStateTuple (c, h); a Keras {kind} takes "
                            f"[h, c]: pass [state.h, state.c]")
        if isinstance(initial_state, (list, tuple)):
            states = list(initial_state)
        else:
            states = [initial_state]
        if len(states) != len(names):
            got = f"{len(states)} array(s)"
            if len(states) == 1 and np.ndim(states[0]) >= 1:
                got = f"one array of shape {np.shape(states[0])}"
                if len(names) == 2 and np.shape(states[0]) == (batch, 2 * U):
                    got += (" -- it looks like TF1's concatenated state [c, h] "
                            "(state_is_tuple=False): split it, c, h = s[:, :units], s[:, units:]")
            need = f"{len(names)} arrays {wanted}" if len(names) > 1 else f"one array {wanted}"
            raise ValueError(f"initial_state: a Keras {kind} needs {need}, each of shape "
                             f"(batch, units) = ({batch}, {U}); got {got}")
        arrays = [as_float_input(s, self.dtype, f"initial_state[{i}] ({n})")
                  for i, (s, n) in enumerate(zip(states, names))]
        for i, (a, n) in enumerate(zip(arrays, names)):
            if a.shape != (batch, U):
                hint = ""
                if len(names) == 2 and arrays[1 - i].shape != a.shape:
                    hint = (" (h and c must have the same shape; a TF1 state is ordered (c, h) and "
                            "may carry a projected h: Keras's order is [h, c])")
                raise ValueError(f"initial_state[{i}] ({n}): expected shape ({batch}, {U}) (batch, "
                                 f"units), got {a.shape}{hint}")
        if len(names) == 2 and self.layer.activation == "tanh" and _looks_like_c_h(*arrays):
            raise ValueError(
                "initial_state: these look like (c, h) in TF1's order: an LSTM's h = o * tanh(c) "
                "has |h| <= |tanh(c)| with c's sign, which holds for the second array against the "
                "first but not the other way round. Keras's order is [h, c]; pass "
                "lstmkit.LSTMState(h=..., c=...) to skip this check")
        return self.layer.State(*arrays)

    def forward(self, inputs, states=None, *, training=False):
        """One step: inputs (B, I), states (list in Keras's order) -> ``((output, new_states), cache)``."""
        x = as_float_input(inputs, self.dtype, "inputs")
        if x.ndim != 2:
            raise ValueError(f"inputs: a cell takes one step, shape (batch, features); got {x.shape}")
        state = self.state_from_keras(states, x.shape[0])
        res, cache = self.layer.forward(x[:, None, :], initial_state=state, training=training)
        return (res.outputs[:, 0], list(res.state)), cache

    def backward(self, cache, grad):
        d_out, d_states = grad
        d_seq = None if d_out is None else np.asarray(d_out)[:, None, :]
        g = self.layer.backward(cache, (d_seq, self.layer.State(*d_states)))
        return [g.inputs[:, 0], list(g.initial_state)]


def _looks_like_c_h(first, second):
    """True when ``[first, second]`` cannot be an LSTM's ``[h, c]`` but ``[second, first]`` can.

    An LSTM (tanh activation) gives h = o * tanh(c) with 0 < o < 1: |h| <= |tanh(c)|, same sign, at
    every element. States from a real LSTM pass. It speaks only on 16+ elements (agreeing signs by
    chance are then unlikely) and when the would-be h has no zero (``[h, zeros]`` is a legitimate
    start whose swap fits trivially)."""
    if first.size < 16 or not np.all(second != 0):
        return False

    def fits(h, c):
        t = np.tanh(c.astype(np.float64))
        h = h.astype(np.float64)
        return bool(np.all(np.abs(h) <= np.abs(t) * (1 + 1e-5) + 1e-7) and np.all(h * t >= -1e-7))
    return not fits(first, second) and fits(second, first)


class LSTMCell(_Cell):
    """Keras's ``LSTMCell``: weights ``kernel (I, 4U)``, ``recurrent_kernel (U, 4U)``, ``bias (4U,)``,
    gates i, f, c, o; states ``[h, c]``."""

    NATIVE = _rnn.LSTM
    STATE_NAMES = ("h", "c")

    def __init__(self, units, recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, native_kwargs=dict(recurrent_activation=recurrent_activation,
                                                   unit_forget_bias=unit_forget_bias), **kwargs)


class GRUCell(_Cell):
    """Keras's ``GRUCell``: ``kernel (I, 3U)``, ``recurrent_kernel (U, 3U)``, ``bias (2, 3U)`` with
    ``reset_after=True`` (default) or ``(3U,)``; gates z, r, h; state ``[h]``."""

    NATIVE = _rnn.GRU

    def __init__(self, units, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, native_kwargs=dict(recurrent_activation=recurrent_activation,
                                                   reset_after=reset_after), **kwargs)


class SimpleRNNCell(_Cell):
    """Keras's ``SimpleRNNCell``: ``kernel (I, U)``, ``recurrent_kernel (U, U)``, ``bias (U,)``."""

    NATIVE = _rnn.SimpleRNN


_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "time_major",
             "zero_output_for_mask", "name", "dtype", "input_shape", "trainable")


class RNN(KerasLayer):
    """Keras's ``RNN(cell)``: runs a cell over (batch, time, features) sequences.

    Returns the last output (B, U), or every output (B, T, U) with ``return_sequences``; with
    ``return_state`` a list ``[output, *final_states]``. ``stateful=True`` starts each call from the
    previous call's final state (``reset_states()`` zeros it). ``time_major=True`` (tf.keras 2's)
    takes and gives (time, batch, ...). ``unroll`` is accepted and changes nothing.

    A list of cells is stacked (Keras's ``StackedRNNCells``): cell k reads cell k-1's outputs, and
    the states are nested per cell, ``[output, [h1, c1], [h2, c2]]`` (``initial_state`` likewise).
    """

    supports_masking = True

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, time_major=False, zero_output_for_mask=False, **kwargs):
        cells = list(cell) if isinstance(cell, (list, tuple)) else [cell]
        for c in cells:
            if not isinstance(c, _Cell):
                raise TypeError(f"cell: expected LSTMCell, GRUCell or SimpleRNNCell (or a list of "
                                f"them), got {type(c).__name__}")
        if not cells:
            raise ValueError("cell: got an empty list of cells")
        kwargs.setdefault("dtype", cells[0].dtype.name)
        super().__init__(**kwargs)
        self._rnn_kwargs = dict(return_sequences=return_sequences, return_state=return_state,
                                go_backwards=go_backwards, stateful=stateful, unroll=unroll,
                                time_major=time_major, zero_output_for_mask=zero_output_for_mask)
        self.cells = cells
        self.stacked = isinstance(cell, (list, tuple))
        self.cell = cell if not self.stacked else None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.time_major = bool(time_major)
        self.zero_output_for_mask = zero_output_for_mask
        self._carried = None         # stateful: the final native state of each cell
        for c in cells:
            c.layer.reverse = self.go_backwards
        self._own(*(c.layer for c in cells))

    @property
    def zero_output_for_mask(self):
        return self.cells[-1].layer.masked_output == "zero"

    @zero_output_for_mask.setter
    def zero_output_for_mask(self, value):
        for c in self.cells:
            c.layer.masked_output = "zero" if value else "repeat"

    @property
    def units(self):
        return self.cells[-1].units

    @property
    def states(self):
        """A stateful layer's carried state in Keras's form ([h, c], or per cell when stacked)."""
        if self._carried is None:
            return None
        lists = [list(st) for st in self._carried]
        return lists if self.stacked else lists[0]

    def _clone(self, **changes):
        kwargs = {**self._rnn_kwargs, "dtype": self.dtype.name, **changes}
        cells = [c._clone() for c in self.cells]
        return RNN(cells if self.stacked else cells[0], **kwargs)

    def _states_per_cell(self, initial_state, batch):
        """Keras's initial_state -> one native state (or None) per cell."""
        if initial_state is None:
            return [None] * len(self.cells)
        if not self.stacked:
            return [self.cell.state_from_keras(initial_state, batch)]
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != len(self.cells):
            raise ValueError(f"initial_state: stacked cells take one state per cell, nested "
                             f"([[h1, c1], [h2, c2], ...]); expected {len(self.cells)} entries")
        return [c.state_from_keras(st, batch) for c, st in zip(self.cells, initial_state)]

    def reset_states(self, states=None):
        """Zero the carried state of a stateful layer (or set it to ``states``, Keras's order)."""
        if not self.stateful:
            raise AttributeError(f"layer {self.name!r} is not stateful (stateful=False)")
        if states is None:
            if self._carried is not None:
                self._carried = [st.__class__(*(np.zeros_like(a) for a in st))
                                 for st in self._carried]
        else:
            first = states
            while isinstance(first, (list, tuple)):
                first = first[0]
            self._carried = [st.__class__(*(a.copy() for a in st))
                             for st in self._states_per_cell(states, np.shape(first)[0])]

    reset_state = reset_states

    def forward(self, inputs, initial_state=None, *, mask=None, training=False, constants=None):
        """Returns ``(result, cache)``; ``result`` is exactly what Keras's layer returns."""
        if constants is not None:
            raise ValueError("constants: not supported")
        if isinstance(inputs, (list, tuple)):          # Keras also takes [inputs, *initial_state]
            if not inputs:
                raise ValueError("inputs: got an empty list")
            inputs, *rest = inputs
            if rest:
                if initial_state is not None:
                    raise ValueError("initial_state: given both inside the inputs list and as "
                                     "initial_state=")
                initial_state = rest
        x = as_float_input(inputs, self.dtype, "inputs")
        layout = "(timesteps, batch, features) (time_major=True)" if self.time_major else \
            "(batch, timesteps, features)"
        if x.ndim != 3:
            raise ValueError(f"inputs: layer {self.name!r} expects a 3-D array {layout}, got shape "
                             f"{x.shape}")
        if self.time_major:
            x = x.transpose(1, 0, 2)
        B, T, _ = x.shape
        given = initial_state is not None
        states = self._states_per_cell(initial_state, B)
        if not given and self.stateful and self._carried is not None:
            if self._carried[0][0].shape[0] != B:
                raise ValueError(f"inputs: stateful layer {self.name!r} carries a state for batch "
                                 f"size {self._carried[0][0].shape[0]}, got a batch of {B}; call "
                                 "reset_states() or keep the batch size fixed")
            states = self._carried
        if isinstance(mask, (list, tuple)):     # the mask of an [inputs, *initial_state] list
            mask = mask[0]
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if self.time_major and mask.shape == (T, B):
                mask = mask.T
            if mask.shape != (B, T):
                raise ValueError(f"mask: expected shape ({B}, {T}) (batch, timesteps), got {mask.shape}")
        caches, finals, seq = [], [], x
        for c, state in zip(self.cells, states):   # stacked cells: one native layer after another
            res, cache = c.layer.forward(seq, initial_state=state, mask=mask, training=training)
            caches.append(cache)
            finals.append(res.state)
            seq = res.outputs
        if self.stacked and not self.params:       # the cells' parameters exist from now on
            # keyed by position, not by the cells' automatic names: the same in every build
            for i, c in enumerate(self.cells):
                for k in c.params:
                    self.params[f"cells/{i}/{k}"] = c.params[k]
                    self.grads[f"cells/{i}/{k}"] = c.grads[k]
        seq = seq[:, ::-1] if self.go_backwards else seq
        if self.return_sequences:
            out = seq.transpose(1, 0, 2) if self.time_major else seq
        else:
            out = seq[:, -1]
        if self.stateful and not probing():
            self._carried = [st.__class__(*(a.copy() for a in st)) for st in finals]
        result = out
        if self.return_state:
            result = [out, *[list(st) for st in finals]] if self.stacked else [out, *finals[0]]
        return result, (caches, given, (B, T))

    def backward(self, cache, d_outputs):
        """Gradient of the inputs (``[d_inputs, *d_initial_state]`` when the call had one)."""
        caches, given, (B, T) = cache
        d_out, d_states = (d_outputs[0], d_outputs[1:]) if self.return_state else (d_outputs, None)
        if d_states and not self.stacked:
            d_states = [d_states]
        d_seq = None
        if d_out is not None:
            d_out = np.asarray(d_out)
            if self.return_sequences:
                d_seq = d_out.transpose(1, 0, 2) if self.time_major else d_out
            else:
                d_seq = np.zeros((B, T, self.units), d_out.dtype)
                d_seq[:, -1] = d_out
            if self.go_backwards:
                d_seq = d_seq[:, ::-1]
        d_initial = [None] * len(self.cells)
        for k in range(len(self.cells) - 1, -1, -1):
            layer = self.cells[k].layer
            d_state = None if not d_states else layer.State(*d_states[k])
            g = layer.backward(caches[k], (d_seq, d_state))
            d_initial[k] = list(g.initial_state)
            d_seq = g.inputs
        dx = d_seq.transpose(1, 0, 2) if self.time_major else d_seq
        if not given:
            return dx
        return [dx, *d_initial] if self.stacked else [dx, *d_initial[0]]

    def compute_mask(self, inputs, mask=None):
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            if not self.stacked:
                return [out_mask] + [None] * len(self.cell.STATE_NAMES)
            return [out_mask] + [[None] * len(c.STATE_NAMES) for c in self.cells]
        return out_mask


def _split_kwargs(kwargs):
    rnn = {k: kwargs.pop(k) for k in list(kwargs) if k in _RNN_ARGS}
    for k in ("use_cudnn", "implementation"):
        kwargs.pop(k, None)
    return rnn, kwargs


class LSTM(RNN):
    """Keras's ``LSTM`` layer: ``LSTM(units, return_sequences=False, return_state=False, ...)``.

    x (B, T, I) -> out (B, U) or (B, T, U); with ``return_state`` ``[out, h, c]``, where h is the
    last valid output and c the cell state. Weights ``kernel (I, 4U)``, ``recurrent_kernel (U, 4U)``,
    ``bias (4U,)``, gates i, f, c, o; ``unit_forget_bias=True`` starts the forget bias at 1.

    Example:
        >>> import numpy as np
        >>> from lstmkit.keras.layers import LSTM
        >>> out, h, c = LSTM(4, return_sequences=True, return_state=True)(np.ones((2, 3, 5)))
        >>> out.shape, h.shape, c.shape, bool(np.allclose(out[:, -1], h))
        ((2, 3, 4), (2, 4), (2, 4), True)
    """

    def __init__(self, units, **kwargs):
        rnn, cell = _split_kwargs(kwargs)
        super().__init__(LSTMCell(units, name="lstm_cell", dtype=rnn.get("dtype"), **cell), **rnn)


class GRU(RNN):
    """Keras's ``GRU`` layer (``reset_after=True`` by default, as Keras 3): returns like :class:`LSTM`
    with one state, ``[out, h]``. Weights ``kernel (I, 3U)``, ``recurrent_kernel (U, 3U)``, ``bias
    (2, 3U)`` (``(3U,)`` with ``reset_after=False``), gates z, r, h."""

    def __init__(self, units, **kwargs):
        rnn, cell = _split_kwargs(kwargs)
        super().__init__(GRUCell(units, name="gru_cell", dtype=rnn.get("dtype"), **cell), **rnn)


class SimpleRNN(RNN):
    """Keras's ``SimpleRNN`` layer: ``h' = activation(x W + h R + b)``; returns like :class:`GRU`."""

    def __init__(self, units, **kwargs):
        rnn, cell = _split_kwargs(kwargs)
        super().__init__(SimpleRNNCell(units, name="simple_rnn_cell", dtype=rnn.get("dtype"), **cell),
                         **rnn)


_MERGE_MODES = ("concat", "sum", "ave", "mul", None)


class Bidirectional(KerasLayer):
    """Keras's ``Bidirectional(layer, merge_mode="concat")``.

    Runs a copy of ``layer`` forwards (``forward_layer``) and one with ``go_backwards`` flipped
    (``backward_layer``); the backward outputs are flipped back to the input order and merged
    (``"concat"``, ``"sum"``, ``"ave"``, ``"mul"``, or None for a list ``[fw, bw]``). With
    ``return_state``: ``[out, fw_h, fw_c, bw_h, bw_c]``; ``initial_state`` takes the same four.
    Weights: the forward layer's, then the backward layer's.
    """

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, RNN):
            raise TypeError(f"layer: expected a recurrent layer (LSTM, GRU, SimpleRNN, RNN), got "
                            f"{type(layer).__name__}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"merge_mode: expected one of {_MERGE_MODES}, got {merge_mode!r}")
        if layer.stateful or layer.stacked:
            raise ValueError("layer: a stateful Bidirectional layer, or one of stacked cells, is not "
                             "supported")
        if weights is not None:
            raise ValueError("weights: not supported here; call set_weights(...) once the layer "
                             "is built (after its first call)")
        kwargs.setdefault("dtype", layer.dtype.name)
        super().__init__(**kwargs)
        # Keras's names: a prefix already there is not doubled (a loaded forward_lstm stays so)
        self.forward_layer = layer._clone(name=f"forward_{layer.name.removeprefix('forward_')}")
        if backward_layer is None:
            self.backward_layer = layer._clone(name=f"backward_{layer.name.removeprefix('backward_')}",
                                               go_backwards=not layer.go_backwards)
        else:
            if not isinstance(backward_layer, RNN) or backward_layer.go_backwards == layer.go_backwards:
                raise ValueError("backward_layer: expected a recurrent layer with go_backwards "
                                 "opposite to layer's")
            self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = layer.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self._time_axis = 0 if layer.time_major else 1
        self._natives = [self.forward_layer.cell.layer, self.backward_layer.cell.layer]

    def _sync_params(self):
        if not self.params and self.built:
            # keyed as Keras's weights files key them, not by the sub-layers' automatic names
            for attr in ("forward_layer", "backward_layer"):
                sub = getattr(self, attr)
                for k in sub.params:
                    self.params[f"{attr}/{k}"] = sub.params[k]
                    self.grads[f"{attr}/{k}"] = sub.grads[k]

    def _flip(self, y):
        return np.flip(y, axis=self._time_axis)

    def forward(self, inputs, initial_state=None, *, mask=None, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if isinstance(inputs, (list, tuple)):
            inputs, *rest = inputs
            if rest:
                initial_state = rest
        n = len(self.forward_layer.cell.STATE_NAMES)
        init_f = init_b = None
        given = initial_state is not None
        if given:
            states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            if len(states) != 2 * n:
                names = ", ".join(f"{d}_{s}" for d in ("fw", "bw")
                                  for s in self.forward_layer.cell.STATE_NAMES)
                raise ValueError(f"initial_state: a Bidirectional layer takes {2 * n} arrays "
                                 f"[{names}] (the forward layer's states, then the backward "
                                 f"layer's), got {len(states)}")
            init_f, init_b = states[:n], states[n:]
        y, cache_f = self.forward_layer.forward(inputs, init_f, mask=mask, training=training)
        y_rev, cache_b = self.backward_layer.forward(inputs, init_b, mask=mask, training=training)
        self._sync_params()
        states = []
        if self.return_state:
            (y, *st_f), (y_rev, *st_b) = y, y_rev
            states = st_f + st_b
        if self.return_sequences:
            y_rev = self._flip(y_rev)
        if self.merge_mode == "concat":
            out = np.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            out = y + y_rev
        elif self.merge_mode == "ave":
            out = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            out = y * y_rev
        else:
            out = [y, y_rev]
        if self.return_state:
            out = (out if self.merge_mode is None else [out]) + states
        return out, (cache_f, cache_b, y, y_rev, given)

    def backward(self, cache, d_outputs):
        cache_f, cache_b, y, y_rev, given = cache
        n = len(self.forward_layer.cell.STATE_NAMES)
        k = 2 if self.merge_mode is None else 1
        if self.return_state:
            d_out, d_states = d_outputs[:k], list(d_outputs[k:])
            d_out = d_out if k == 2 else d_out[0]
        else:
            d_out, d_states = d_outputs, None
        U = y.shape[-1]
        if self.merge_mode is None:
            d_y, d_rev = d_out
        elif self.merge_mode == "concat":
            d_y, d_rev = d_out[..., :U], d_out[..., U:]
        elif self.merge_mode == "sum":
            d_y, d_rev = d_out, d_out
        elif self.merge_mode == "ave":
            d_y = d_rev = d_out / 2
        else:
            d_y, d_rev = d_out * y_rev, d_out * y
        if self.return_sequences:
            d_rev = self._flip(d_rev)
        if self.return_state:
            d_y, d_rev = [d_y, *d_states[:n]], [d_rev, *d_states[n:]]
        g_f = self.forward_layer.backward(cache_f, d_y)
        g_b = self.backward_layer.backward(cache_b, d_rev)
        if given:
            return [g_f[0] + g_b[0], *g_f[1:], *g_b[1:]]
        return g_f + g_b

    def compute_mask(self, inputs, mask=None):
        out_mask = mask if self.return_sequences else None
        if self.merge_mode is None:
            out_mask = [out_mask, out_mask]
        if self.return_state:
            n = len(self.forward_layer.cell.STATE_NAMES)
            out_mask = (out_mask if isinstance(out_mask, list) else [out_mask]) + [None] * (2 * n)
        return out_mask

    def get_weights(self):
        return self.forward_layer.get_weights() + self.backward_layer.get_weights()


# -- feed-forward layers ---------------------------------------------------------------------------
class Dense(KerasLayer):
    """Keras's ``Dense``: ``activation(x @ kernel + bias)`` over the last axis; x (..., I) -> (..., U).
    Weights ``kernel (I, U)``, ``bias (U,)``. Activations by name, ``"softmax"`` included."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = _check_activation(activation)
        self.units = units
        self.dense = _core.Dense(units, use_bias=use_bias,
                                 kernel_initializer=_initializer(kernel_initializer),
                                 bias_initializer=_initializer(bias_initializer), name=self.name,
                                 dtype=self.dtype,
                                 seed=seed)
        self._own(self.dense)

    def forward(self, inputs, *, mask=None, training=False):
        z, dense_cache = self.dense.forward(inputs, training=training)
        y, act_cache = _activation_forward(self.activation, z)
        return y, (dense_cache, act_cache)

    def backward(self, cache, d_y):
        dense_cache, act_cache = cache
        return self.dense.backward(dense_cache, _activation_backward(self.activation, act_cache, d_y))


class Activation(KerasLayer):
    """Keras's ``Activation(name)``: an element-wise activation (or softmax over the last axis)."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _check_activation(activation)
        self.built = True

    def forward(self, inputs, *, mask=None, training=False):
        return _activation_forward(self.activation, as_float_input(inputs, self.dtype, "inputs"))

    def backward(self, cache, d_y):
        return _activation_backward(self.activation, cache, d_y)


class Dropout(KerasLayer):
    """Keras's ``Dropout(rate)``: zeroes units at random in training (kept ones scaled by
    1/(1-rate)); the identity at inference."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.dropout = _core.Dropout(rate, noise_shape=noise_shape, name=self.name, dtype=self.dtype,
                                     seed=seed)
        self._own(self.dropout)

    def forward(self, inputs, *, mask=None, training=False):
        return self.dropout.forward(inputs, training=training)

    def backward(self, cache, d_y):
        return self.dropout.backward(cache, d_y)


class TimeDistributed(KerasLayer):
    """Keras's ``TimeDistributed(layer)``: apply ``layer`` to every step, x (B, T, ...) -> (B, T, ...).
    Its weights are the wrapped layer's (shared across steps)."""

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, KerasLayer):
            raise TypeError(f"layer: expected a Keras-named layer such as Dense, got "
                            f"{type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer
        self.params, self.grads = layer.params, layer.grads
        self._natives = layer._natives

    def forward(self, inputs, *, mask=None, training=False):
        x = np.asarray(inputs)
        if x.ndim < 3:
            raise ValueError(f"inputs: TimeDistributed expects at least 3 dimensions (batch, "
                             f"timesteps, ...), got shape {x.shape}")
        B, T = x.shape[:2]
        y, cache = self.layer.forward(x.reshape(B * T, *x.shape[2:]), training=training)
        return y.reshape(B, T, *y.shape[1:]), (cache, x.shape)

    def backward(self, cache, d_y):
        inner, shape = cache
        d_y = np.asarray(d_y)
        dx = self.layer.backward(inner, d_y.reshape(shape[0] * shape[1], *d_y.shape[2:]))
        return None if dx is None else dx.reshape(shape)

    def get_weights(self):
        return self.layer.get_weights()

    def set_weights(self, weights):
        self.layer.set_weights(weights)


class Embedding(KerasLayer):
    """Keras's ``Embedding(input_dim, output_dim, mask_zero=False)``: ids (B, T) -> (B, T, D).
    With ``mask_zero=True`` id 0 is padding: the mask ``ids != 0`` reaches the next layers."""

    supports_masking = True

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 input_length=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.mask_zero = bool(mask_zero)
        self.embedding = _core.Embedding(input_dim, output_dim,
                                         embeddings_initializer=_initializer(embeddings_initializer),
                                         mask_zero=mask_zero, name=self.name, dtype=self.dtype,
                                         seed=seed)
        self._own(self.embedding)

    def forward(self, inputs, *, mask=None, training=False):
        return self.embedding.forward(inputs, training=training)

    def backward(self, cache, d_y):
        self.embedding.backward(cache, d_y)
        return None

    def compute_mask(self, inputs, mask=None):
        return self.embedding.compute_mask(inputs)


class Masking(KerasLayer):
    """Keras's ``Masking(mask_value=0.0)``: a step whose features all equal ``mask_value`` is
    masked for the next layers (and its features are set to 0)."""

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = mask_value
        self.built = True

    def compute_mask(self, inputs, mask=None):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)

    def forward(self, inputs, *, mask=None, training=False):
        x = as_float_input(inputs, self.dtype, "inputs")
        keep = self.compute_mask(x)[..., None]
        return np.where(keep, x, 0).astype(x.dtype), keep

    def backward(self, cache, d_y):
        return d_y * cache


class RepeatVector(KerasLayer):
    """Keras's ``RepeatVector(n)``: x (B, F) -> (B, n, F)."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive integer, got {n!r}")
        self.n = int(n)
        self.built = True

    def forward(self, inputs, *, training=False):
        x = as_float_input(inputs, self.dtype, "inputs")
        if x.ndim != 2:
            raise ValueError(f"inputs: RepeatVector expects a 2-D array (batch, features), got "
                             f"shape {x.shape}")
        return np.repeat(x[:, None, :], self.n, axis=1), None

    def backward(self, cache, d_y):
        return np.asarray(d_y).sum(axis=1)


class Concatenate(KerasLayer):
    """Keras's ``Concatenate(axis=-1)``: a list of arrays -> one array joined along ``axis``."""

    supports_masking = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis
        self.built = True

    def forward(self, inputs, *, mask=None, training=False):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError("inputs: Concatenate takes a list of at least 2 arrays")
        arrays = [np.asarray(a) for a in inputs]
        try:
            out = np.concatenate(arrays, axis=self.axis)
        except ValueError:
            raise ValueError(f"inputs: cannot concatenate shapes {[a.shape for a in arrays]} along "
                             f"axis {self.axis}: every other axis must match") from None
        return out, [a.shape[self.axis] for a in arrays]

    def backward(self, cache, d_y):
        return np.split(d_y, np.cumsum(cache)[:-1], axis=self.axis)

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        masks = []
        for x, m in zip(inputs, mask):
            x = np.asarray(x)
            if m is None:
                m = np.ones(x.shape, bool)
            elif m.ndim < x.ndim:
                m = np.broadcast_to(np.asarray(m)[..., None], x.shape)
            masks.append(m)
        return np.any(np.concatenate(masks, axis=self.axis), axis=-1)


Layer = KerasLayer   # keras.layers.Layer: the base class of every layer here
