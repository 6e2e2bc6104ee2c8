"""``lstmkit.explain``: what every value a recurrent layer returns is, in every framework's terms.

For one configuration (cell, sizes, lengths, ``return_sequences``/``return_state``, ``go_backwards``,
bidirectional, stacked) it states, with concrete shapes:

- what lstmkit, Keras, TF1 (``dynamic_rnn``) and PyTorch (``nn.LSTM``) return, in their order;
- which of those values are equal, and when they are not (lengths, ``go_backwards``, a padded step
  that repeats the last output in Keras and is zero elsewhere, the backward direction);
- how to hand the state to a decoder in each framework;
- the weight shapes with their gate blocks in each framework.

Every equality is also kept as data (:attr:`Explanation.claims`), an expression over the names the
framework's own code gives its results, so the tests check each claim against the real framework::

    >>> import lstmkit
    >>> e = lstmkit.explain("lstm", units=4, input_size=2, batch=2, time=3, lengths=[3, 1],
    ...                     return_sequences=True, return_state=True)
    >>> [v.name for v in e.values["keras"]], [v.shape for v in e.values["keras"]]
    (['out', 'h', 'c'], [(2, 3, 4), (2, 4), (2, 4)])
    >>> [v.name for v in e.values["tf1"]]
    ['outputs', 'state.c', 'state.h']
"""
from dataclasses import dataclass, field

import numpy as np

CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN", "simplernn": "SimpleRNN"}

# Gate blocks of the weight matrices, in each framework's order (the canonical one is Keras's).
GATE_BLOCKS = {
    "LSTM": {"keras": "i f c o", "tf1": "i j f o  (j is the candidate c)", "pytorch": "i f g o  (g is c)",
             "onnx": "i o f c"},
    "GRU": {"keras": "z r h", "tf1": "r u (gates) + candidate  (u is z)", "pytorch": "r z n  (n is h)",
            "onnx": "z r h"},
    "SimpleRNN": {"keras": "h", "tf1": "h", "pytorch": "h", "onnx": "h"},
}
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
FRAMEWORKS = ("lstmkit", "keras", "tf1", "pytorch")


@dataclass
class Value:
    """One returned value: ``name`` as the framework's example code binds it, its ``shape`` and
    what it is."""
    name: str
    shape: tuple
    meaning: str


@dataclass
class Claim:
    """``lhs == rhs`` holds (``equal=True``) or does not (``equal=False``) in ``framework``, where
    both sides are Python expressions over the names of :attr:`Explanation.values`."""
    framework: str
    lhs: str
    rhs: str
    equal: bool
    why: str


@dataclass
class Config:
    cell: str = "LSTM"
    units: int = 4
    input_size: int = 2
    batch: int = 2
    time: int = 3
    lengths: list = None
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    bidirectional: bool = False
    num_layers: int = 1


@dataclass
class Explanation:
    """What :func:`explain` returns. ``str()`` (and the REPL) show the text."""
    config: Config
    values: dict = field(default_factory=dict)      # framework -> [Value]
    code: dict = field(default_factory=dict)        # framework -> the call that returns them
    claims: list = field(default_factory=list)      # [Claim]
    weights: dict = field(default_factory=dict)     # framework -> [(name, shape, blocks)]
    notes: list = field(default_factory=list)
    text: str = ""

    def __str__(self):
        return self.text

    def __repr__(self):
        return self.text


def explain(what="lstm", *, units=None, input_size=None, batch=None, time=None, lengths=None,
            return_sequences=None, return_state=None, go_backwards=None, bidirectional=None,
            num_layers=None, plot=None):
    """Explain the values a recurrent layer returns in lstmkit, Keras, TF1 and PyTorch.

    what: ``"lstm"``, ``"gru"`` or ``"rnn"``; or an lstmkit layer (LSTM, GRU, SimpleRNN,
        Bidirectional, or a Keras-named layer with ``return_sequences``/``return_state``); or the
        result of calling one (a ``RecurrentResult``: sizes are read off its arrays).
    units, input_size, batch, time: U, I, B, T (taken from ``what`` where it knows them).
    lengths: B integers in [1, T], the valid steps of each sequence (None: all T).
    return_sequences, return_state, go_backwards: as Keras's arguments (default False).
    bidirectional, num_layers: a bidirectional layer; stacked layers.
    plot: a path: also draw the unrolled network with its h and c arrows there (PNG, needs
        matplotlib: ``pip install lstmkit[plot]``).

    Returns an :class:`Explanation`; ``print(explain(...))`` shows it.
    """
    cfg = _config(what, units=units, input_size=input_size, batch=batch, time=time,
                  lengths=lengths, return_sequences=return_sequences, return_state=return_state,
                  go_backwards=go_backwards, bidirectional=bidirectional, num_layers=num_layers)
    e = Explanation(cfg)
    _lstmkit(cfg, e)
    _keras(cfg, e)
    _tf1(cfg, e)
    _pytorch(cfg, e)
    _weights(cfg, e)
    e.text = _render(e)
    if plot is not None:
        plot_unrolled(cfg, plot)
    return e


# -- configuration ---------------------------------------------------------------------------------
def _positive(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument}: expected a positive integer, got {value!r}")
    return int(value)


def _config(what, **kw):
    from .layers.recurrent import GRU, LSTM, Bidirectional, RecurrentResult, SimpleRNN
    found = {}
    if isinstance(what, str):
        if what.lower() not in CELLS:
            raise ValueError(f"what: expected one of {sorted(CELLS)} or an lstmkit layer or result, "
                             f"got {what!r}")
        found["cell"] = CELLS[what.lower()]
    elif isinstance(what, RecurrentResult):
        found.update(_from_result(what))
    else:
        layer = what
        if isinstance(layer, Bidirectional) or type(layer).__name__ == "Bidirectional":
            found["bidirectional"] = True
            layer = layer.forward_layer
            for flag in ("return_sequences", "return_state"):
                if hasattr(layer, flag):
                    found[flag] = bool(getattr(layer, flag))
        # a Keras-named layer (lstmkit.keras) runs a native layer inside its cell
        inner = getattr(getattr(layer, "cell", None), "layer", layer)
        kinds = {LSTM: "LSTM", GRU: "GRU", SimpleRNN: "SimpleRNN"}
        kind = next((n for c, n in kinds.items() if isinstance(inner, c)), None)
        if kind is None:
            kind = CELLS.get(type(what).__name__.lower())
        if kind is None:
            raise TypeError(f"what: expected 'lstm', 'gru', 'rnn', an lstmkit recurrent layer or its "
                            f"result, got {type(what).__name__}")
        if getattr(inner, "proj_size", 0):
            raise NotImplementedError(f"what: explain does not cover LSTM projections yet (this layer "
                                      f"has proj_size={inner.proj_size}); its h and outputs are "
                                      f"proj_size wide, c is units wide")
        found["cell"] = kind
        found["units"] = getattr(inner, "units", None)
        if getattr(inner, "input_size", None):
            found["input_size"] = inner.input_size
        found["num_layers"] = getattr(inner, "num_layers", 1)
        for flag in ("return_sequences", "return_state", "go_backwards"):
            if hasattr(what, flag):
                found[flag] = bool(getattr(what, flag))
        if "go_backwards" not in found and getattr(inner, "reverse", False) and \
                not found.get("bidirectional"):
            found["go_backwards"] = True
    cfg = Config(cell=found.pop("cell"))
    for key in ("units", "input_size", "batch", "time", "return_sequences", "return_state",
                "go_backwards", "bidirectional", "num_layers"):
        given = kw.get(key)
        if given is not None and key in found and found[key] is not None and found[key] != given:
            raise ValueError(f"{key}: {what!r} has {key}={found[key]!r}, got {given!r}")
        value = given if given is not None else found.get(key)
        if value is not None:
            setattr(cfg, key, value)
    for key in ("units", "input_size", "batch", "time", "num_layers"):
        setattr(cfg, key, _positive(getattr(cfg, key), key))
    for key in ("return_sequences", "return_state", "go_backwards", "bidirectional"):
        setattr(cfg, key, bool(getattr(cfg, key)))
    lengths = kw.get("lengths") if kw.get("lengths") is not None else found.get("lengths")
    if lengths is not None:
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu" or arr.shape != (cfg.batch,):
            raise ValueError(f"lengths: expected {cfg.batch} integers (one per sequence of the "
                             f"batch), got {lengths!r}")
        if arr.min() < 1 or arr.max() > cfg.time:
            raise ValueError(f"lengths: expected values in [1, {cfg.time}] (time={cfg.time}), "
                             f"got {arr.tolist()}")
        cfg.lengths = [int(n) for n in arr]
    if cfg.go_backwards and cfg.bidirectional:
        raise ValueError("go_backwards: a bidirectional layer already has a backward direction; "
                         "pass one of go_backwards and bidirectional")
    return cfg


def _from_result(res):
    """Sizes read off a result's arrays; lengths found where outputs turn zero for good."""
    from .layers.recurrent import BidirectionalResult, LSTMState
    out = np.asarray(res.outputs)
    h = np.asarray(res.state.h)
    if out.ndim != 3:
        raise ValueError(f"what: a result's outputs should be (B, T, U), got shape {out.shape}")
    found = {"cell": "LSTM" if isinstance(res.state, LSTMState) else "GRU"}
    found["batch"], found["time"] = out.shape[0], out.shape[1]
    found["num_layers"] = h.shape[0] if h.ndim == 3 else 1
    if isinstance(res, BidirectionalResult):
        found["bidirectional"] = True
        found["units"] = out.shape[2] // 2
    else:
        found["units"] = out.shape[2]
    nonzero = np.any(out != 0, axis=2)
    lengths = [int(np.nonzero(row)[0].max()) + 1 if row.any() else 1 for row in nonzero]
    if any(n < out.shape[1] for n in lengths):
        found["lengths"] = lengths
    found["return_sequences"] = found["return_state"] = True
    return found


# -- the four frameworks ---------------------------------------------------------------------------
def _lens(cfg):
    return cfg.lengths or [cfg.time] * cfg.batch


def _dims(cfg):
    B, T, U, L = cfg.batch, cfg.time, cfg.units, cfg.num_layers
    D = 2 if cfg.bidirectional else 1
    return B, T, U, L, D


def _has_c(cfg):
    return cfg.cell == "LSTM"


def _lstmkit(cfg, e):
    B, T, U, L, D = _dims(cfg)
    st = (B, U) if L == 1 else (L, B, U)
    args = [str(U)] + ([f"num_layers={L}"] if L > 1 else []) + (["reverse=True"] if cfg.go_backwards else [])
    layer = f"lstmkit.{cfg.cell}({', '.join(args)})"
    if cfg.bidirectional:
        layer = f"lstmkit.Bidirectional({layer})"
    call = f"res = {layer}(x" + (", lengths=lengths)" if cfg.lengths else ")")
    e.code["lstmkit"] = call
    top = "" if L == 1 else "the top layer's "
    vals = [Value("res.outputs", (B, T, D * U),
                  f"{top}h at every step, zero past each length"
                  + (", aligned with x (step t read x[:, t])" if cfg.go_backwards else "")
                  + ("; [forward | backward]" if D == 2 else ""))]
    stacked = "" if L == 1 else ", one per layer (layer 0 first)"
    if D == 1:
        vals.append(Value("res.h", st, f"h at each sequence's last valid step{stacked}"))
        if _has_c(cfg):
            vals.append(Value("res.c", st, "the cell state at the same step; never an output"))
    else:
        for d in ("forward", "backward"):
            where = "last valid step" if d == "forward" else "first step (it reads backwards)"
            vals.append(Value(f"res.{d}.h", st, f"{d} direction's h, at its {where}{stacked}"))
            if _has_c(cfg):
                vals.append(Value(f"res.{d}.c", st, f"{d} direction's cell state"))
        vals.append(Value("res.state.h", st[:-1] + (2 * U,), "[forward.h | backward.h]: starts a "
                          f"decoder of {2 * U} units"))
    e.values["lstmkit"] = vals
    top_h = "res.h" if L == 1 else "res.h[-1]"
    for b, n in enumerate(_lens(cfg)):
        if D == 1:
            t = 0 if cfg.go_backwards else n - 1
            e.claims.append(Claim("lstmkit", f"{top_h}[{b}]", f"res.outputs[{b}, {t}]", True,
                                  f"h is the output of the last step read ({'reversed ' if cfg.go_backwards else ''}"
                                  f"length {n})"))
        else:
            fh = "res.forward.h" if L == 1 else "res.forward.h[-1]"
            bh = "res.backward.h" if L == 1 else "res.backward.h[-1]"
            e.claims.append(Claim("lstmkit", f"{fh}[{b}]", f"res.outputs[{b}, {n - 1}, :{U}]", True,
                                  "forward h: output at the last valid step"))
            e.claims.append(Claim("lstmkit", f"{bh}[{b}]", f"res.outputs[{b}, 0, {U}:]", True,
                                  "backward h: output at step 0, the last it reads"))
        if n < T:
            e.claims.append(Claim("lstmkit", f"res.outputs[{b}, {n}:]", "0", True,
                                  f"padded steps output zero (layer masked_output='zero'; "
                                  f"'repeat' gives Keras's)"))


def _keras(cfg, e):
    B, T, U, L, D = _dims(cfg)
    opts = [str(U)]
    if cfg.return_sequences:
        opts.append("return_sequences=True")
    if cfg.return_state:
        opts.append("return_state=True")
    if cfg.go_backwards:
        opts.append("go_backwards=True")
    layer = f"keras.layers.{cfg.cell}({', '.join(opts)})"
    if D == 2:
        layer = f"keras.layers.Bidirectional({layer})"
    out_shape = (B, T, D * U) if cfg.return_sequences else (B, D * U)
    names = ["out"]
    vals = [Value("out", out_shape,
                  ("h at every step" if cfg.return_sequences else "h after the last step")
                  + (" (h itself, not a third state)" if cfg.return_state and D == 1 else "")
                  + (" of both directions, [forward | backward]" if D == 2 else "")
                  + (", in READING order: out[:, t] came after reading x[:, T-1-t]"
                     if cfg.go_backwards and cfg.return_sequences else ""))]
    if cfg.return_state:
        dirs = [""] if D == 1 else ["_fw", "_bw"]
        for d in dirs:
            vals.append(Value(f"h{d}", (B, U), f"final hidden state{' ' + d[1:] if d else ''}"))
            names.append(f"h{d}")
            if _has_c(cfg):
                vals.append(Value(f"c{d}", (B, U), f"final cell state{' ' + d[1:] if d else ''}"))
                names.append(f"c{d}")
    lhs = ", ".join(names) if len(names) > 1 else "out"
    mask = ", mask=mask" if cfg.lengths else ""
    e.code["keras"] = f"{lhs} = {layer}(x{mask})" + (
        "    # returns a list: [" + ", ".join(names) + "]" if cfg.return_state else "")
    e.values["keras"] = vals
    if L > 1:
        e.notes.append(f"Keras has no num_layers: stack {L} layers, all but the last with "
                       "return_sequences=True; each returns its own state. Shown: the top layer.")
    if cfg.lengths:
        e.notes.append("Keras takes no lengths: a mask (B, T) does it, from keras.layers.Masking or "
                       "Embedding(mask_zero=True), or mask= in the call. At a padded step the state is "
                       "carried and the output REPEATS the last valid output (TF1, PyTorch and lstmkit "
                       "output zero there)" + (", except in Bidirectional with return_sequences, "
                                               "which outputs zero." if D == 2 else "."))
    if not cfg.return_state:
        return
    for b, n in enumerate(_lens(cfg)):
        if D == 1:
            if cfg.return_sequences:
                if cfg.go_backwards:
                    e.claims.append(Claim("keras", f"h[{b}]", f"out[{b}, {T - 1}]", True,
                                          "go_backwards: h is the last output in reading order "
                                          "(after reading x[:, 0])"))
                else:
                    e.claims.append(Claim("keras", f"h[{b}]", f"out[{b}, {n - 1}]", True,
                                          "h is the output at the last valid step"))
                    if n < T:
                        e.claims.append(Claim("keras", f"out[{b}, {T - 1}]", f"h[{b}]", True,
                                              "a padded step repeats the last valid output"))
            else:
                e.claims.append(Claim("keras", f"out[{b}]", f"h[{b}]", True,
                                      "without return_sequences, out is the final h"))
        else:
            if cfg.return_sequences:
                e.claims.append(Claim("keras", f"h_fw[{b}]", f"out[{b}, {n - 1}, :{U}]", True,
                                      "forward h: output at the last valid step"))
                e.claims.append(Claim("keras", f"h_bw[{b}]", f"out[{b}, 0, {U}:]", True,
                                      "backward h: output at step 0, the last it reads"))
                if n < T:
                    e.claims.append(Claim("keras", f"out[{b}, {n}:]", "0", True,
                                          "padded steps are zero: Bidirectional sets "
                                          "zero_output_for_mask=True"))
            else:
                e.claims.append(Claim("keras", f"out[{b}]", f"np.concatenate([h_fw[{b}], h_bw[{b}]])",
                                      True, "without return_sequences, out is [h_fw | h_bw]"))


def _tf1(cfg, e):
    B, T, U, L, D = _dims(cfg)
    cells = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "BasicRNNCell"}
    cell = f"tf.compat.v1.nn.rnn_cell.{cells[cfg.cell]}({U})"
    if L > 1:
        cell = f"MultiRNNCell([{cell} for _ in range({L})])"
    seq = ", sequence_length=lengths" if cfg.lengths else ""
    if cfg.go_backwards:
        e.notes.append("TF1's dynamic_rnn has no go_backwards: reverse the input with "
                       "tf.reverse_sequence(x, lengths, seq_axis=1) (reverses within each length).")
    if D == 1:
        e.code["tf1"] = f"outputs, state = tf.compat.v1.nn.dynamic_rnn({cell}, x{seq}, dtype=tf.float32)"
        vals = [Value("outputs", (B, T, U), "h at every step, ZERO past each length (all steps "
                      "always: TF1 has no return_sequences)")]
        prefixes = ["state"] if L == 1 else [f"state[{k}]" for k in range(L)]
        for k, p in enumerate(prefixes):
            layer = "" if L == 1 else f" of layer {k}"
            if _has_c(cfg):
                vals.append(Value(f"{p}.c", (B, U), f"LSTMStateTuple field 0: c{layer} (c FIRST)"))
                vals.append(Value(f"{p}.h", (B, U), f"field 1: h{layer}, at the last valid step"))
            else:
                vals.append(Value(p, (B, U), f"h{layer} at the last valid step (the state is h alone)"))
        e.values["tf1"] = vals
        if _has_c(cfg):
            e.notes.append("TF1 LSTMCell and BasicLSTMCell: state_size is LSTMStateTuple(c=U, h=U); "
                           "with state_is_tuple=False the state is one (B, 2U) tensor [c | h].")
        top = prefixes[-1] + (".h" if _has_c(cfg) else "")
        for b, n in enumerate(_lens(cfg)):
            e.claims.append(Claim("tf1", f"{top}[{b}]", f"outputs[{b}, {n - 1}]", True,
                                  "final h = output at the last valid step"))
            if n < T:
                e.claims.append(Claim("tf1", f"outputs[{b}, {T - 1}]", f"{top}[{b}]", False,
                                      "past the length the output is zero, not h"))
                e.claims.append(Claim("tf1", f"outputs[{b}, {n}:]", "0", True, "zero past the length"))
    else:
        e.code["tf1"] = (f"outputs, state = tf.compat.v1.nn.bidirectional_dynamic_rnn({cell}, {cell}, x"
                         f"{seq}, dtype=tf.float32)")
        vals = [Value("outputs[0]", (B, T, U), "forward outputs, zero past each length"),
                Value("outputs[1]", (B, T, U), "backward outputs, aligned with x (reversed within "
                      "each length), zero past it")]
        for d, name in ((0, "forward"), (1, "backward")):
            prefixes = [f"state[{d}]"] if L == 1 else [f"state[{d}][{k}]" for k in range(L)]
            for p in prefixes:
                if _has_c(cfg):
                    vals.append(Value(f"{p}.c", (B, U), f"{name} c (LSTMStateTuple: c first)"))
                    vals.append(Value(f"{p}.h", (B, U), f"{name} h"))
                else:
                    vals.append(Value(p, (B, U), f"{name} h"))
        e.values["tf1"] = vals
        suffix = ".h" if _has_c(cfg) else ""
        last = "" if L == 1 else "[-1]"
        for b, n in enumerate(_lens(cfg)):
            e.claims.append(Claim("tf1", f"state[0]{last}{suffix}[{b}]", f"outputs[0][{b}, {n - 1}]",
                                  True, "forward h: output at the last valid step"))
            e.claims.append(Claim("tf1", f"state[1]{last}{suffix}[{b}]", f"outputs[1][{b}, 0]", True,
                                  "backward h: output at step 0"))


def _pytorch(cfg, e):
    B, T, U, L, D = _dims(cfg)
    mod = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN"}[cfg.cell]
    args = [str(cfg.input_size), str(U)] + ([f"num_layers={L}"] if L > 1 else []) + \
        (["bidirectional=True"] if D == 2 else []) + ["batch_first=True"]
    state = "(h_n, c_n)" if _has_c(cfg) else "h_n"
    if cfg.go_backwards:
        e.notes.append("PyTorch has no go_backwards: flip the input (within each length) yourself.")
    if cfg.lengths:
        e.code["pytorch"] = (f"packed = pack_padded_sequence(x, lengths, batch_first=True, "
                             f"enforce_sorted=False)\n"
                             f"  output, {state} = torch.nn.{mod}({', '.join(args)})(packed)\n"
                             f"  output, _ = pad_packed_sequence(output, batch_first=True, total_length={T})")
    else:
        e.code["pytorch"] = f"output, {state} = torch.nn.{mod}({', '.join(args)})(x)"
    vals = [Value("output", (B, T, D * U), "top layer's h at every step"
                  + (", zero past each length" if cfg.lengths else "")
                  + ("; [forward | backward]" if D == 2 else ""))]
    vals.append(Value("h_n", (L * D, B, U), "final h of every layer" + (" and direction: index "
                      "layer*2 + direction" if D == 2 else "")))
    if _has_c(cfg):
        vals.append(Value("c_n", (L * D, B, U), "final c, same indexing"))
    e.values["pytorch"] = vals
    for b, n in enumerate(_lens(cfg)):
        if D == 1:
            e.claims.append(Claim("pytorch", f"h_n[-1, {b}]", f"output[{b}, {n - 1}]", True,
                                  "final h = output at the last valid step"))
        else:
            e.claims.append(Claim("pytorch", f"h_n[-2, {b}]", f"output[{b}, {n - 1}, :{U}]", True,
                                  "top layer's forward h"))
            e.claims.append(Claim("pytorch", f"h_n[-1, {b}]", f"output[{b}, 0, {U}:]", True,
                                  "top layer's backward h: output at step 0"))
        if n < T:
            e.claims.append(Claim("pytorch", f"output[{b}, {n}:]", "0", True, "zero past the length"))


def _weights(cfg, e):
    I, U, cell = cfg.input_size, cfg.units, cfg.cell
    G = GATES[cell]
    k = GATE_BLOCKS[cell]
    D = 2 if cfg.bidirectional else 1
    gu = f"{G}U={G * U}" if G > 1 else f"U={U}"
    reset_after = cell == "GRU"
    kb = (2, G * U) if reset_after else (G * U,)
    e.weights["lstmkit/keras"] = [
        ("kernel", (I, G * U), f"x -> gates, column blocks {k['keras']}"),
        ("recurrent_kernel", (U, G * U), f"h -> gates, column blocks {k['keras']}"),
        ("bias", kb, ("row 0 input, row 1 recurrent bias (reset_after=True); " if reset_after else "")
         + ("+1 in the f block at init (unit_forget_bias)" if cell == "LSTM" else f"blocks {k['keras']}")),
    ]
    scope = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "basic_rnn_cell"}[cell]
    pre = "rnn/" if cfg.num_layers == 1 else "rnn/multi_rnn_cell/cell_0/"
    if D == 2:
        pre = "bidirectional_rnn/fw/" + ("" if cfg.num_layers == 1 else "multi_rnn_cell/cell_0/")
    if cell == "GRU":
        e.weights["tf1"] = [
            (f"{pre}{scope}/gates/kernel", (I + U, 2 * U), "rows [x; h], column blocks r u"),
            (f"{pre}{scope}/gates/bias", (2 * U,), "blocks r u (initialized to 1)"),
            (f"{pre}{scope}/candidate/kernel", (I + U, U), "rows [x; r*h]: reset BEFORE the matmul "
             "(= lstmkit GRU(reset_after=False))"),
            (f"{pre}{scope}/candidate/bias", (U,), ""),
        ]
    else:
        e.weights["tf1"] = [
            (f"{pre}{scope}/kernel", (I + U, G * U), f"rows [x; h] stacked, column blocks {k['tf1']}"
             + (f": {G} blocks of ({I + U}, {U})" if G > 1 else "")),
            (f"{pre}{scope}/bias", (G * U,), "forget_bias=1.0 is added at run time, not stored"
             if cell == "LSTM" else ""),
        ]
    sfx = "_l0" + ("_reverse" if False else "")
    e.weights["pytorch"] = [
        (f"weight_ih{sfx}", (G * U, I), f"x -> gates (transposed), row blocks {k['pytorch']}"),
        (f"weight_hh{sfx}", (G * U, U), f"row blocks {k['pytorch']}"),
        (f"bias_ih{sfx}", (G * U,), "bias_ih + bias_hh = Keras bias" if cell != "GRU"
         else "= Keras bias[0] reordered"),
        (f"bias_hh{sfx}", (G * U,), "" if cell != "GRU" else "= Keras bias[1] reordered"),
    ]
    e.weights["onnx"] = [
        ("W", (D, G * U, I), f"row blocks {k['onnx']}"),
        ("R", (D, G * U, U), f"row blocks {k['onnx']}"),
        ("B", (D, 2 * G * U), "[input bias | recurrent bias]"),
    ]
    if cfg.num_layers > 1:
        e.notes.append(f"Layers 1..{cfg.num_layers - 1} read layer k-1's outputs: their input size is "
                       f"{D * U} (kernel ({D * U}, {gu.split('=')[-1]})); PyTorch names them _l1, _l2...; "
                       "TF1 cell_1, cell_2...")
    if D == 2:
        e.notes.append("Backward direction: PyTorch suffix _reverse (weight_ih_l0_reverse), TF1 scope "
                       "bidirectional_rnn/bw/, Keras Bidirectional's backward_layer, ONNX W[1].")


# -- text --------------------------------------------------------------------------------------------
def _shape(s):
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


TITLES = {"lstmkit": "lstmkit", "keras": "Keras (Keras 3 and tf.keras)",
          "tf1": "TF1 (tf.compat.v1.nn)", "pytorch": "PyTorch (torch.nn)"}


def _render(e):
    c = e.config
    B, T, U, L, D = _dims(c)
    lines = []
    flags = [f for f in ("return_sequences", "return_state", "go_backwards", "bidirectional")
             if getattr(c, f)]
    lines.append(f"{c.cell}: units U={U}, input size I={c.input_size}, batch B={B}, time T={T}"
                 + (f", num_layers={L}" if L > 1 else "")
                 + (f", lengths={c.lengths}" if c.lengths else "") + ("; " + ", ".join(flags) if flags else ""))
    lines.append(f"x: {_shape((B, T, c.input_size))} = (B, T, I), batch-major")
    for fw in FRAMEWORKS:
        lines.append("")
        lines.append(f"{TITLES[fw]}:")
        lines.append(f"  {e.code[fw]}")
        width = max(len(v.name) for v in e.values[fw])
        for v in e.values[fw]:
            lines.append(f"    {v.name:<{width}}  {_shape(v.shape):<12} {v.meaning}")
        claims = [cl for cl in e.claims if cl.framework == fw]
        for cl in claims:
            op = "==" if cl.equal else "!="
            lines.append(f"    {cl.lhs} {op} {cl.rhs}    # {cl.why}")
    lines.append("")
    lines.append("Same value across frameworks" + (" (all row-for-row equal for the same weights):"
                                                   if not c.go_backwards else ":"))
    if _has_c(c):
        pairs = [("h", "res.h", "h" if D == 1 else "h_fw / h_bw",
                  "state.h" if L == 1 else "state[-1].h", "h_n[-1]" if D == 1 else "h_n[-2] / h_n[-1]"),
                 ("c", "res.c", "c" if D == 1 else "c_fw / c_bw",
                  "state.c" if L == 1 else "state[-1].c", "c_n[-1]" if D == 1 else "c_n[-2] / c_n[-1]")]
    else:
        pairs = [("h", "res.h", "h" if D == 1 else "h_fw / h_bw", "state" if L == 1 else "state[-1]",
                  "h_n[-1]" if D == 1 else "h_n[-2] / h_n[-1]")]
    if D == 2:
        pairs = [(p[0], f"res.forward.{p[0]} / res.backward.{p[0]}", p[2],
                  f"state[0].{p[0]} / state[1].{p[0]}" if _has_c(c) else "state[0] / state[1]", p[4])
                 for p in pairs]
    if not c.return_state:
        pairs = [(p[0], p[1], "(needs return_state=True)", p[3], p[4]) for p in pairs]
    for name, lk, ke, t1, pt in pairs:
        lines.append(f"  {name}: lstmkit {lk} = Keras {ke} = TF1 {t1} = PyTorch {pt}")
    if c.lengths and D == 2:
        lines.append("  outputs: equal at valid steps, and 0 past each length in all four (Keras's "
                     "Bidirectional zeroes them)")
    elif c.lengths:
        lines.append("  outputs: equal at valid steps; past a length Keras repeats the last output, the "
                     "others give 0")
    if c.go_backwards:
        lines.append("  go_backwards: Keras out[:, t] = lstmkit res.outputs[:, T-1-t] (Keras keeps "
                     "reading order, lstmkit reverse=True aligns outputs with x)")
    lines.append("")
    lines.append("Pass the state on (encoder -> decoder): both h and c for an LSTM")
    if _has_c(c):
        lines.append("  lstmkit: initial_state=res.state (LSTMState(h, c), named)   Keras: "
                     "initial_state=[h, c]")
        lines.append("  TF1: initial_state=state (LSTMStateTuple(c, h): c first)   PyTorch: (h_n, c_n)")
    else:
        lines.append(f"  a {c.cell} carries h only: lstmkit initial_state=res.state, Keras [h], TF1 state, "
                     "PyTorch h_n")
    lines.append("")
    lines.append("Weights (U units, I inputs, gate blocks of U columns/rows each):")
    for fw, items in e.weights.items():
        lines.append(f"  {fw}:")
        for name, shape, blocks in items:
            lines.append(f"    {name:<34} {_shape(shape):<12} {blocks}")
    if e.notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"  - {n}" for n in e.notes)
    return "\n".join(lines)


# -- picture -----------------------------------------------------------------------------------------
def plot_unrolled(cfg, path, sequence=None):
    """Draw the network unrolled over time as a PNG: one box per step and layer (and direction), h
    (solid) and c (dashed) arrows between steps, x below and outputs above. Steps past the length of
    ``sequence`` (default: the shortest) are grey; the final state leaves the last valid step."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyBboxPatch
    except ImportError as err:
        raise ImportError("plot: drawing needs matplotlib: pip install lstmkit[plot]") from err
    if isinstance(cfg, Explanation):
        cfg = cfg.config
    B, T, U, L, D = _dims(cfg)
    lens = _lens(cfg)
    b = int(np.argmin(lens)) if sequence is None else sequence
    n = lens[b]
    rows = [(k, d) for k in range(L) for d in range(D)]
    fig, ax = plt.subplots(figsize=(1.8 * T + 2.5, 1.6 * len(rows) + 2))
    for r, (k, d) in enumerate(rows):
        y = 1.0 + 1.6 * r
        backward = d == 1 or cfg.go_backwards
        for t in range(T):
            valid = t < n
            ax.add_patch(FancyBboxPatch((t * 1.8, y), 1.0, 0.8, boxstyle="round,pad=0.05",
                                        fc="#cfe3ff" if valid else "#e6e6e6",
                                        ec="#1f4e9c" if valid else "#999999"))
            ax.text(t * 1.8 + 0.5, y + 0.4, f"{cfg.cell}\nt={t}", ha="center", va="center", fontsize=8)
            if r == 0:
                ax.annotate("", (t * 1.8 + 0.5, y), (t * 1.8 + 0.5, y - 0.5),
                            arrowprops=dict(arrowstyle="->", color="k"))
                ax.text(t * 1.8 + 0.5, y - 0.7, f"x[{b}, {t}]", ha="center", fontsize=8)
            if r == len(rows) - 1:
                ax.annotate("", (t * 1.8 + 0.3, y + 1.3), (t * 1.8 + 0.3, y + 0.8),
                            arrowprops=dict(arrowstyle="->", color="green"))
                ax.text(t * 1.8 + 0.3, y + 1.4, f"out[{b},{t}]" + ("" if valid else "=0"),
                        ha="center", fontsize=7, color="green")
        # Within the length the state flows step to step; past it the state is only carried.
        order = range(T - 1, 0, -1) if backward else range(T - 1)
        for t in order:
            src, dst = (t, t - 1) if backward else (t, t + 1)
            live = max(src, dst) < n
            x0 = src * 1.8 + (0.0 if backward else 1.0)
            x1 = dst * 1.8 + (1.0 if backward else 0.0)
            hc, cc = ("C0", "C3") if live else ("#aaaaaa", "#aaaaaa")
            ax.annotate("", (x1, y + 0.6), (x0, y + 0.6), arrowprops=dict(arrowstyle="->", color=hc))
            ax.text((x0 + x1) / 2, y + 0.65, "h" if live else "h carried", ha="center", fontsize=7,
                    color=hc)
            if _has_c(cfg):
                ax.annotate("", (x1, y + 0.2), (x0, y + 0.2),
                            arrowprops=dict(arrowstyle="->", color=cc, linestyle="--"))
                ax.text((x0 + x1) / 2, y + 0.25, "c" if live else "c carried", ha="center",
                        fontsize=7, color=cc)
        last = 0 if backward else n - 1
        label = "final h, c" if _has_c(cfg) else "final h"
        ax.annotate(f"{label} (from t={last})", (last * 1.8 + 0.9, y + 0.85),
                    (T * 1.8 + 0.1, y + 1.0), fontsize=8, color="purple",
                    arrowprops=dict(arrowstyle="<-", color="purple"))
        ax.text(-0.4, y + 0.4, f"layer {k}" + ("" if D == 1 else [" fw", " bw"][d]), ha="right",
                va="center", fontsize=8)
    ax.set_xlim(-1.6, T * 1.8 + 2.6)
    ax.set_ylim(-0.2, 1.6 * len(rows) + 1.6)
    ax.set_axis_off()
    ax.set_title(f"{cfg.cell} unrolled, sequence {b} (length {n} of {T})", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# -- command line --------------------------------------------------------------------------------------
def add_parser(sub):
    """Register ``lstmkit explain`` on an argparse sub-parser collection."""
    p = sub.add_parser("explain", help="what each value a recurrent layer returns is, in lstmkit, "
                                       "Keras, TF1 and PyTorch terms")
    p.add_argument("cell", nargs="?", default="lstm", choices=sorted(CELLS))
    p.add_argument("--units", type=int, default=4)
    p.add_argument("--input-size", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--time", type=int, default=3)
    p.add_argument("--lengths", type=_int_list, default=None, help="comma-separated, e.g. 3,1")
    p.add_argument("--num-layers", type=int, default=1)
    for flag in ("return-sequences", "return-state", "go-backwards", "bidirectional"):
        p.add_argument(f"--{flag}", action="store_true")
    p.add_argument("--plot", metavar="PNG", default=None, help="draw the unrolled network there")
    p.set_defaults(func=_cli)
    return p


def _int_list(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _cli(args):
    try:
        e = explain(args.cell, units=args.units, input_size=args.input_size, batch=args.batch,
                    time=args.time, lengths=args.lengths, return_sequences=args.return_sequences,
                    return_state=args.return_state, go_backwards=args.go_backwards,
                    bidirectional=args.bidirectional, num_layers=args.num_layers, plot=args.plot)
    except (ValueError, TypeError, ImportError) as err:
        import sys
        print(f"lstmkit explain: {err}", file=sys.stderr)
        return 2
    print(e)
    if args.plot:
        print(f"\nwrote {args.plot}")
    return 0
