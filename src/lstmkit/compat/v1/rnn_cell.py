"""TF1's RNN cells (``tf.nn.rnn_cell``), eager: arrays in, arrays out.

A cell is one step: ``output, new_state = cell(inputs, state)`` with inputs (B, I). Its variables have
TF1's names, shapes and gate order and are created at the first call (or ``cell.build((None, I))``)::

    BasicLSTMCell / LSTMCell   kernel (I + H, 4U)  rows [x; h], gate blocks i, j, f, o   bias (4U,)
                               LSTMCell only: w_f_diag, w_i_diag, w_o_diag (U,)  projection/kernel (U, P)
    GRUCell                    gates/kernel (I + U, 2U) blocks r, u   gates/bias (2U,)  (initially 1)
                               candidate/kernel (I + U, U)   candidate/bias (U,)
    BasicRNNCell               kernel (I + U, U)   bias (U,)

H is the size of h: U, or P = ``num_proj``. An LSTM's state is ``LSTMStateTuple(c, h)`` — c FIRST — or,
with ``state_is_tuple=False``, one array ``[c, h]`` concatenated (B, U + H). ``forget_bias`` (1.0) is
added to the forget gate at every step; it is not stored in ``bias``.

``cell.variables`` is a dict of these arrays by TF1 name (relative to the cell's scope);
``get_weights()``/``set_weights()`` use TF1's order, and ``set_weights`` also takes a dict keyed by TF1
names (``"rnn/basic_lstm_cell/kernel:0"`` works), which builds an unbuilt cell from the shapes.

The math is lstmkit's kernels, in Keras's layout: the TF1 variables are converted at the boundary.
"""
import collections

import numpy as np

from ... import layouts
from ...kernels import activations, gru_forward, lstm_forward, rnn_forward
from ...kernels.lstm_cell import lstm_cell_forward
from . import init_ops
from . import random as _random


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """An LSTM's state as TF1 orders it: ``c`` (cell state) first, then ``h`` (hidden state, the
    output). Keras's order is the opposite, ``[h, c]``: read the fields by name."""
    __slots__ = ()

    @property
    def dtype(self):
        return self.c.dtype


def _tf1_to_canonical(kind, variables, input_size, forget_bias=0.0):
    """TF1 cell variables -> Keras's canonical layout (the kernels' layout), via ``layouts.convert``.

    LSTM: kernel (I+H, 4U) blocks i, j, f, o -> kernel (I, 4U), recurrent_kernel (H, 4U), blocks
    i, f, g(=j), o, with ``forget_bias`` folded into the f block of ``bias``. GRU: gates r, u and the
    candidate -> blocks z(=u), r, h, reset before the matmul (Keras ``reset_after=False``).
    Peepholes and the projection are the same in both layouts.
    """
    if kind == "gru":
        return layouts.convert(variables, "tf1", "keras", cell="gru")
    kernel, bias = variables["kernel"], variables["bias"]
    U = bias.shape[0] // (4 if kind == "lstm" else 1)
    options = {"forget_bias": forget_bias} if kind == "lstm" else {}
    H = kernel.shape[0] - input_size
    if H == U:
        out = layouts.convert({"kernel": kernel, "bias": bias}, "tf1", "keras", cell=kind, **options)
    else:
        # A projection makes h P wide, but convert reads the last U rows of the kernel as h's: hand
        # it all I + P rows as the input part, with U rows of zeros for h, and split at I here.
        padded = np.concatenate([kernel, np.zeros((U, kernel.shape[1]), kernel.dtype)])
        out = layouts.convert({"kernel": padded, "bias": bias}, "tf1", "keras", cell=kind, **options)
        out["kernel"], out["recurrent_kernel"] = out["kernel"][:input_size], out["kernel"][input_size:]
    if "w_i_diag" in variables:
        out["peepholes"] = (variables["w_i_diag"], variables["w_f_diag"], variables["w_o_diag"])
    if "projection/kernel" in variables:
        out["projection"] = variables["projection/kernel"]
    return out


def _activation_name(activation, argument="activation"):
    if activation is None:
        return "tanh"
    if isinstance(activation, str):
        activations.get(activation)
        return activation
    for name, fn in activations.FORWARD.items():
        if activation is fn:
            return name
    raise TypeError(f"{argument}: expected a name ({', '.join(activations.NAMES)}) or one of "
                    f"tf.nn.tanh, tf.nn.sigmoid, tf.nn.relu, got {activation!r}")


def _float_dtype(dtype, argument="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype("float32"), np.dtype("float64")):
        raise TypeError(f"{argument}: expected tf.float32 or tf.float64, got {dtype!r}")
    return dt


def _positive_int(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)


def _zeros_like_size(size, batch, dtype):
    if isinstance(size, (int, np.integer)):
        return np.zeros((batch, int(size)), dtype)
    values = [_zeros_like_size(s, batch, dtype) for s in size]
    return type(size)(*values) if hasattr(size, "_fields") else type(size)(values)


def _as_state_array(value, shape, dtype, argument):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{argument}: expected a float array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{argument}: expected shape {shape} (batch, size), got {arr.shape}")
    return arr.astype(dtype, copy=False)


class RNNCell:
    """Base of every cell. A cell of your own subclasses it and defines ``state_size``,
    ``output_size`` and ``call(inputs, state) -> (output, new_state)`` (and ``build`` if it has
    variables); ``dynamic_rnn`` then steps through time calling it."""

    default_name = "rnn_cell"
    # Defaults for a subclass whose __init__ does not call RNNCell.__init__.
    built = False
    input_size = dtype = seed = None

    def __init__(self, trainable=True, name=None, dtype=None, *, reuse=None, seed=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        self.name = name or self.default_name
        self.dtype = None if dtype is None else _float_dtype(dtype)
        self.seed = seed
        self.variables = {}
        self.built = False
        self.input_size = None

    # -- structure ------------------------------------------------------------------------------
    @property
    def state_size(self):
        raise NotImplementedError(f"{type(self).__name__} must define state_size")

    @property
    def output_size(self):
        raise NotImplementedError(f"{type(self).__name__} must define output_size")

    def zero_state(self, batch_size, dtype):
        """Zeros shaped like the state: one (batch_size, n) array per entry of ``state_size``."""
        batch = _positive_int(batch_size, "batch_size")
        return _zeros_like_size(self.state_size, batch, _float_dtype(dtype))

    # -- running --------------------------------------------------------------------------------
    def build(self, inputs_shape):
        self.input_size = int(inputs_shape[-1])
        self.built = True

    def __call__(self, inputs, state, scope=None):
        inputs = np.asarray(inputs)
        if not self.built:
            self.build(inputs.shape)
        return self.call(inputs, state)

    def call(self, inputs, state):
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs, state)")

    # Hooks of dynamic_rnn: a step function with the weights converted once, whether the cell has
    # a whole-sequence fast path (``_run_sequence``), and state validation.
    def _stepper(self):
        return self.__call__

    def _has_fast_path(self):
        return False

    def _parse_state(self, state, batch, dtype, argument):
        return state

    def _resolve_dtype(self, dtype):
        if self.dtype is None:
            self.dtype = dtype
        return self.dtype

    # -- variables ------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of the variables, in TF1's order (``list(cell.variables)`` names them)."""
        return [v.copy() for v in self.variables.values()]

    def set_weights(self, weights):
        """Set the variables from a list in TF1's order or a dict keyed by TF1 names."""
        if isinstance(weights, dict):
            if not self.built:
                self._build_from(weights)
            self._set_from_dict(weights)
            return
        weights = list(weights)
        if not self.built:
            self._build_from(dict(zip(self._names(), weights)) if weights else {})
        names = list(self.variables)
        if len(weights) != len(names):
            raise ValueError(f"weights: {self.name} has {len(names)} variables ({', '.join(names)}), "
                             f"got {len(weights)} arrays")
        for name, w in zip(names, weights):
            self._assign(name, w)

    def _set_from_dict(self, weights):
        names = list(self.variables)
        for key, w in weights.items():
            key = key[:-2] if key.endswith(":0") else key
            matches = [n for n in names if key == n or key.endswith("/" + n)]
            if not matches:
                raise ValueError(f"weights: {key!r} matches no variable of {self.name} "
                               f"({', '.join(names)})")
            self._assign(max(matches, key=len), w)

    def _assign(self, name, value):
        target = self.variables[name]
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"weights: {self.name}/{name} has shape {target.shape}, got {value.shape}")
        target[...] = value

    def _names(self):
        return list(self.variables)

    def _build_from(self, weights):
        raise ValueError(f"{self.name}: call the cell once (or cell.build((None, input_size))) "
                         "before setting its weights")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} state_size={self.state_size}>"


class _LayerCell(RNNCell):
    """A cell with its own variables: ``_specs(I)`` lists (name, shape, initializer, default)."""

    def build(self, inputs_shape):
        I = int(inputs_shape[-1])
        dtype = self._resolve_dtype(np.dtype("float32"))
        rng = _random.generator(self.seed)
        self.variables = {name: init_ops.draw(init, default, shape, dtype, rng, f"{name} initializer")
                          for name, shape, init, default in self._specs(I)}
        self.input_size = I
        self.built = True

    def _names(self):
        return [spec[0] for spec in self._specs(0)]

    def _build_from(self, weights):
        first = self._names()[0]
        value = weights.get(first)
        if value is None:
            value = next((w for k, w in weights.items() if k.split(":")[0].endswith("/" + first)), None)
        if value is None:
            super()._build_from(weights)
        rows0 = self._specs(0)[0][1][0]
        self.build((None, np.shape(value)[0] - rows0))

    def _check_inputs(self, inputs):
        x = np.asarray(inputs)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"inputs: expected a float array, got dtype {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"inputs: a cell takes one step, shape (batch, {self.input_size}); got "
                             f"shape {x.shape} (use tf.nn.dynamic_rnn for a whole sequence)")
        if not self.built:
            self.build(x.shape)          # float32 unless the cell was given a dtype, as TF1's
        if x.shape[1] != self.input_size:
            raise ValueError(f"inputs: {self.name} was built for {self.input_size} features, got "
                             f"{x.shape[1]} (shape {x.shape})")
        return x.astype(self.dtype, copy=False)

    def __call__(self, inputs, state, scope=None):
        return self.call(inputs, state)

    def call(self, inputs, state):
        x = self._check_inputs(inputs)
        state = self._parse_state(state, x.shape[0], self.dtype, "state")
        return self._stepper()(x, state)

    def _has_fast_path(self):
        return True

    def _canonical(self):
        dtype = self.dtype
        w = _tf1_to_canonical(self._kind, self.variables, self.input_size, self._forget_bias())
        return {k: (tuple(a.astype(dtype, copy=False) for a in v) if isinstance(v, tuple)
                    else v.astype(dtype, copy=False)) for k, v in w.items()}

    def _forget_bias(self):
        return 0.0


class _HiddenStateCell(_LayerCell):
    """A cell whose state is h alone (B, U): BasicRNNCell and GRUCell."""

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, reuse=reuse, **kwargs)
        self._num_units = _positive_int(num_units, "num_units")
        self._activation = _activation_name(activation)

    @property
    def state_size(self):
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def _parse_state(self, state, batch, dtype, argument):
        if isinstance(state, (tuple, list)):
            raise TypeError(f"{argument}: {type(self).__name__}'s state is one array (batch, "
                            f"{self._num_units}), got a {type(state).__name__} of "
                            f"{len(state)}")
        return _as_state_array(state, (batch, self._num_units), dtype, argument)

    def _stepper(self):
        w = self._canonical()

        def step(x, h):
            out = self._run(x[:, None, :], None, h, w)[0][:, 0]
            return out, out
        return step

    def _run_sequence(self, x, mask, h0):
        return self._run(x, mask, h0, self._canonical())


class BasicRNNCell(_HiddenStateCell):
    """``h' = act([x, h] @ kernel + bias)``; the output is h'. kernel (I + U, U), bias (U,)."""

    default_name = "basic_rnn_cell"
    _kind = "rnn"

    def _specs(self, I):
        U = self._num_units
        return [("kernel", (I + U, U), None, init_ops.glorot_uniform_initializer()),
                ("bias", (U,), None, init_ops.zeros_initializer())]

    def _run(self, x, mask, h0, w):
        outs, h, _ = rnn_forward(x, mask, h0, w["kernel"], w["recurrent_kernel"], w["bias"],
                                 activation=self._activation)
        return outs, h


class GRUCell(_HiddenStateCell):
    """TF1's GRU: the reset gate applies to h BEFORE the matrix product (Keras ``reset_after=False``)::

        r, u = split(σ([x, h] @ gates/kernel + gates/bias))        blocks r, u (U each)
        c    = act([x, r * h] @ candidate/kernel + candidate/bias)
        h'   = u * h + (1 - u) * c

    gates/bias starts at 1.0 (TF1's default), candidate/bias at 0.
    """

    default_name = "gru_cell"
    _kind = "gru"

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
                 bias_initializer=None, name=None, dtype=None, **kwargs):
        super().__init__(num_units, activation, reuse, name, dtype, **kwargs)
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer

    def _specs(self, I):
        U = self._num_units
        k, b = self._kernel_initializer, self._bias_initializer
        glorot = init_ops.glorot_uniform_initializer()
        return [("gates/kernel", (I + U, 2 * U), k, glorot),
                ("gates/bias", (2 * U,), b, init_ops.ones_initializer()),
                ("candidate/kernel", (I + U, U), k, glorot),
                ("candidate/bias", (U,), b, init_ops.zeros_initializer())]

    def _run(self, x, mask, h0, w):
        outs, h, _ = gru_forward(x, mask, h0, w["kernel"], w["recurrent_kernel"], w["bias"],
                                 reset_after=False, activation=self._activation)
        return outs, h


class LSTMCell(_LayerCell):
    """TF1's full LSTM cell (Hochreiter & Schmidhuber 1997; peepholes and projection: Sak et al. 2014)::

        i, j, f, o = split([x, h] @ kernel + bias)                        blocks of U
        c' = σ(f + forget_bias + w_f_diag * c) * c + σ(i + w_i_diag * c) * act(j)   (peepholes optional)
        c' = clip(c', ±cell_clip)                                         if cell_clip
        m  = σ(o + w_o_diag * c') * act(c')
        h' = clip(m @ projection/kernel, ±proj_clip)                      if num_proj (proj_clip optional)

    Returns ``(h', LSTMStateTuple(c', h'))`` (or ``[c', h']`` concatenated with
    ``state_is_tuple=False``). ``state_size`` is ``LSTMStateTuple(c=U, h=num_proj or U)``.
    """

    default_name = "lstm_cell"
    _kind = "lstm"

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None,
                 num_proj=None, proj_clip=None, num_unit_shards=None, num_proj_shards=None,
                 forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None, name=None,
                 dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, reuse=reuse, **kwargs)
        if num_unit_shards is not None or num_proj_shards is not None:
            raise ValueError("num_unit_shards/num_proj_shards: sharded variables are not supported "
                             "(and deprecated in TF1); leave them None")
        self._num_units = _positive_int(num_units, "num_units")
        self._use_peepholes = bool(use_peepholes)
        self._cell_clip = None if cell_clip is None else float(cell_clip)
        self._initializer = initializer
        self._num_proj = None if num_proj is None else _positive_int(num_proj, "num_proj")
        if proj_clip is not None and num_proj is None:
            raise ValueError("proj_clip: clips the projection, so it needs num_proj")
        self._proj_clip = None if proj_clip is None else float(proj_clip)
        self._forget_bias_value = float(forget_bias)
        self._state_is_tuple = bool(state_is_tuple)
        self._activation = _activation_name(activation)

    @property
    def state_size(self):
        U, H = self._num_units, self._h_size
        return LSTMStateTuple(U, H) if self._state_is_tuple else U + H

    @property
    def output_size(self):
        return self._h_size

    @property
    def _h_size(self):
        return self._num_proj or self._num_units

    def _forget_bias(self):
        return self._forget_bias_value

    def _specs(self, I):
        U, H, init = self._num_units, self._h_size, self._initializer
        glorot = init_ops.glorot_uniform_initializer()
        specs = [("kernel", (I + H, 4 * U), init, glorot),
                 ("bias", (4 * U,), None, init_ops.zeros_initializer())]
        if self._use_peepholes:
            specs += [(f"w_{g}_diag", (U,), init, glorot) for g in "fio"]
        if self._num_proj is not None:
            specs.append(("projection/kernel", (U, H), init, glorot))
        return specs

    def _has_fast_path(self):
        return not (self._use_peepholes or self._cell_clip is not None or self._proj_clip is not None)

    # -- state ----------------------------------------------------------------------------------
    def _parse_state(self, state, batch, dtype, argument):
        """(c, h) of a state in the cell's format, validated; returned in that format."""
        U, H = self._num_units, self._h_size
        if not self._state_is_tuple:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{argument}: this cell has state_is_tuple=False, so its state is one "
                                f"array [c, h] concatenated, shape (batch, {U + H}); got a "
                                f"{type(state).__name__}")
            return _as_state_array(state, (batch, U + H), dtype, argument)
        if isinstance(state, tuple) and hasattr(state, "c") and hasattr(state, "h"):
            c, h = state.c, state.h          # LSTMStateTuple, or lstmkit's LSTMState(h, c): by name
        elif isinstance(state, (tuple, list)) and len(state) == 2:
            c, h = state                      # TF1's order
        else:
            shape = np.shape(state) if not isinstance(state, (tuple, list)) else len(state)
            raise TypeError(f"{argument}: expected LSTMStateTuple(c, h) with c (batch, {U}) and h "
                            f"(batch, {H}), got {type(state).__name__} {shape}; a [c, h] "
                            f"concatenation needs state_is_tuple=False")
        c_shape, h_shape = np.shape(c), np.shape(h)
        if c_shape == (batch, H) and h_shape == (batch, U) and U != H:
            raise ValueError(f"{argument}: c has shape {c_shape} and h {h_shape}: they look swapped. "
                             f"TF1 orders an LSTM state (c, h), c first (Keras orders [h, c])")
        return LSTMStateTuple(_as_state_array(c, (batch, U), dtype, f"{argument}.c"),
                              _as_state_array(h, (batch, H), dtype, f"{argument}.h"))

    def _split(self, state):
        if self._state_is_tuple:
            return state.c, state.h
        U = self._num_units
        return state[:, :U], state[:, U:]

    def _join(self, c, h):
        if self._state_is_tuple:
            return LSTMStateTuple(c, h)
        return np.concatenate([c, h], axis=1)

    # -- running --------------------------------------------------------------------------------
    def _stepper(self):
        w = self._canonical()
        options = dict(peepholes=w.get("peepholes"), cell_clip=self._cell_clip,
                       projection=w.get("projection"), proj_clip=self._proj_clip,
                       activation=self._activation)

        def step(x, state):
            c, h = self._split(state)
            h_new, c_new = lstm_cell_forward(x, h, c, w["kernel"], w["recurrent_kernel"], w["bias"],
                                             **options)
            return h_new, self._join(c_new, h_new)
        return step

    def _run_sequence(self, x, mask, state):
        w = self._canonical()
        c0, h0 = self._split(state)
        outs, h, c, _ = lstm_forward(x, mask, h0, c0, w["kernel"], w["recurrent_kernel"], w["bias"],
                                     masked_output_mode="zero", activation=self._activation,
                                     projection=w.get("projection"), inference=True)
        return outs, self._join(c, h)


class BasicLSTMCell(LSTMCell):
    """TF1's basic LSTM: :class:`LSTMCell` without peepholes, clipping or projection::

        i, j, f, o = split([x, h] @ kernel + bias)      kernel (I + U, 4U), bias (4U,)
        c' = c * σ(f + forget_bias) + σ(i) * act(j)
        h' = act(c') * σ(o)

    Example:
        >>> import numpy as np, lstmkit.compat.v1 as tf
        >>> cell = tf.nn.rnn_cell.BasicLSTMCell(num_units=10)
        >>> cell.state_size
        LSTMStateTuple(c=10, h=10)
        >>> out, state = cell(np.ones((32, 50), np.float32), cell.zero_state(32, tf.float32))
        >>> out.shape, state.c.shape, cell.variables["kernel"].shape
        ((32, 10), (32, 10), (60, 40))
    """

    default_name = "basic_lstm_cell"

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None,
                 name=None, dtype=None, **kwargs):
        super().__init__(num_units, forget_bias=forget_bias, state_is_tuple=state_is_tuple,
                         activation=activation, reuse=reuse, name=name, dtype=dtype, **kwargs)


class MultiRNNCell(RNNCell):
    """Cells stacked: cell k reads cell k-1's output. The state is a tuple of the cells' states.

    Variables are named ``cell_k/<cell name>/<variable>`` (``cell_0/basic_lstm_cell/kernel``).
    """

    default_name = "multi_rnn_cell"

    def __init__(self, cells, state_is_tuple=True, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        cells = list(cells)
        if not cells:
            raise ValueError("cells: expected a non-empty list of cells")
        for k, cell in enumerate(cells):
            if not callable(cell) or not hasattr(cell, "state_size"):
                raise TypeError(f"cells[{k}]: expected an RNN cell, got {type(cell).__name__}")
        if not state_is_tuple:
            raise ValueError("state_is_tuple=False: concatenated MultiRNNCell states are deprecated "
                             "in TF1 and not supported; use the default state_is_tuple=True")
        self._cells = cells

    @property
    def state_size(self):
        return tuple(cell.state_size for cell in self._cells)

    @property
    def output_size(self):
        return self._cells[-1].output_size

    def zero_state(self, batch_size, dtype):
        return tuple(cell.zero_state(batch_size, dtype) for cell in self._cells)

    @property
    def variables(self):
        return {f"cell_{k}/{getattr(cell, 'name', 'cell')}/{name}": value
                for k, cell in enumerate(self._cells)
                for name, value in getattr(cell, "variables", {}).items()}

    @variables.setter
    def variables(self, value):
        pass   # the cells own the variables

    @property
    def built(self):
        return all(getattr(cell, "built", True) for cell in self._cells)

    @built.setter
    def built(self, value):
        pass

    def build(self, inputs_shape):
        size = int(inputs_shape[-1])
        for cell in self._cells:
            if not getattr(cell, "built", True):
                cell.build((None, size))
            size = cell.output_size
        self.input_size = int(inputs_shape[-1])

    def _resolve_dtype(self, dtype):
        for cell in self._cells:
            if hasattr(cell, "_resolve_dtype"):
                cell._resolve_dtype(dtype)
        return dtype

    def _parse_state(self, state, batch, dtype, argument):
        n = len(self._cells)
        if not isinstance(state, (tuple, list)) or len(state) != n:
            raise TypeError(f"{argument}: MultiRNNCell of {n} cells expects a tuple of {n} states, "
                            f"got {type(state).__name__}")
        return tuple(cell._parse_state(s, batch, dtype, f"{argument}[{k}]")
                     if hasattr(cell, "_parse_state") else s
                     for k, (cell, s) in enumerate(zip(self._cells, state)))

    def call(self, inputs, state):
        n = len(self._cells)
        if not isinstance(state, (tuple, list)) or len(state) != n:
            raise TypeError(f"state: MultiRNNCell of {n} cells expects a tuple of {n} states, "
                            f"got {type(state).__name__}")
        return self._step_with([cell.__call__ for cell in self._cells], inputs, state)

    def _stepper(self):
        steps = [cell._stepper() if hasattr(cell, "_stepper") else cell for cell in self._cells]
        return lambda x, state: self._step_with(steps, x, state)

    @staticmethod
    def _step_with(steps, x, state):
        new_states = []
        for step, s in zip(steps, state):
            x, s = step(x, s)
            new_states.append(s)
        return x, tuple(new_states)

    def _has_fast_path(self):
        return all(getattr(cell, "_has_fast_path", lambda: False)() for cell in self._cells)

    def _run_sequence(self, x, mask, state):
        # Layer by layer equals step by step: past a sequence's length the state is carried and
        # the output zeroed, so the padded steps that feed the next layer change nothing.
        finals = []
        for cell, s in zip(self._cells, state):
            x, s = cell._run_sequence(x, mask, s)
            finals.append(s)
        return x, tuple(finals)

    def get_weights(self):
        return [w for cell in self._cells for w in cell.get_weights()]

    def set_weights(self, weights):
        if isinstance(weights, dict):
            for k, cell in enumerate(self._cells):
                prefix = f"cell_{k}/"
                mine = {key.split(prefix, 1)[1]: w for key, w in weights.items() if prefix in key}
                if mine:
                    cell.set_weights(mine)
            return
        weights = list(weights)
        for cell in self._cells:
            n = len(cell.get_weights()) if cell.built else len(cell._names())
            cell.set_weights(weights[:n])
            weights = weights[n:]
        if weights:
            raise ValueError(f"weights: {len(weights)} arrays left over after filling every cell")


__all__ = ["RNNCell", "LSTMStateTuple", "BasicRNNCell", "GRUCell", "LSTMCell", "BasicLSTMCell",
           "MultiRNNCell"]
