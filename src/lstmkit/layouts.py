"""Weight and state layouts of Keras, TF1, PyTorch and ONNX, and exact converters between them.

lstmkit stores every recurrent layer in Keras's layout (the *canonical* one). This module is the only
place that knows the others. Names used below: ``I`` input features, ``U`` (= PyTorch's ``H``) units,
``D`` ONNX directions.

LSTM, one layer and one direction::

    framework  keys                                      shapes                           gate order
    keras      kernel, recurrent_kernel, bias            (I,4U), (U,4U), (4U,)            i f g o
    tf1        kernel, bias  (LSTMCell/BasicLSTMCell)    (I+U,4U) rows [x; h], (4U,)      i j f o  (j = g)
    torch      weight_ih, weight_hh, bias_ih, bias_hh    (4U,I), (4U,U), (4U,), (4U,)     i f g o
    onnx       W, R, B                                   (D,4U,I), (D,4U,U), (D,8U)       i o f c  (c = g)

An LSTM with a projection (PyTorch ``proj_size``, TF1 ``num_proj``; P < U) has one more matrix and a
recurrent kernel that reads the projected h::

    keras      + projection_kernel (U,P); recurrent_kernel (P,4U)       (lstmkit's own names)
    tf1        + projection/kernel (U,P); kernel (I+P,4U) rows [x; h]
    torch      + weight_hr (P,U); weight_hh (4U,P)
    onnx       none: ONNX's LSTM has no projection (refused)

TF1 adds ``forget_bias`` (default 1.0) to the forget gate *at run time*; it is not in the checkpoint.
Converting from ``"tf1"`` folds it into the canonical bias (``b_f + forget_bias``), converting to
``"tf1"`` takes it out again, so pass the ``forget_bias=`` the cell was built with. (With a non-zero
forget_bias that round trip is exact up to one float rounding of the forget gate's bias, the same
rounding TF makes when it adds forget_bias at run time.) PyTorch and ONNX keep
an input and a recurrent bias; the canonical bias is their sum, and the way back puts it all in the
input bias (``bias_ih``, the first half of ``B``) and zeros in the other.

GRU (gates z = update, r = reset, h = candidate)::

    keras  reset_after=True    kernel (I,3U), recurrent_kernel (U,3U), bias (2,3U) rows [input; recurrent]  z r h
    keras  reset_after=False   same, bias (3U,)                                                            z r h
    torch                      weight_ih (3U,I), weight_hh (3U,U), bias_ih, bias_hh (3U,)                  r z n
    tf1    GRUCell             gates/kernel (I+U,2U), gates/bias (2U,)                                     r u
                               candidate/kernel (I+U,U), candidate/bias (U,)       (u = z, reset before the matmul)
    onnx                       W (D,3U,I), R (D,3U,U), B (D,6U)                                            z r h

PyTorch and ONNX ``linear_before_reset=1`` compute Keras's ``reset_after=True``; TF1's GRUCell and ONNX
``linear_before_reset=0`` compute ``reset_after=False``. A conversion that would change the formula is
refused. SimpleRNN: ``kernel (I,U)``, ``recurrent_kernel (U,U)``, ``bias (U,)``; TF1 ``BasicRNNCell``
``kernel (I+U,U)``, ``bias (U,)``; torch ``nn.RNN`` and ONNX ``RNN`` as above with one gate block.

States::

    lstmkit  LSTMState(h, c), each (B,U), or (L,B,U) with num_layers=L; GRU/RNN HiddenState(h)
             (with a projection, h and every h below is (..., P) and c stays (..., U))
    keras    [h, c]  (a list, h first), each (B,U);                      GRU/RNN [h]
    tf1      LSTMStateTuple(c, h)  -- c FIRST, each (B,U);               GRU/RNN h
    torch    (h_n, c_n), each (L*dirs, B, U), row = layer*dirs + direction;  GRU/RNN h_n
    onnx     (Y_h, Y_c), each (D, B, U);                                 GRU/RNN Y_h

Example::

    >>> import numpy as np
    >>> from lstmkit import layouts
    >>> rng = np.random.default_rng(0)
    >>> keras_w = {"kernel": rng.normal(size=(3, 8)), "recurrent_kernel": rng.normal(size=(2, 8)),
    ...            "bias": rng.normal(size=8)}
    >>> torch_w = layouts.convert(keras_w, "keras", "torch")
    >>> {k: v.shape for k, v in torch_w.items()}
    {'weight_ih': (8, 3), 'weight_hh': (8, 2), 'bias_ih': (8,), 'bias_hh': (8,)}
    >>> back = layouts.convert(torch_w, "torch", "keras")
    >>> all(np.array_equal(back[k], keras_w[k]) for k in keras_w)
    True

Every function validates its input: a missing or unexpected key, or a wrong shape, raises a
``ValueError`` naming the key, the shape expected and the shape found.

Public names: :func:`convert` (one layer, one direction), :func:`convert_state`,
:func:`from_torch_state_dict` / :func:`to_torch_state_dict` (whole stacked or bidirectional PyTorch
modules), :func:`torch_structure`, :func:`lstmkit_param_key` (the key of a weight in an lstmkit
layer's ``params``), :func:`onnx_concat_directions`, and the tables ``GATE_ORDER``, ``GATE_NAMES``,
``FORMATS``, ``STATE_FORMATS``, ``CELLS``.
"""
from collections.abc import Mapping

import numpy as np

__all__ = ["convert", "convert_state", "from_torch_state_dict", "to_torch_state_dict",
           "torch_structure", "lstmkit_param_key", "onnx_concat_directions", "GATE_ORDER",
           "GATE_NAMES", "FORMATS", "STATE_FORMATS", "CELLS"]

FORMATS = ("keras", "tf1", "torch", "onnx")
CELLS = ("lstm", "gru", "rnn")

#: Gate order of each format, in canonical gate names (LSTM i f g o; GRU z r h).
#: TF1 calls g "j", ONNX calls it "c"; PyTorch calls the GRU candidate "n".
GATE_ORDER = {
    "lstm": {"keras": "ifgo", "tf1": "igfo", "torch": "ifgo", "onnx": "iofg"},
    "gru": {"keras": "zrh", "tf1": "rz", "torch": "rzh", "onnx": "zrh"},   # tf1: gates kernel only
    "rnn": {"keras": "h", "tf1": "h", "torch": "h", "onnx": "h"},
}
GATE_NAMES = {
    "lstm": {"keras": "i f c o", "tf1": "i j f o", "torch": "i f g o", "onnx": "i o f c"},
    "gru": {"keras": "z r h", "tf1": "r u | candidate", "torch": "r z n", "onnx": "z r h"},
    "rnn": {"keras": "h", "tf1": "h", "torch": "h", "onnx": "h"},
}
_NGATES = {"lstm": 4, "gru": 3, "rnn": 1}


# -- helpers --------------------------------------------------------------------------------------
def _array(value, key):
    if hasattr(value, "detach"):            # a torch tensor, possibly requiring grad
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):   # a tf.Variable / tensor
        value = value.numpy()
    arr = np.array(value)                   # always a copy: converted weights never alias the input
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"weights[{key!r}]: expected a numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    return arr


def _check(cond, key, expected, found, fmt):
    if not cond:
        raise ValueError(f"weights[{key!r}] ({fmt}): expected shape {expected}, got {found}")


def _check_keys(weights, required, optional, fmt, cell):
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights: expected a dict of arrays, got {type(weights).__name__}")
    keys = set(weights.keys())
    missing = [k for k in required if k not in keys]
    extra = sorted(keys - set(required) - set(optional))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ValueError(f"weights: a {fmt} {cell} layer has keys {list(required) + list(optional)} "
                         f"({', '.join(optional) or 'none'} optional); {' and '.join(parts)}")


def _permute(a, src, dst, axis):
    """Reorder the gate blocks of ``a`` along ``axis`` from order ``src`` to order ``dst``."""
    n = len(src)
    blocks = np.split(a, n, axis=axis)
    return np.concatenate([blocks[src.index(g)] for g in dst], axis=axis)


def _check_cell(cell):
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")


def _check_format(fmt, argument):
    if fmt not in FORMATS:
        raise ValueError(f"{argument}: expected one of {FORMATS}, got {fmt!r}")


# -- to the canonical layout ----------------------------------------------------------------------
def _from_keras(w, cell, opts):
    _check_keys(w, ("kernel", "recurrent_kernel"), ("bias",) + _PROJECTION_KEY[cell]["keras"],
                "keras", cell)
    G = _NGATES[cell]
    rk = _array(w["recurrent_kernel"], "recurrent_kernel")
    if "projection_kernel" in w:
        proj = _array(w["projection_kernel"], "projection_kernel")
        _check(proj.ndim == 2 and 0 < proj.shape[1] < proj.shape[0], "projection_kernel",
               "(U, P) with 0 < P < U", proj.shape, "keras")
        U, P = proj.shape
        _check(rk.shape == (P, G * U), "recurrent_kernel", (P, G * U), rk.shape, "keras")
    else:
        _check(rk.ndim == 2 and rk.shape[1] == G * rk.shape[0], "recurrent_kernel", f"(U, {G}U)",
               rk.shape, "keras")
        U = rk.shape[0]
    k = _array(w["kernel"], "kernel")
    _check(k.ndim == 2 and k.shape[1] == G * U, "kernel", f"(I, {G * U})", k.shape, "keras")
    out = {"kernel": k, "recurrent_kernel": rk}
    if "projection_kernel" in w:
        out["projection_kernel"] = proj
    if "bias" in w and w["bias"] is not None:
        b = _array(w["bias"], "bias")
        if cell == "gru":
            ra = opts.get("reset_after")
            want = {True: [(2, G * U)], False: [(G * U,)], None: [(2, G * U), (G * U,)]}[ra]
            _check(b.shape in want, "bias", " or ".join(map(str, want)) +
                   ("" if ra is None else f" (reset_after={ra})"), b.shape, "keras")
        else:
            _check(b.shape == (G * U,), "bias", (G * U,), b.shape, "keras")
        out["bias"] = b
    return out


def _from_torch(w, cell, opts):
    _check_keys(w, ("weight_ih", "weight_hh"), ("bias_ih", "bias_hh") + _PROJECTION_KEY[cell]["torch"],
                "torch", cell)
    G = _NGATES[cell]
    order = GATE_ORDER[cell]
    whh = _array(w["weight_hh"], "weight_hh")
    if "weight_hr" in w:
        whr = _array(w["weight_hr"], "weight_hr")
        _check(whr.ndim == 2 and 0 < whr.shape[0] < whr.shape[1], "weight_hr",
               "(P, H) with 0 < P < H (proj_size, hidden_size)", whr.shape, "torch")
        P, U = whr.shape
        _check(whh.shape == (G * U, P), "weight_hh", (G * U, P), whh.shape, "torch")
    else:
        _check(whh.ndim == 2 and whh.shape[0] == G * whh.shape[1], "weight_hh", f"({G}H, H)",
               whh.shape, "torch")
        U = whh.shape[1]
    wih = _array(w["weight_ih"], "weight_ih")
    _check(wih.ndim == 2 and wih.shape[0] == G * U, "weight_ih", f"({G * U}, I)", wih.shape, "torch")
    out = {"kernel": _permute(wih.T, order["torch"], order["keras"], 1),
           "recurrent_kernel": _permute(whh.T, order["torch"], order["keras"], 1)}
    if ("bias_ih" in w) != ("bias_hh" in w):
        raise ValueError("weights: torch biases come in pairs; got only "
                         f"{'bias_ih' if 'bias_ih' in w else 'bias_hh'}")
    if "bias_ih" in w:
        b_ih, b_hh = _array(w["bias_ih"], "bias_ih"), _array(w["bias_hh"], "bias_hh")
        _check(b_ih.shape == (G * U,), "bias_ih", (G * U,), b_ih.shape, "torch")
        _check(b_hh.shape == (G * U,), "bias_hh", (G * U,), b_hh.shape, "torch")
        b_ih = _permute(b_ih, order["torch"], order["keras"], 0)
        b_hh = _permute(b_hh, order["torch"], order["keras"], 0)
        if cell == "gru":
            if opts.get("reset_after", True) is False:
                raise ValueError("reset_after: torch's GRU resets after the matmul "
                                 "(Keras reset_after=True); got reset_after=False")
            out["bias"] = np.stack([b_ih, b_hh])
        else:
            out["bias"] = b_ih + b_hh
    if "weight_hr" in w:
        out["projection_kernel"] = np.ascontiguousarray(whr.T)
    return out


def _split_xh(k, U, key, cols, fmt="tf1"):
    _check(k.ndim == 2 and k.shape[0] > U and k.shape[1] == cols, key, f"(I + {U}, {cols})", k.shape, fmt)
    return k[:-U], k[-U:]


def _from_tf1(w, cell, opts):
    if cell == "gru":
        if opts.get("reset_after", False):
            raise ValueError("reset_after: TF1's GRUCell resets before the matmul (Keras "
                             "reset_after=False); got reset_after=True")
        keys = ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")
        _check_keys(w, keys, (), "tf1", cell)
        ck = _array(w["candidate/kernel"], "candidate/kernel")
        _check(ck.ndim == 2 and ck.shape[0] > ck.shape[1], "candidate/kernel", "(I + U, U)", ck.shape,
               "tf1")
        U = ck.shape[1]
        gk = _array(w["gates/kernel"], "gates/kernel")
        gx, gh = _split_xh(gk, U, "gates/kernel", 2 * U)
        _check(gk.shape == (ck.shape[0], 2 * U), "gates/kernel", (ck.shape[0], 2 * U), gk.shape, "tf1")
        cx, ch = ck[:-U], ck[-U:]
        gb, cb = _array(w["gates/bias"], "gates/bias"), _array(w["candidate/bias"], "candidate/bias")
        _check(gb.shape == (2 * U,), "gates/bias", (2 * U,), gb.shape, "tf1")
        _check(cb.shape == (U,), "candidate/bias", (U,), cb.shape, "tf1")
        zr = lambda a: _permute(a, "rz", "zr", a.ndim - 1)
        return {"kernel": np.concatenate([zr(gx), cx], 1),
                "recurrent_kernel": np.concatenate([zr(gh), ch], 1),
                "bias": np.concatenate([zr(gb), cb])}
    bad = [k for k in w if k.startswith("w_")]
    if bad:
        raise ValueError(f"weights: peepholes are not supported, got {bad}")
    _check_keys(w, ("kernel", "bias"), _PROJECTION_KEY[cell]["tf1"], "tf1", cell)
    G = _NGATES[cell]
    b = _array(w["bias"], "bias")
    _check(b.ndim == 1 and b.shape[0] % G == 0, "bias", f"({G}U,)", b.shape, "tf1")
    U = b.shape[0] // G
    H = U   # the rows of h in the kernel: P with a projection
    if "projection/kernel" in w:
        proj = _array(w["projection/kernel"], "projection/kernel")
        _check(proj.ndim == 2 and proj.shape[0] == U and 0 < proj.shape[1] < U, "projection/kernel",
               f"({U}, P) with 0 < P < {U}", proj.shape, "tf1")
        H = proj.shape[1]
    k = _array(w["kernel"], "kernel")
    kx, kh = _split_xh(k, H, "kernel", G * U)
    order = GATE_ORDER[cell]
    out = {"kernel": _permute(kx, order["tf1"], order["keras"], 1),
           "recurrent_kernel": _permute(kh, order["tf1"], order["keras"], 1),
           "bias": _permute(b, order["tf1"], order["keras"], 0)}
    if cell == "lstm":
        out["bias"][U:2 * U] += out["bias"].dtype.type(opts.get("forget_bias", 1.0))
    if "projection/kernel" in w:
        out["projection_kernel"] = proj
    return out


def _onnx_reset_after(opts, cell):
    if cell != "gru":
        return None
    lbr = opts.get("linear_before_reset")
    ra = opts.get("reset_after")
    if lbr is None and ra is None:
        raise ValueError("linear_before_reset: an ONNX GRU's formula is a node attribute, not a "
                         "weight; pass linear_before_reset=1 (Keras reset_after=True, PyTorch) or 0")
    if lbr is not None and ra is not None and bool(lbr) != bool(ra):
        raise ValueError(f"linear_before_reset: {lbr} contradicts reset_after={ra}")
    return bool(lbr) if lbr is not None else bool(ra)


def _from_onnx(w, cell, opts):
    _check_keys(w, ("W", "R"), ("B", "P"), "onnx", cell)
    G = _NGATES[cell]
    order = GATE_ORDER[cell]
    R = _array(w["R"], "R")
    _check(R.ndim == 3 and R.shape[1] == G * R.shape[2], "R", f"(D, {G}H, H)", R.shape, "onnx")
    D, _, U = R.shape
    d = opts.get("direction")
    if d is None:
        if D != 1:
            raise ValueError(f"direction: the ONNX weights hold {D} directions; pass direction=0 "
                             "(forward) or 1 (reverse)")
        d = 0
    if d not in range(D):
        raise ValueError(f"direction: expected an index in [0, {D}), got {d!r}")
    W = _array(w["W"], "W")
    _check(W.ndim == 3 and W.shape[:2] == (D, G * U), "W", f"({D}, {G * U}, I)", W.shape, "onnx")
    if "P" in w and np.any(_array(w["P"], "P")):
        raise ValueError("weights['P'] (onnx): peepholes are not supported")
    out = {"kernel": _permute(W[d].T, order["onnx"], order["keras"], 1),
           "recurrent_kernel": _permute(R[d].T, order["onnx"], order["keras"], 1)}
    reset_after = _onnx_reset_after(opts, cell)
    if "B" in w:
        B = _array(w["B"], "B")
        _check(B.shape == (D, 2 * G * U), "B", (D, 2 * G * U), B.shape, "onnx")
        wb = _permute(B[d, :G * U], order["onnx"], order["keras"], 0)
        rb = _permute(B[d, G * U:], order["onnx"], order["keras"], 0)
        out["bias"] = np.stack([wb, rb]) if reset_after else wb + rb
    return out


# -- from the canonical layout --------------------------------------------------------------------
def _gru_reset_after(canon, opts):
    b = canon.get("bias")
    if b is not None:
        return b.ndim == 2
    return opts.get("reset_after", True)


def _to_keras(c, cell, opts):
    return {k: v.copy() for k, v in c.items()}


def _to_torch(c, cell, opts):
    order = GATE_ORDER[cell]
    out = {"weight_ih": np.ascontiguousarray(_permute(c["kernel"], order["keras"], order["torch"], 1).T),
           "weight_hh": np.ascontiguousarray(
               _permute(c["recurrent_kernel"], order["keras"], order["torch"], 1).T)}
    if cell == "gru" and not _gru_reset_after(c, opts):
        raise ValueError("reset_after: torch's GRU resets after the matmul; these weights are "
                         "reset_after=False (bias of shape (3U,)), which torch cannot compute")
    b = c.get("bias")
    if b is not None:
        if cell == "gru":
            b_ih, b_hh = b[0], b[1]
        else:
            b_ih, b_hh = b, np.zeros_like(b)
        out["bias_ih"] = _permute(b_ih, order["keras"], order["torch"], 0)
        out["bias_hh"] = _permute(b_hh, order["keras"], order["torch"], 0)
    if "projection_kernel" in c:
        out["weight_hr"] = np.ascontiguousarray(c["projection_kernel"].T)
    return out


def _to_tf1(c, cell, opts):
    k, rk = c["kernel"], c["recurrent_kernel"]
    U = rk.shape[1] // _NGATES[cell]
    b = c.get("bias")
    if b is None:
        b = np.zeros(rk.shape[1], rk.dtype)
    if cell == "gru":
        if b.ndim == 2 or opts.get("reset_after", False):
            raise ValueError("reset_after: TF1's GRUCell resets before the matmul; these weights "
                             "are reset_after=True (bias of shape (2, 3U)), which it cannot compute")
        rz = lambda a: _permute(a, "zr", "rz", a.ndim - 1)
        return {"gates/kernel": np.concatenate([rz(k[:, :2 * U]), rz(rk[:, :2 * U])], 0),
                "gates/bias": rz(b[:2 * U]).copy(),
                "candidate/kernel": np.concatenate([k[:, 2 * U:], rk[:, 2 * U:]], 0),
                "candidate/bias": b[2 * U:].copy()}
    order = GATE_ORDER[cell]
    b = b.copy()
    if cell == "lstm":
        b[U:2 * U] -= b.dtype.type(opts.get("forget_bias", 1.0))
    out = {"kernel": _permute(np.concatenate([k, rk], 0), order["keras"], order["tf1"], 1),
           "bias": _permute(b, order["keras"], order["tf1"], 0)}
    if "projection_kernel" in c:
        out["projection/kernel"] = c["projection_kernel"].copy()
    return out


def _to_onnx(c, cell, opts):
    if "projection_kernel" in c:
        raise ValueError("proj_size: ONNX's LSTM has no output projection; an LSTM with proj_size > 0 "
                         "(a projection_kernel) cannot be written as ONNX LSTM weights")
    order = GATE_ORDER[cell]
    out = {"W": _permute(c["kernel"], order["keras"], order["onnx"], 1).T[None].copy(),
           "R": _permute(c["recurrent_kernel"], order["keras"], order["onnx"], 1).T[None].copy()}
    if cell == "gru":
        ra = _gru_reset_after(c, opts)
        want = _onnx_reset_after(opts, cell) if ("linear_before_reset" in opts or
                                                  "reset_after" in opts) else ra
        if want != ra:
            raise ValueError(f"linear_before_reset: these weights are reset_after={ra}, which is "
                             f"ONNX linear_before_reset={int(ra)}")
    b = c.get("bias")
    if b is not None:
        wb, rb = (b[0], b[1]) if b.ndim == 2 else (b, np.zeros_like(b))
        out["B"] = np.concatenate([_permute(wb, order["keras"], order["onnx"], 0),
                                   _permute(rb, order["keras"], order["onnx"], 0)])[None]
    return out


#: The optional projection weight of an LSTM in each format (none for GRU and RNN).
_PROJECTION_KEY = {"lstm": {"keras": ("projection_kernel",), "tf1": ("projection/kernel",),
                            "torch": ("weight_hr",), "onnx": ()},
                   "gru": {f: () for f in FORMATS}, "rnn": {f: () for f in FORMATS}}
_TO_CANONICAL = {"keras": _from_keras, "torch": _from_torch, "tf1": _from_tf1, "onnx": _from_onnx}
_FROM_CANONICAL = {"keras": _to_keras, "torch": _to_torch, "tf1": _to_tf1, "onnx": _to_onnx}
_OPTIONS = {"forget_bias", "reset_after", "linear_before_reset", "direction"}


def convert(weights, source, target, cell="lstm", **options):
    """Convert the weights of ONE layer and ONE direction from ``source``'s layout to ``target``'s.

    Args:
        weights: dict of arrays (NumPy, or torch/TF tensors) with the source format's keys (see the
            module docstring): ``keras`` kernel/recurrent_kernel/bias, ``tf1`` kernel/bias (GRU:
            gates/kernel, gates/bias, candidate/kernel, candidate/bias), ``torch``
            weight_ih/weight_hh/bias_ih/bias_hh (no ``_l0`` suffix), ``onnx`` W/R/B. A projected
            LSTM adds ``projection_kernel`` (keras), ``projection/kernel`` (tf1) or ``weight_hr``
            (torch); ONNX has none and refuses it.
        source, target: one of ``"keras"`` (= lstmkit's own layout), ``"tf1"``, ``"torch"``, ``"onnx"``.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (SimpleRNN / nn.RNN / BasicRNNCell / ONNX RNN).
        forget_bias: TF1 LSTM only; the cell's run-time forget bias (TF1's default 1.0). Folded into
            the canonical bias when reading ``tf1`` and taken out when writing it.
        reset_after: GRU only; Keras's flavour when it cannot be read from the bias shape.
        linear_before_reset: ONNX GRU only (required when reading ONNX GRU weights): 1 is Keras's
            ``reset_after=True``, 0 is ``reset_after=False``.
        direction: ONNX source only; which of the D directions to read (0 forward, 1 reverse).

    Returns a new dict of NumPy arrays (never views of the input) in the target's keys and shapes;
    ONNX targets have D = 1 (stack directions with :func:`onnx_concat_directions`). The dtype is kept.

    Round trips through the canonical layout are exact: ``convert(convert(w, "keras", f), f,
    "keras") == w`` bit for bit for every format f (for a TF1 LSTM with ``forget_bias != 0``, up to
    one rounding of the forget gate's bias: ``(b - 1) + 1`` is not always ``b`` in floats).
    PyTorch's and ONNX's two LSTM/RNN biases are summed into one, so ``torch -> keras -> torch``
    keeps their sum, not their split.
    """
    _check_cell(cell)
    _check_format(source, "source")
    _check_format(target, "target")
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"convert: unexpected option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    canon = _TO_CANONICAL[source](weights, cell, options)
    return _FROM_CANONICAL[target](canon, cell, options)


def onnx_concat_directions(forward, backward):
    """Stack two single-direction ONNX weight dicts (from :func:`convert`) into one with D = 2, as a
    ``direction="bidirectional"`` node wants."""
    if set(forward) != set(backward):
        raise ValueError(f"backward: expected the same keys as forward {sorted(forward)}, got "
                         f"{sorted(backward)}")
    return {k: np.concatenate([forward[k], backward[k]], 0) for k in forward}


# -- whole PyTorch modules ------------------------------------------------------------------------
def _torch_suffix(layer, reverse):
    return f"_l{layer}" + ("_reverse" if reverse else "")


def torch_structure(state_dict):
    """``(num_layers, bidirectional)`` of an ``nn.LSTM``/``GRU``/``RNN`` state dict."""
    layers = set()
    bidirectional = False
    for key in state_dict:
        name = key.rsplit(".", 1)[-1]
        if not name.startswith(("weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l", "weight_hr_l")):
            raise ValueError(f"state_dict: unexpected key {key!r} (expected weight_ih_l0, "
                             "weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0 (proj_size), ...)")
        tail = name.split("_l", 1)[1]
        bidirectional |= tail.endswith("_reverse")
        layers.add(int(tail.split("_")[0]))
    if not layers:
        raise ValueError("state_dict: no weight_ih_l0 found; is it an nn.LSTM/GRU/RNN state dict?")
    return max(layers) + 1, bidirectional


def lstmkit_param_key(name, layer, num_layers, direction=None):
    """The key of a weight in an lstmkit layer's ``params``: ``kernel``, ``kernel_l1`` (stacked),
    ``forward/kernel_l1`` or ``backward/kernel`` (Bidirectional)."""
    key = name if num_layers == 1 else f"{name}_l{layer}"
    return key if direction is None else f"{direction}/{key}"


def from_torch_state_dict(state_dict, cell="lstm"):
    """An ``nn.LSTM``/``nn.GRU``/``nn.RNN`` state dict -> lstmkit ``params`` (canonical layout).

    The keys are those of the matching lstmkit layer (``lstmkit.LSTM(H, num_layers=L)``, wrapped in
    ``lstmkit.Bidirectional`` when the module is bidirectional), so that
    ``for k, v in params.items(): layer.params[k][...] = v`` loads it. A ``prefix.`` before the
    names (``encoder.rnn.weight_ih_l0``) is ignored. An LSTM with ``proj_size=P`` (keys
    ``weight_hr_l{k}[_reverse]`` (P, H)) gives ``projection_kernel[_l{k}]`` (H, P) for
    ``lstmkit.LSTM(H, proj_size=P)``.
    """
    sd = {k.rsplit(".", 1)[-1]: v for k, v in state_dict.items()}
    L, bidi = torch_structure(sd)
    out = {}
    for k in range(L):
        for rev in ((False, True) if bidi else (False,)):
            sfx = _torch_suffix(k, rev)
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
            part = {n: sd[n + sfx] for n in names if n + sfx in sd}
            try:
                canon = convert(part, "torch", "keras", cell)
            except ValueError as e:
                raise ValueError(f"state_dict (layer {k}{', reverse' if rev else ''}): {e}") from None
            direction = None if not bidi else ("backward" if rev else "forward")
            for name, v in canon.items():
                out[lstmkit_param_key(name, k, L, direction)] = v
    return out


def to_torch_state_dict(params, cell="lstm", num_layers=1, bidirectional=False):
    """lstmkit ``params`` (as ``layer.params``) -> an ``nn.LSTM``/``GRU``/``RNN`` state dict of NumPy
    arrays (wrap each in ``torch.from_numpy`` to load it). ``projection_kernel`` weights become
    ``weight_hr_l{k}`` (an ``nn.LSTM(..., proj_size=P)``)."""
    out = {}
    for k in range(num_layers):
        for rev in ((False, True) if bidirectional else (False,)):
            direction = None if not bidirectional else ("backward" if rev else "forward")
            part = {}
            for name in ("kernel", "recurrent_kernel", "bias", "projection_kernel"):
                key = lstmkit_param_key(name, k, num_layers, direction)
                if key in params:
                    part[name] = params[key]
                elif name in ("kernel", "recurrent_kernel"):
                    raise ValueError(f"params: missing {key!r} (num_layers={num_layers}, "
                                     f"bidirectional={bidirectional}); found {sorted(params)}")
            for name, v in convert(part, "keras", "torch", cell).items():
                out[name + _torch_suffix(k, rev)] = v
    return out


# -- states ---------------------------------------------------------------------------------------
STATE_FORMATS = ("lstmkit", "keras", "tf1", "torch", "onnx")


def _state_array(v, name):
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    elif hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        v = v.numpy()
    return np.asarray(v)


def convert_state(state, source, target, cell="lstm", *, bidirectional=False):
    """Convert a recurrent state between the frameworks' conventions (see the module docstring).

    LSTM: lstmkit ``LSTMState(h, c)``; keras ``[h, c]``; tf1 ``(c, h)`` (an ``LSTMStateTuple`` or any
    pair in that order); torch ``(h_n, c_n)`` of shape (layers*dirs, B, U); onnx ``(Y_h, Y_c)`` of shape
    (D, B, U). GRU/RNN: lstmkit ``HiddenState(h)``; keras ``[h]``; tf1 ``h``; torch ``h_n``; onnx ``Y_h``.

    Keras and TF1 states are one layer and one direction, (B, U). An lstmkit state is (B, U) for one
    layer and (L, B, U) for L stacked layers; with ``bidirectional=True`` it is a pair
    ``(forward_state, backward_state)`` (what ``lstmkit.Bidirectional`` takes as ``initial_state``).
    Returns new arrays: the lstmkit named tuple, a keras list, a tf1 tuple ``(c, h)`` (wrap it in
    ``LSTMStateTuple`` if TF needs one), a torch/onnx tuple ``(h, c)`` or a lone array.
    """
    from .layers.recurrent import HiddenState, LSTMState
    _check_cell(cell)
    for fmt, arg in ((source, "source"), (target, "target")):
        if fmt not in STATE_FORMATS:
            raise ValueError(f"{arg}: expected one of {STATE_FORMATS}, got {fmt!r}")
    lstm = cell == "lstm"
    fields = ("h", "c") if lstm else ("h",)
    State = LSTMState if lstm else HiddenState

    # -- read into stacked arrays (N, B, U), N = layers * dirs, torch's row order
    def pair(value, names, what):
        if lstm:
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise TypeError(f"state: a {source} LSTM state is {what}, got "
                                f"{type(value).__name__}{'' if not hasattr(value, '__len__') else ' of length ' + str(len(value))}")
            return [_state_array(v, n) for v, n in zip(value, names)]
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise TypeError(f"state: a {source} {cell} state is {what}, got a sequence of "
                                f"length {len(value)}")
            value = value[0]
        return [_state_array(value, "h")]

    if source == "lstmkit":
        parts = [state] if not bidirectional else list(state) if isinstance(state, (list, tuple)) \
            and len(state) == 2 and not hasattr(state, "_fields") else None
        if parts is None:
            raise TypeError("state: with bidirectional=True an lstmkit state is (forward_state, "
                            f"backward_state), got {type(state).__name__}")
        per_dir = []
        for p in parts:
            if not all(hasattr(p, f) for f in fields):
                raise TypeError(f"state: expected lstmkit.{State.__name__}({', '.join(fields)}), got "
                                f"{type(p).__name__}")
            arrs = [_state_array(getattr(p, f), f) for f in fields]
            per_dir.append([a[None] if a.ndim == 2 else a for a in arrs])
        # interleave directions layer by layer: row = layer * dirs + direction
        arrays = [np.stack([d[i] for d in per_dir], 1).reshape(-1, *per_dir[0][i].shape[1:])
                  for i in range(len(fields))]
    elif source == "keras":
        arrays = [a[None] for a in pair(state, fields, "a list [h, c]" if lstm else "[h]")]
    elif source == "tf1":
        arrays = [a[None] for a in pair(state, ("c", "h"), "(c, h)" if lstm else "h")]
        if lstm:
            arrays = arrays[::-1]
    else:
        arrays = pair(state, fields, "(h_n, c_n)" if lstm else "h_n")
    for a, f in zip(arrays, fields):
        if a.ndim != 3:
            raise ValueError(f"state.{f}: expected shape ({'(B, U)' if source in ('keras', 'tf1') else '(N, B, U)'}"
                             f") for a {source} state, got {a.shape[1:] if source in ('keras', 'tf1') else a.shape}")
    if lstm and arrays[0].shape[:-1] != arrays[1].shape[:-1]:   # h is narrower with a projection
        raise ValueError(f"state: h and c must have the same layers and batch, got h "
                         f"{arrays[0].shape} and c {arrays[1].shape}")
    arrays = [a.copy() for a in arrays]
    N = arrays[0].shape[0]

    # -- write
    if target in ("keras", "tf1"):
        if N != 1:
            raise ValueError(f"state: a {target} state is one layer and one direction, this one holds "
                             f"{N} (layers * directions); convert to 'lstmkit' or 'torch' instead")
        flat = [a[0] for a in arrays]
        if target == "keras":
            return flat
        return (flat[1], flat[0]) if lstm else flat[0]
    if target in ("torch", "onnx"):
        return tuple(arrays) if lstm else arrays[0]
    dirs = 2 if bidirectional else 1
    if N % dirs:
        raise ValueError(f"state: bidirectional=True needs an even number of rows (layers * 2), got {N}")
    out = []
    for d in range(dirs):
        rows = [a[d::dirs] for a in arrays]
        out.append(State(*(r[0] if r.shape[0] == 1 else r for r in rows)))
    return tuple(out) if bidirectional else out[0]
