"""TensorFlow 1 recurrent variables by name, in and out: a dict, a TF checkpoint, or an ``.npz``.

The names TF1 gives the variables of ``dynamic_rnn`` and friends (``scope`` is ``rnn`` by default)::

    rnn/lstm_cell/kernel  (I+U, 4U) rows [x; h], gates i j f o     rnn/lstm_cell/bias  (4U,)
    rnn/multi_rnn_cell/cell_{k}/lstm_cell/kernel, .../bias         MultiRNNCell, layer k
    bidirectional_rnn/fw/lstm_cell/kernel, bidirectional_rnn/bw/...        bidirectional_dynamic_rnn
    stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/fw/lstm_cell/...    stacked bidirectional
    rnn/gru_cell/gates/kernel (I+U, 2U), gates/bias, candidate/kernel (I+U, U), candidate/bias
    rnn/basic_rnn_cell/kernel (I+U, U), .../bias;  basic_lstm_cell is BasicLSTMCell's name
    rnn/lstm_cell/projection/kernel (U, P)     LSTMCell(num_proj=P): then kernel is (I+P, 4U)

``forget_bias`` (1.0 by default in LSTMCell and BasicLSTMCell) is added at run time and is not in the
checkpoint: :func:`load_tf1` folds it into lstmkit's bias, :func:`save_tf1` takes it out again.
A ``GRUCell`` resets before its matmul: it loads as ``lstmkit.GRU(reset_after=False)``. An
``LSTMCell(num_proj=P)`` loads as ``lstmkit.LSTM(U, proj_size=P)`` (without ``proj_clip``, which the
native layer does not have: pass the variables only if the cell was built without it).

Example::

    layer = lstmkit.interop.load_tf1("model.ckpt")                # needs TensorFlow
    layer = lstmkit.interop.load_tf1({"rnn/lstm_cell/kernel": k, "rnn/lstm_cell/bias": b})
"""
import os
import re

import numpy as np

from .. import layouts
from . import _common

_CELL_NAMES = {"lstm_cell": "lstm", "basic_lstm_cell": "lstm", "gru_cell": "gru",
               "basic_rnn_cell": "rnn"}
_DEFAULT_CELL_NAME = {"lstm": "lstm_cell", "gru": "gru_cell", "rnn": "basic_rnn_cell"}
_VARS = {"lstm": ("kernel", "bias"), "rnn": ("kernel", "bias"),
         "gru": ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")}
_NAME = re.compile(
    r"^(?P<scope>.*?)/?(?:cell_(?P<sk>\d+)/bidirectional_rnn/)?(?:(?P<dir>fw|bw)/)?"
    r"(?:multi_rnn_cell/cell_(?P<k>\d+)/)?(?P<cn>lstm_cell|basic_lstm_cell|gru_cell|basic_rnn_cell)/"
    r"(?P<var>gates/kernel|gates/bias|candidate/kernel|candidate/bias|kernel|bias|w_f_diag|w_i_diag|"
    r"w_o_diag|projection/kernel)$")


def variable_name(scope, cell_name, layer, num_layers, direction, var):
    """The TF1 name of one variable (direction: None, 'fw' or 'bw')."""
    if direction is None:
        mid = "" if num_layers == 1 else f"multi_rnn_cell/cell_{layer}/"
    else:
        mid = f"{direction}/" if num_layers == 1 else f"cell_{layer}/bidirectional_rnn/{direction}/"
    return f"{scope}/{mid}{cell_name}/{var}" if scope else f"{mid}{cell_name}/{var}"


def _default_scope(s):
    if not s.bidirectional:
        return "rnn"
    return "bidirectional_rnn" if s.num_layers == 1 else "stack_bidirectional_rnn"


def save_tf1(layer, path=None, *, scope=None, cell_name=None, forget_bias=1.0):
    """An lstmkit recurrent layer as TF1 variables: a dict name -> NumPy array, also written to
    ``path`` when given (``.npz``, or a TF checkpoint prefix such as ``model.ckpt``: needs TensorFlow).

    scope: the variable scope (default ``rnn``; ``bidirectional_rnn`` or ``stack_bidirectional_rnn``
        for a Bidirectional layer). cell_name: ``lstm_cell`` (LSTMCell, default) or
        ``basic_lstm_cell``. forget_bias: the value the TF1 cell will add at run time.
    """
    layer = _common.native(layer)
    s = _common.structure(layer)
    scope = _default_scope(s) if scope is None else scope.rstrip("/")
    cell_name = cell_name or _DEFAULT_CELL_NAME[s.cell]
    if _CELL_NAMES.get(cell_name) != s.cell:
        raise ValueError(f"cell_name: {cell_name!r} is not a TF1 name for a {s.cell} cell")
    if s.proj_size and cell_name != "lstm_cell":
        raise ValueError(f"cell_name: only TF1's LSTMCell has a projection (num_proj); layer "
                         f"{layer.name!r} has proj_size={s.proj_size}, got cell_name={cell_name!r}")
    if s.activation != "tanh":
        raise ValueError(f"layer: TF1 cells use tanh, this layer uses activation={s.activation!r}")
    out = {}
    for k in range(s.num_layers):
        for direction in (("fw", "bw") if s.bidirectional else (None,)):
            sub = None if direction is None else {"fw": "forward", "bw": "backward"}[direction]
            part = {n: layer.params[layouts.lstmkit_param_key(n, k, s.num_layers, sub)]
                    for n in ("kernel", "recurrent_kernel", "bias", "projection_kernel")
                    if layouts.lstmkit_param_key(n, k, s.num_layers, sub) in layer.params}
            opts = {"forget_bias": forget_bias} if s.cell == "lstm" else {}
            for var, v in layouts.convert(part, "keras", "tf1", s.cell, **opts).items():
                out[variable_name(scope, cell_name, k, s.num_layers, direction, var)] = v
    if path is not None:
        _write(out, path)
    return out


def _write(variables, path):
    if os.fspath(path).endswith(".npz"):
        _common.atomic_write(path, lambda p: np.savez(p, **variables))
        return
    try:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
    except ImportError:
        raise ImportError("path: writing a TF checkpoint needs TensorFlow (pip install tensorflow); "
                          "or pass a .npz path") from None
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        tf_vars = {name: v1.Variable(value, name=name) for name, value in variables.items()}
        saver = v1.train.Saver(var_list=tf_vars)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, os.fspath(path), write_meta_graph=False)


def read_checkpoint(path):
    """Every variable of a TF checkpoint (or an ``.npz``) as a dict name -> NumPy array."""
    name = os.fspath(path)
    if name.endswith(".npz"):
        if _common.sniff(path) != "zip":
            raise ValueError(f"path: {name!r} is not an .npz file")
        _common.zip_names(path)
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    try:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
    except ImportError:
        raise ImportError("path: reading a TF checkpoint needs TensorFlow (pip install tensorflow); "
                          "or pass the variables as a dict or .npz") from None
    try:
        reader = tf.train.load_checkpoint(name)
        names = reader.get_variable_to_shape_map()
        return {k: reader.get_tensor(k) for k in names}
    except Exception as err:
        raise ValueError(f"path: {name!r} is not a readable TF checkpoint (missing, truncated or "
                         f"another format): {type(err).__name__}: {str(err).splitlines()[0]}") from None


def _parse(variables, scope, strict):
    """Group the recurrent variables: returns (scope, cell_name, {(layer, dir): {var: array}}, style)."""
    found, unknown = {}, []
    prefix = None if scope is None else scope.rstrip("/") + "/"
    for raw, value in variables.items():
        name = raw[:-2] if raw.endswith(":0") else raw
        if prefix is not None and not name.startswith(prefix):
            continue
        # Inside a given scope, read the rest only: scope="bidirectional_rnn/fw" is a plain stack.
        m = _NAME.match(name if prefix is None else name[len(prefix):])
        if not m:
            unknown.append(raw)
            continue
        found[name] = (m, value)
    if unknown and strict:
        raise ValueError(f"variables: unexpected {sorted(unknown)} (expected names such as "
                         "rnn/lstm_cell/kernel; pass scope= to read one part of a larger dict)")
    if not found:
        raise ValueError(f"variables: no TF1 recurrent cell variables found{'' if scope is None else f' under scope {scope!r}'}"
                         f" (expected names such as rnn/lstm_cell/kernel); names are {sorted(variables)[:8]}")
    scopes = {m.group("scope") if prefix is None else prefix[:-1] + (
        "/" + m.group("scope") if m.group("scope") else "") for m, _ in found.values()}
    cells = {m.group("cn") for m, _ in found.values()}
    if len(scopes) > 1:
        raise ValueError(f"scope: the variables hold several RNNs under scopes {sorted(scopes)}; pass "
                         "scope= to pick one")
    if len(cells) > 1:
        raise ValueError(f"variables: cells of several kinds {sorted(cells)} under one scope")
    for name, (m, _) in found.items():
        if m.group("var").startswith("w_"):
            raise NotImplementedError(f"use_peepholes: variables[{name!r}] is a peephole weight; "
                                      "lstmkit's LSTM has no peepholes")
        if m.group("dir") and m.group("k") is not None:
            raise NotImplementedError(
                f"variables[{name!r}]: a MultiRNNCell inside bidirectional_dynamic_rnn stacks each "
                "direction on its own (layer k of fw reads layer k-1 of fw only); lstmkit stacks "
                "bidirectional layers as PyTorch and stack_bidirectional_dynamic_rnn do. Load each "
                "direction with scope='.../fw' and scope='.../bw'")
    return scopes.pop(), cells.pop(), found


def load_tf1(source, layer=None, *, scope=None, forget_bias=1.0, dtype="float32"):
    """Load TF1 recurrent variables into an lstmkit layer.

    source: a dict name -> array (``{v.name: value}``, ``:0`` suffixes allowed), a TF checkpoint
        path prefix (needs TensorFlow), or an ``.npz`` of named arrays.
    layer: a built lstmkit layer to load into; None builds one from the variables (LSTM, GRU with
        ``reset_after=False`` or SimpleRNN; Bidirectional for ``fw/``/``bw/``; ``num_layers`` from
        ``cell_{k}``).
    scope: the variable scope to read (needed when a checkpoint holds several RNNs).
    forget_bias: what the TF1 LSTM cell added at run time (1.0 unless it was built otherwise).

    Returns the layer. Missing or unexpected variables and shapes that do not fit raise ValueError
    naming the variable; peepholes raise NotImplementedError. ``num_proj`` (``projection/kernel``)
    gives ``proj_size``.
    """
    from_file = isinstance(source, (str, os.PathLike))
    variables = read_checkpoint(source) if from_file else dict(source)
    strict = not from_file and scope is None
    scope_found, cell_name, found = _parse(variables, scope, strict)
    given = {name: _common.to_numpy(v) for name, (m, v) in found.items()}
    matches = {name: m for name, (m, v) in found.items()}
    cell = _CELL_NAMES[cell_name]
    target = layer
    if layer is None:
        layer = _common.build(_infer(cell, matches, given), dtype)
    layer = _common.native(layer)
    s = _common.structure(layer)
    if s.cell != cell:
        raise ValueError(f"layer: {layer.name!r} is a {s.cell}, the variables hold a {cell_name}")
    if s.cell == "gru" and s.reset_after:
        raise ValueError(f"layer: TF1's GRUCell resets before the matmul; {layer.name!r} has "
                         "reset_after=True (build lstmkit.GRU(..., reset_after=False))")
    expected = save_tf1(layer, scope=scope_found, cell_name=cell_name)
    _common.check_against(given, expected, "variables")
    params = {}
    for k in range(s.num_layers):
        for direction in (("fw", "bw") if s.bidirectional else (None,)):
            part = {var: given[variable_name(scope_found, cell_name, k, s.num_layers, direction, var)]
                    for var in _VARS[cell] + (("projection/kernel",) if s.proj_size else ())}
            opts = {"forget_bias": forget_bias} if cell == "lstm" else {}
            sub = None if direction is None else {"fw": "forward", "bw": "backward"}[direction]
            for name, v in layouts.convert(part, "tf1", "keras", cell, **opts).items():
                params[layouts.lstmkit_param_key(name, k, s.num_layers, sub)] = v
    _common.assign(layer, params)
    return layer if target is None else target


def _infer(cell, matches, given):
    layers = {int(m.group("sk") or m.group("k") or 0) for m in matches.values()}
    bidirectional = any(m.group("dir") for m in matches.values())
    first = {m.group("var"): given[n] for n, m in matches.items()
             if int(m.group("sk") or m.group("k") or 0) == 0 and m.group("dir") in (None, "fw")}
    bias_key = "candidate/bias" if cell == "gru" else "bias"
    kernel_key = "candidate/kernel" if cell == "gru" else "kernel"
    for key in (bias_key, kernel_key):
        if key not in first:
            raise ValueError(f"variables: missing the first layer's {key!r}; found {sorted(given)}")
    G = {"lstm": 4, "rnn": 1, "gru": 1}[cell]
    units = int(np.shape(first[bias_key])[0]) // G
    rows = int(np.shape(first[kernel_key])[0])
    proj = np.shape(first["projection/kernel"]) if "projection/kernel" in first else None
    if proj is not None and (len(proj) != 2 or proj[0] != units or not 0 < proj[1] < units):
        raise ValueError(f"variables: the first layer's projection/kernel of shape {proj} does not "
                         f"fit {units} units (expected ({units}, P), 0 < P < {units})")
    h_size = units if proj is None else proj[1]   # the rows of h in the kernel
    if units < 1 or rows <= h_size:
        raise ValueError(f"variables: the first layer's {kernel_key} of shape "
                         f"{np.shape(first[kernel_key])} does not fit {units} units")
    return _common.Structure(cell, units, rows - h_size, max(layers) + 1, bidirectional, True,
                             reset_after=False, proj_size=0 if proj is None else proj[1])
