"""LSTM, GRU and SimpleRNN layers, stacked and bidirectional, with named results.

Calling a recurrent layer returns a :class:`RecurrentResult`::

    res = lstmkit.LSTM(64)(x, lengths=lengths)      # x (B, T, I), lengths (B,) ints
    res.outputs   # (B, T, 64): h at every step, ZERO past each sequence's length
    res.h, res.c  # (B, 64): the state at each sequence's LAST VALID step (not at step T-1)
    res.state     # LSTMState(h, c): pass it as another layer's initial_state
    outputs, state = res

For ``num_layers=L > 1`` the state arrays are stacked layer-major, (L, B, U), like PyTorch's ``h_n``,
and ``res.outputs`` are the top layer's. A GRU or SimpleRNN state is ``HiddenState(h)``: it has no c.
An LSTM with ``proj_size=P > 0`` outputs and carries a projected h of P features (c keeps U).
"""
from typing import NamedTuple

import numpy as np

from .. import kernels
from ..kernels import activations
from ..kernels.sequence import check_mode
from .base import Layer, as_float_input, check_finite


class LSTMState(NamedTuple):
    """The state an LSTM carries: ``h`` (hidden, also the output) and ``c`` (cell), named so the
    order never matters. Keras's list is ``[h, c]``; TF1's ``LSTMStateTuple`` is ``(c, h)``."""
    h: np.ndarray
    c: np.ndarray


class HiddenState(NamedTuple):
    """The state a GRU or simple RNN carries: ``h`` alone (equal to the last valid output)."""
    h: np.ndarray


class RecurrentResult:
    """What a recurrent layer returns: ``outputs`` and the final ``state``, plus ``h`` and ``c``."""

    __slots__ = ("outputs", "state")

    def __init__(self, outputs, state):
        self.outputs = outputs
        self.state = state

    def __iter__(self):
        yield self.outputs
        yield self.state

    @property
    def h(self):
        return self.state.h

    @property
    def c(self):
        if not hasattr(self.state, "c"):
            raise AttributeError("this layer's state is h only (GRU and SimpleRNN have no cell state c)")
        return self.state.c

    def __repr__(self):
        fields = ", ".join(f"{k}={np.shape(v)}" for k, v in self.state._asdict().items())
        return (f"RecurrentResult(outputs={np.shape(self.outputs)}, "
                f"state={type(self.state).__name__}({fields}))")


class RecurrentGrads(NamedTuple):
    """What ``backward`` of a recurrent layer returns: gradients of its inputs."""
    inputs: np.ndarray
    initial_state: tuple


def lengths_to_mask(lengths, batch, steps, argument="lengths"):
    """Validate ``lengths`` (B,) and turn it into a (B, T) boolean mask, True at valid steps.
    ``argument`` is the name errors use (TF1's ``sequence_length``)."""
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{argument}: expected integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(f"{argument}: expected shape ({batch},) (one length per sequence of the "
                         f"batch), got {arr.shape}")
    if batch and (arr.min() < 0 or arr.max() > steps):
        raise ValueError(f"{argument}: expected values in [0, {steps}] (the inputs have {steps} "
                         f"time steps), got min {arr.min()} and max {arr.max()}")
    return np.arange(steps)[None, :] < arr[:, None]


def check_mask(mask, batch, steps):
    m = np.asarray(mask)
    if m.shape != (batch, steps):
        raise ValueError(f"mask: expected shape ({batch}, {steps}), got {m.shape}")
    return m.astype(bool, copy=False)


def check_result_grad(grad, out_shape, state_shapes, fields):
    """Validate ``grad = (d_outputs, d_state)`` against the shapes of the forward's result, one shape
    per state field (the compiled loops would read past a short array instead of failing)."""
    if not isinstance(grad, (tuple, list, RecurrentResult)) or len(tuple(grad)) != 2:
        raise TypeError(f"grad: expected (d_outputs, d_state), got {type(grad).__name__}")
    d_out, d_state = grad
    if d_out is not None and np.shape(d_out) != out_shape:
        raise ValueError(f"grad: d_outputs must have the outputs' shape {out_shape}, got "
                         f"{np.shape(d_out)}")
    if d_state is not None:
        if all(hasattr(d_state, f) for f in fields):
            values = [getattr(d_state, f) for f in fields]
        elif isinstance(d_state, (tuple, list)) and len(d_state) == len(fields):
            values = list(d_state)
        else:
            raise TypeError(f"grad: d_state must be a state ({', '.join(fields)}) or None, got "
                            f"{type(d_state).__name__}")
        for f, v, shape in zip(fields, values, state_shapes):
            if v is not None and np.shape(v) != shape:
                raise ValueError(f"grad: d_state.{f} must have the state's shape {shape}, got "
                                 f"{np.shape(v)}")
    return d_out, d_state


class _Recurrent(Layer):
    """Shared machinery of LSTM, GRU and SimpleRNN: building, validation, stacking, dropout."""

    GATES = 1
    State = HiddenState
    BIAS_INITIALIZER = "zeros"
    proj_size = 0      # LSTM only: the size of the projected h (0: no projection)

    def __init__(self, units, *, num_layers=1, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, input_dropout=0.0, recurrent_dropout=0.0,
                 reverse=False, masked_output="zero", name=None, dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units: expected a positive integer, got {units!r}")
        if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise ValueError(f"num_layers: expected a positive integer, got {num_layers!r}")
        for arg, rate in (("dropout", dropout), ("input_dropout", input_dropout),
                          ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(rate) < 1.0:
                raise ValueError(f"{arg}: expected a rate in [0, 1), got {rate!r}")
        activations.get(activation)
        check_mode(masked_output)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.reverse = bool(reverse)
        self.masked_output = masked_output
        self.input_size = None
        self.directions = 1        # 2 when a Bidirectional wrapper feeds it concatenated outputs

    @property
    def output_size(self):
        """The size of h and of each step's output: ``proj_size`` if the LSTM projects, else ``units``."""
        return self.proj_size or self.units

    # -- parameters ---------------------------------------------------------------------------
    def _key(self, name, layer):
        return name if self.num_layers == 1 else f"{name}_l{layer}"

    def _bias_shape(self):
        return (self.GATES * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def build(self, input_shape):
        self.input_size = int(input_shape[-1])
        G, U, H = self.GATES, self.units, self.output_size
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else H * self.directions
            self.add_weight(self._key("kernel", k), (fan_in, G * U), self.kernel_initializer,
                            "kernel_initializer")
            self.add_weight(self._key("recurrent_kernel", k), (H, G * U),
                            self.recurrent_initializer, "recurrent_initializer")
            if self.use_bias:
                self.add_weight(self._key("bias", k), self._bias_shape(), self._bias_init(),
                                "bias_initializer")
            if self.proj_size:
                self.add_weight(self._key("projection_kernel", k), (U, H), self.kernel_initializer,
                                "kernel_initializer")
        self.built = True

    def _weights(self, k):
        p = self.params
        return (p[self._key("kernel", k)], p[self._key("recurrent_kernel", k)],
                p.get(self._key("bias", k)))

    def _accumulate(self, k, g):
        for name in ("kernel", "recurrent_kernel", "bias"):
            if name != "bias" or self.use_bias:
                self.accumulate(self._key(name, k), g[name])
        if self.proj_size:
            self.accumulate(self._key("projection_kernel", k), g["projection"])

    # -- validation -----------------------------------------------------------------------------
    def _prepare(self, x, lengths, mask, initial_state, check):
        x = as_float_input(x, self.dtype, "x")
        if x.ndim != 3:
            raise ValueError(f"x: expected a 3-D array (batch, time, features), got shape {x.shape}")
        B, T, F = x.shape
        if not self.built:
            self.build(x.shape)
        elif F != self.input_size:
            raise ValueError(f"x: layer {self.name!r} was built for {self.input_size} features, "
                             f"got {F} (shape {x.shape})")
        if check:
            check_finite(x, "x")
        if lengths is not None and mask is not None:
            raise ValueError("lengths and mask: pass one of them, not both")
        if lengths is not None:
            mask = lengths_to_mask(lengths, B, T)
        elif mask is not None:
            mask = check_mask(mask, B, T)
        states = self._parse_state(initial_state, B)
        if check and states is not None:
            for k, st in enumerate(states):
                for field, arr in zip(self.State._fields, st):
                    check_finite(arr, f"initial_state.{field}")
        return x, mask, states

    def _parse_state(self, initial_state, batch):
        """Per-layer tuples of (B, U) arrays, or None for zeros."""
        if initial_state is None:
            return None
        fields = self.State._fields
        kind = type(self).__name__
        if isinstance(initial_state, dict):
            missing = [f for f in fields if f not in initial_state]
            if missing:
                raise TypeError(f"initial_state: a {kind} state needs keys {fields}, missing {missing}")
            values = [initial_state[f] for f in fields]
        elif all(hasattr(initial_state, f) for f in fields):
            values = [getattr(initial_state, f) for f in fields]
        elif len(fields) == 1 and isinstance(initial_state, np.ndarray):
            values = [initial_state]
        elif isinstance(initial_state, (list, tuple)):
            raise TypeError(
                f"initial_state: a bare {type(initial_state).__name__} is ambiguous (Keras orders an "
                f"LSTM state [h, c], TF1 orders it (c, h)); pass lstmkit.{self.State.__name__}"
                f"({', '.join(f + '=...' for f in fields)})")
        else:
            raise TypeError(f"initial_state: expected lstmkit.{self.State.__name__}, got "
                            f"{type(initial_state).__name__}")
        L = self.num_layers
        arrays = []
        for f, v in zip(fields, values):
            size = self.output_size if f == "h" else self.units   # c is never projected
            want = (batch, size) if L == 1 else (L, batch, size)
            v = as_float_input(v, self.dtype, f"initial_state.{f}")
            if v.shape != want:
                hint = ""
                if v.ndim == 2 and v.shape[0] != batch and v.shape[1] == batch:
                    hint = " (is it transposed?)"
                raise ValueError(f"initial_state.{f}: expected shape {want} "
                                 f"({'' if L == 1 else 'layers, '}batch, "
                                 f"{'proj_size' if size != self.units else 'units'}), got {v.shape}{hint}")
            arrays.append(v if L > 1 else v[None])
        return [tuple(a[k] for a in arrays) for k in range(L)]

    # -- running --------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """The result of an inference pass (nothing kept for a backward pass)."""
        return self.forward(*args, training=False, inference=True, **kwargs)[0]

    def _run_layer(self, k, x, mask, state0, training, reverse, inference=False):
        """One layer over the sequence. Returns (outputs, state tuple, cache)."""
        rmask = None
        if training and self.recurrent_dropout:
            rmask = kernels.dropout_mask(self.rng, (x.shape[0], self.output_size),
                                         self.recurrent_dropout, self.dtype)
        outs, *state, cache = self._kernel_forward(x, mask, state0, *self._weights(k),
                                                   reverse=reverse, rmask=rmask, inference=inference)
        return outs, tuple(state), cache

    def forward(self, x, lengths=None, initial_state=None, *, mask=None, training=False,
                check_finite=False, inference=False):
        """Run the layer. Returns ``(RecurrentResult, cache)``.

        x: (B, T, I) floats (integers are cast to the layer's dtype, as Keras does).
        lengths: (B,) integers in [0, T], or None (every sequence has length T).
        initial_state: a state like ``res.state`` of a layer of the same configuration, or None.
        mask: (B, T) booleans, an alternative to ``lengths`` for arbitrary masks.
        inference: keep nothing for ``backward`` (less memory and time); ``layer(x)`` does.
        """
        x, mask, states = self._prepare(x, lengths, mask, initial_state, check_finite)
        caches, drops = [], []
        inp, finals = x, []
        for k in range(self.num_layers):
            rate = self.input_dropout if k == 0 else self.dropout
            drop = None
            if training and rate:
                drop = kernels.dropout_mask(self.rng, (inp.shape[0], 1, inp.shape[2]) if k == 0
                                            else inp.shape, rate, self.dtype)
                inp = inp * drop
            outs, st, cache = self._run_layer(k, inp, mask, None if states is None else states[k],
                                              training, self.reverse, inference)
            caches.append(cache)
            drops.append(drop)
            finals.append(st)
            inp = outs
        state = self._stack_state(finals)
        return RecurrentResult(inp, state), (caches, drops, (inp.shape, [np.shape(v) for v in state]))

    def _stack_state(self, finals):
        if self.num_layers == 1:
            return self.State(*finals[0])
        return self.State(*(np.stack(arrs) for arrs in zip(*finals)))

    def _split_state_grad(self, d_state, batch):
        """Per-layer tuples of state gradients (None for zero)."""
        L = self.num_layers
        fields = self.State._fields
        if d_state is None:
            return [tuple(None for _ in fields)] * L
        vals = [getattr(d_state, f) if hasattr(d_state, f) else d_state[i]
                for i, f in enumerate(fields)]
        return [tuple(None if v is None else (v if L == 1 else v[k]) for v in vals)
                for k in range(L)]

    def backward(self, cache, grad):
        """Back-propagate. ``grad`` is ``(d_outputs, d_state)`` shaped like the result (a
        RecurrentResult of gradients works); any part may be None. Gradients of the parameters are
        added to ``self.grads``; returns ``RecurrentGrads(inputs, initial_state)``."""
        caches, drops, shapes = cache
        d_out, d_state = check_result_grad(grad, *shapes, self.State._fields)
        d_states = self._split_state_grad(d_state, None)
        d0 = [None] * self.num_layers
        for k in range(self.num_layers - 1, -1, -1):
            g = self._kernel_backward(caches[k], d_out, d_states[k])
            self._accumulate(k, g)
            d0[k] = tuple(g[f + "0"] for f in self.State._fields)
            d_out = g["x"]
            if drops[k] is not None:
                d_out = d_out * drops[k]
        return RecurrentGrads(d_out, self._stack_state(d0))

    def get_config(self):
        return {"units": self.units, "num_layers": self.num_layers, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "recurrent_initializer": self.recurrent_initializer,
                "bias_initializer": self.bias_initializer, "dropout": self.dropout,
                "input_dropout": self.input_dropout, "recurrent_dropout": self.recurrent_dropout,
                "reverse": self.reverse, "masked_output": self.masked_output,
                "dtype": self.dtype.name}


class LSTM(_Recurrent):
    """Long short-term memory layer (Hochreiter & Schmidhuber 1997), Keras's layout and defaults.

    Weights per layer: ``kernel (I, 4U)``, ``recurrent_kernel (U, 4U)``, ``bias (4U,)``, gate blocks
    i, f, g, o::

        i = σ(x W_i + h R_i + b_i)    f = σ(x W_f + h R_f + b_f)
        g = tanh(x W_g + h R_g + b_g) o = σ(x W_o + h R_o + b_o)
        c' = f * c + i * g            h' = o * tanh(c')

    With ``proj_size=P > 0`` (PyTorch's ``proj_size``, TF1's ``num_proj``; Sak et al. 2014) h is
    projected, ``h' = (o * tanh(c')) @ projection_kernel``, and the weights per layer are
    ``kernel (I, 4U)``, ``recurrent_kernel (P, 4U)``, ``bias (4U,)``, ``projection_kernel (U, P)``
    (PyTorch's ``weight_hr`` (P, U) transposed), in this order in ``get_weights()``. Outputs and h are
    (B, T, P) and (B, P), c stays (B, U); stacked layers k > 0 read P (2P bidirectional) features.

    Args:
        units: U, the size of c (and of h without a projection).
        proj_size: P, the size of the projected h and outputs, 0 <= P < units; 0: no projection.
        num_layers: stacked layers; layer k > 0 reads layer k-1's outputs.
        dropout: between stacked layers, on the outputs of every layer but the last (PyTorch's).
        input_dropout: on the inputs, one mask for all steps (Keras's ``dropout``).
        recurrent_dropout: on h before the recurrent product, one mask for all steps (Keras's).
        reverse: run each sequence from its last valid step to its first; outputs stay aligned
            with the inputs (the backward half of a bidirectional layer).
        masked_output: what a padded step outputs: ``"zero"`` (PyTorch, TF1) or ``"repeat"`` the
            last valid output (Keras).
        unit_forget_bias: add 1 to the forget gate's bias at initialization (Keras's default).

    Example:
        >>> import numpy as np, lstmkit
        >>> res = lstmkit.LSTM(4, seed=0)(np.ones((2, 3, 5)), lengths=[3, 1])
        >>> res.outputs.shape, res.h.shape, res.c.shape
        ((2, 3, 4), (2, 4), (2, 4))
        >>> bool(np.allclose(res.h[1], res.outputs[1, 0]))   # h is taken at the last VALID step
        True
        >>> res = lstmkit.LSTM(4, proj_size=2, seed=0)(np.ones((2, 3, 5)))
        >>> res.outputs.shape, res.h.shape, res.c.shape
        ((2, 3, 2), (2, 2), (2, 4))
    """

    GATES = 4
    State = LSTMState

    def __init__(self, units, *, proj_size=0, recurrent_activation="sigmoid", unit_forget_bias=True,
                 **kwargs):
        super().__init__(units, **kwargs)
        if (not isinstance(proj_size, (int, np.integer)) or isinstance(proj_size, bool)
                or not 0 <= proj_size < self.units):
            raise ValueError(f"proj_size: expected an integer in [0, units={self.units}) (0: no "
                             f"projection), got {proj_size!r}")
        activations.get(recurrent_activation)
        self.proj_size = int(proj_size)
        self.recurrent_activation = recurrent_activation
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base = self.bias_initializer
        units = self.units

        def init(shape, rng, dtype):
            from .. import initializers
            b = np.asarray(initializers.get(base, "bias_initializer")(shape, rng, dtype))
            b[units:2 * units] = 1.0
            return b
        return init

    def _weights(self, k):
        w = super()._weights(k)
        return w + (self.params[self._key("projection_kernel", k)],) if self.proj_size else w

    def _kernel_forward(self, x, mask, state0, kernel, rk, bias, projection=None, *, reverse, rmask,
                        inference):
        h0, c0 = (None, None) if state0 is None else state0
        opts = dict(reverse=reverse, masked_output_mode=self.masked_output, activation=self.activation,
                    recurrent_activation=self.recurrent_activation, recurrent_dropout_mask=rmask,
                    inference=inference)
        return kernels.lstm_forward(x, mask, h0, c0, kernel, rk, bias, projection=projection, **opts)

    def _kernel_backward(self, cache, d_out, d_state):
        return kernels.lstm_backward(cache, d_out, *d_state, weight_grads=not self.defers_grads)

    def get_config(self):
        return {**super().get_config(), "proj_size": self.proj_size,
                "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al. 2014), Keras's layout and defaults.

    Weights per layer: ``kernel (I, 3U)``, ``recurrent_kernel (U, 3U)``, gate blocks z, r, h, and
    ``bias (2, 3U)`` (input and recurrent rows) when ``reset_after=True`` (Keras's default, and
    PyTorch's formula) or ``bias (3U,)`` when False (TF1's GRUCell)::

        z = σ(x W_z + h R_z + b_z)    r = σ(x W_r + h R_r + b_r)
        n = tanh(x W_h + r * (h R_h + b_rh))     reset_after=True
        n = tanh(x W_h + (r * h) R_h)            reset_after=False
        h' = z * h + (1 - z) * n

    Arguments as :class:`LSTM`; the state is ``HiddenState(h)``.
    """

    GATES = 3

    def __init__(self, units, *, recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, **kwargs)
        activations.get(recurrent_activation)
        self.recurrent_activation = recurrent_activation
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _kernel_forward(self, x, mask, state0, kernel, rk, bias, reverse, rmask, inference):
        h0 = None if state0 is None else state0[0]
        return kernels.gru_forward(x, mask, h0, kernel, rk, bias, reset_after=self.reset_after,
                                   reverse=reverse, masked_output_mode=self.masked_output,
                                   activation=self.activation,
                                   recurrent_activation=self.recurrent_activation,
                                   recurrent_dropout_mask=rmask, inference=inference)

    def _kernel_backward(self, cache, d_out, d_state):
        return kernels.gru_backward(cache, d_out, d_state[0])

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "reset_after": self.reset_after}


class SimpleRNN(_Recurrent):
    """Fully connected recurrent layer: ``h' = tanh(x W + h R + b)``.

    Weights per layer: ``kernel (I, U)``, ``recurrent_kernel (U, U)``, ``bias (U,)``. Arguments as
    :class:`LSTM`; the state is ``HiddenState(h)``.
    """

    GATES = 1

    def _kernel_forward(self, x, mask, state0, kernel, rk, bias, reverse, rmask, inference):
        h0 = None if state0 is None else state0[0]     # (the NumPy loop keeps its cache regardless)
        return kernels.rnn_forward(x, mask, h0, kernel, rk, bias, reverse=reverse,
                                   masked_output_mode=self.masked_output,
                                   activation=self.activation, recurrent_dropout_mask=rmask)

    def _kernel_backward(self, cache, d_out, d_state):
        return kernels.rnn_backward(cache, d_out, d_state[0], weight_grads=not self.defers_grads)


class BidirectionalResult(RecurrentResult):
    """A bidirectional layer's result: merged ``outputs``, the concatenated ``state`` (h and c of
    both directions side by side, (B, 2U): it can start a decoder of 2U units), and the
    per-direction results ``forward`` and ``backward`` (each with its own outputs, h and c)."""

    __slots__ = ("forward", "backward")

    def __init__(self, outputs, state, forward, backward):
        super().__init__(outputs, state)
        self.forward = forward
        self.backward = backward


MERGE_MODES = ("concat", "sum", "ave", "mul")


class Bidirectional(Layer):
    """Run a recurrent layer in both directions over each sequence.

    The backward direction reads each sequence from its last valid step to its first (reverse
    *within each length*, as PyTorch and TF1's ``bidirectional_dynamic_rnn`` do) and its outputs are
    aligned with the input positions. With ``num_layers > 1`` every layer is bidirectional and the
    next layer reads both directions' outputs concatenated (PyTorch's stacking).

    Example:
        >>> import numpy as np, lstmkit
        >>> res = lstmkit.Bidirectional(lstmkit.LSTM(4, seed=0))(np.ones((2, 3, 5)), lengths=[3, 2])
        >>> res.outputs.shape, res.forward.h.shape, res.state.h.shape
        ((2, 3, 8), (2, 4), (2, 8))
    """

    def __init__(self, layer, *, merge_mode="concat", name=None):
        if not isinstance(layer, _Recurrent):
            raise TypeError(f"layer: expected lstmkit.LSTM, GRU or SimpleRNN, got {type(layer).__name__}")
        if layer.built:
            raise ValueError("layer: pass an unbuilt layer (it is built for both directions here)")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode: expected one of {MERGE_MODES}, got {merge_mode!r}")
        if layer.num_layers > 1 and merge_mode != "concat":
            raise ValueError("merge_mode: stacked bidirectional layers concatenate their outputs; "
                             f"got {merge_mode!r} with num_layers={layer.num_layers}")
        super().__init__(name=name or f"bidirectional_{layer.name}", dtype=layer.dtype,
                         seed=layer.seed)
        config = layer.get_config()
        config["reverse"] = not layer.reverse
        seed = None if layer.seed is None else layer.seed + 1
        self.forward_layer = layer
        self.backward_layer = type(layer)(**config, name=f"backward_{layer.name}", seed=seed)
        for sub in (self.forward_layer, self.backward_layer):
            sub.directions = 2
        self.merge_mode = merge_mode
        self.num_layers = layer.num_layers
        self.State = layer.State

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        self.params = {**{f"forward/{k}": v for k, v in self.forward_layer.params.items()},
                       **{f"backward/{k}": v for k, v in self.backward_layer.params.items()}}
        self.grads = {**{f"forward/{k}": v for k, v in self.forward_layer.grads.items()},
                      **{f"backward/{k}": v for k, v in self.backward_layer.grads.items()}}
        self.built = True

    def __call__(self, *args, **kwargs):
        """The result of an inference pass (nothing kept for a backward pass)."""
        return self.forward(*args, training=False, inference=True, **kwargs)[0]

    def forward(self, x, lengths=None, initial_state=None, *, mask=None, training=False,
                check_finite=False, inference=False):
        """``initial_state``: None, or ``(forward_state, backward_state)``, each like ``res.forward.state``.
        Other arguments as :meth:`LSTM.forward`."""
        fw, bw = self.forward_layer, self.backward_layer
        if not self.built:
            x_arr = as_float_input(x, self.dtype, "x")
            if x_arr.ndim != 3:
                raise ValueError(f"x: expected a 3-D array (batch, time, features), got shape {x_arr.shape}")
            self.build(x_arr.shape)
        if initial_state is None:
            s_f = s_b = None
        elif isinstance(initial_state, (list, tuple)) and len(initial_state) == 2 and \
                not isinstance(initial_state, (LSTMState, HiddenState)):
            s_f, s_b = initial_state
        else:
            raise TypeError("initial_state: a Bidirectional layer takes (forward_state, backward_state), "
                            f"each an lstmkit.{self.State.__name__}")
        x, mask, states_f = fw._prepare(x, lengths, mask, s_f, check_finite)
        _, _, states_b = bw._prepare(x, None, None, s_b, False)
        inp = x
        caches, drops, finals_f, finals_b = [], [], [], []
        for k in range(self.num_layers):
            rate = fw.input_dropout if k == 0 else fw.dropout
            drop = None
            if training and rate:
                shape = (inp.shape[0], 1, inp.shape[2]) if k == 0 else inp.shape
                drop = kernels.dropout_mask(self.rng, shape, rate, self.dtype)
                inp = inp * drop
            out_f, st_f, c_f = fw._run_layer(k, inp, mask, None if states_f is None else states_f[k],
                                             training, fw.reverse, inference)
            out_b, st_b, c_b = bw._run_layer(k, inp, mask, None if states_b is None else states_b[k],
                                             training, bw.reverse, inference)
            caches.append((c_f, c_b, out_f, out_b))
            drops.append(drop)
            finals_f.append(st_f)
            finals_b.append(st_b)
            if k < self.num_layers - 1:
                inp = np.concatenate([out_f, out_b], axis=-1)
        merged = self._merge(out_f, out_b)
        state_f, state_b = fw._stack_state(finals_f), bw._stack_state(finals_b)
        state = self.State(*(np.concatenate([a, b], axis=-1) for a, b in zip(state_f, state_b)))
        result = BidirectionalResult(merged, state, RecurrentResult(out_f, state_f),
                                     RecurrentResult(out_b, state_b))
        return result, (caches, drops, (merged.shape, [np.shape(v) for v in state]))

    def _merge(self, a, b):
        if self.merge_mode == "concat":
            return np.concatenate([a, b], axis=-1)
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "ave":
            return (a + b) / 2
        return a * b

    def _unmerge(self, d, out_f, out_b):
        U = self.forward_layer.output_size
        if self.merge_mode == "concat":
            return d[..., :U], d[..., U:]
        if self.merge_mode == "sum":
            return d, d
        if self.merge_mode == "ave":
            return d / 2, d / 2
        return d * out_b, d * out_f

    def backward(self, cache, grad):
        """``grad`` is ``(d_outputs, d_state)`` shaped like the merged result; returns
        ``RecurrentGrads(inputs, (d_forward_state, d_backward_state))``."""
        caches, drops, shapes = cache
        fw, bw = self.forward_layer, self.backward_layer
        H = fw.output_size
        d_out, d_state = check_result_grad(grad, *shapes, self.State._fields)
        split = (None, None)
        if d_state is not None:
            widths = [H if f == "h" else fw.units for f in self.State._fields]
            parts = [None if v is None else (v[..., :n], v[..., n:]) for v, n in zip(d_state, widths)]
            split = tuple(fw.State(*(None if p is None else p[i] for p in parts)) for i in (0, 1))
        ds_f = fw._split_state_grad(split[0], None)
        ds_b = bw._split_state_grad(split[1], None)
        d0_f, d0_b = [None] * self.num_layers, [None] * self.num_layers
        d_f = d_b = None
        for k in range(self.num_layers - 1, -1, -1):
            c_f, c_b, out_f, out_b = caches[k]
            if k == self.num_layers - 1:
                d_f, d_b = (None, None) if d_out is None else self._unmerge(d_out, out_f, out_b)
            g_f = fw._kernel_backward(c_f, d_f, ds_f[k])
            g_b = bw._kernel_backward(c_b, d_b, ds_b[k])
            fw._accumulate(k, g_f)
            bw._accumulate(k, g_b)
            d0_f[k] = tuple(g_f[f + "0"] for f in self.State._fields)
            d0_b[k] = tuple(g_b[f + "0"] for f in self.State._fields)
            d_in = g_f["x"] + g_b["x"]
            if drops[k] is not None:
                d_in = d_in * drops[k]
            if k > 0:
                d_f, d_b = d_in[..., :H], d_in[..., H:]
        return RecurrentGrads(d_in, (fw._stack_state(d0_f), bw._stack_state(d0_b)))

    def zero_grad(self):
        self.forward_layer.zero_grad()
        self.backward_layer.zero_grad()
