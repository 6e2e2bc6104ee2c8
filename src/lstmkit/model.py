"""Input, the functional Model and Sequential: run a graph of layers forward, back-propagate in reverse.

Calling a layer on a symbolic tensor (from :func:`Input`) does not compute anything: it records a
:class:`Node` (which layer, called on which tensors, with which other arguments) and returns symbolic
outputs of the right shapes. ``Model(inputs, outputs)`` then walks the recorded graph::

    x = Input(shape=(None, 8))                   # (batch, time, features); None: any size
    out, h, c = LSTM(16, return_state=True)(x)   # symbolic: shapes (None, 16) three times
    model = Model(x, [out, h, c])
    out, h, c = model.predict(data)              # arrays

A Model is itself a Layer: ``params``/``grads`` hold every layer's parameters (the same arrays, named
``"<layer class, numbered within the model>/<param>"``: ``lstm/kernel``, ``lstm_1/kernel``,
``dense/bias``, the same in every model built by the same code, see :func:`param_prefixes`),
``forward(inputs, training) -> (outputs, cache)`` runs the nodes in a topological order, and
``backward(cache, d_outputs)`` visits them in reverse, adding into each layer's ``grads`` and
returning the gradients of the inputs.

What a layer must provide to live in a graph (the Keras-named layers of ``lstmkit.keras`` do):

* ``forward(*args, training=False, **kwargs) -> (outputs, cache)``, outputs an array or a list of them;
* ``backward(cache, d_outputs)`` returning gradients for the arrays the call received, in the order
  they appear in ``(args, kwargs)`` (``mask`` excluded), nested however the layer likes (e.g.
  ``[d_x, d_h, d_c]`` for ``lstm(x, initial_state=[h, c])``); None for an array without gradient;
* optionally Keras's masking: ``supports_masking = True``, a ``mask=`` keyword in ``forward`` and
  ``compute_mask(inputs, mask)`` giving the outputs' mask. Masks (``(batch, time)`` booleans, True at
  valid steps) travel beside the values, from ``Embedding(mask_zero=True)`` or ``Masking`` to the
  recurrent layers, and carry no gradient. As in Keras 3, a layer receives its input's mask only
  when called with a single tensor argument (``lstm(x, initial_state=[h, c])`` does not: pass
  ``mask=`` explicitly), and its outputs' mask is computed from its first argument's.
"""
import collections
import contextlib

import numpy as np

from .layers.base import Layer, _snake, unique_name


# -- nested structures: lists/tuples of arrays or tensors ------------------------------------------
def flatten(struct):
    if isinstance(struct, (list, tuple)):
        return [leaf for item in struct for leaf in flatten(item)]
    return [struct]


def pack_like(struct, flat):
    """Inverse of :func:`flatten`: rebuild ``struct``'s nesting (lists) from the leaves ``flat``."""
    flat = iter(flat)

    def build(s):
        if isinstance(s, (list, tuple)):
            return [build(item) for item in s]
        return next(flat)
    return build(struct)


def map_structure(fn, struct):
    return pack_like(struct, [fn(leaf) for leaf in flatten(struct)])


# -- symbolic tensors and nodes ----------------------------------------------------------------------
class SymbolicTensor:
    """A placeholder for an array in a graph: ``shape`` (None where any size fits, batch first),
    ``dtype``, and the node (layer call) that produces it."""

    def __init__(self, shape, dtype, node, index):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index        # position among the node's flattened outputs

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return (f"<SymbolicTensor shape={self.shape} dtype={self.dtype.name} "
                f"from {self.node.layer.name!r}>")

    def __iter__(self):
        raise TypeError(f"cannot unpack a single symbolic tensor of shape {self.shape}; a layer "
                        "returns a list only when asked (e.g. return_state=True)")

    def __array__(self, *args, **kwargs):
        raise TypeError("a symbolic tensor (from Input) has no values: call Keras-named layers "
                        "(lstmkit.keras.layers) on it to build a graph, then Model(inputs, outputs)"
                        ".predict(arrays) gives arrays")


def is_symbolic(*structs):
    return any(isinstance(leaf, SymbolicTensor) for s in structs for leaf in flatten(s))


class Node:
    """One call of a layer inside a graph: ``layer(*args, **kwargs) -> outputs``.

    ``leaves`` are the arrays among the arguments, symbolic or given, in order (an explicit ``mask``
    apart): the layer's ``backward`` returns one gradient per leaf. ``inputs`` are the symbolic
    leaves, ``tensor_args`` the arguments holding any, ``outputs`` the layer's result (a tensor or a
    list of tensors).
    """

    def __init__(self, layer, args, kwargs, outputs):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        arguments = list(args) + [v for k, v in kwargs.items() if k != "mask"]
        self.leaves = [t for t in flatten(arguments) if isinstance(t, (SymbolicTensor, np.ndarray))]
        self.inputs = [t for t in self.leaves if isinstance(t, SymbolicTensor)]
        self.tensor_args = [a for a in arguments
                            if any(isinstance(t, (SymbolicTensor, np.ndarray)) for t in flatten(a))]
        self.outputs = outputs
        self.flat_outputs = flatten(outputs)

    @property
    def is_input(self):
        return isinstance(self.layer, InputLayer)


class InputLayer(Layer):
    """The layer behind :func:`Input`: no parameters, appears in ``Model.summary()``."""

    def __init__(self, shape, dtype, name=None):
        super().__init__(name=name or unique_name("input_layer"))
        self.batch_shape = tuple(shape)
        self.input_dtype = np.dtype(dtype)
        self.built = True


def Input(shape, dtype="float32", name=None, batch_size=None):
    """A symbolic input of one example's ``shape`` (None for a size that varies, e.g. time).

    The batch axis is added in front: ``Input(shape=(None, 8)).shape == (None, None, 8)``; pass
    ``batch_size`` to fix it (stateful recurrent layers need one). ``dtype`` "int32"/"int64" for token ids.
    """
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            d is None or (isinstance(d, (int, np.integer)) and d >= 0) for d in shape):
        raise TypeError(f"shape: expected a tuple of sizes (int or None) without the batch axis, "
                        f"got {shape!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected a NumPy dtype name such as 'float32' or 'int32', "
                        f"got {dtype!r}") from None
    layer = InputLayer((batch_size, *shape), dtype, name)
    node = Node(layer, (), {}, None)
    node.outputs = SymbolicTensor(layer.batch_shape, dtype, node, 0)
    node.flat_outputs = [node.outputs]
    return node.outputs


# -- calling a layer on symbolic tensors ----------------------------------------------------------
_PROBING = False


def probing():
    """True while :func:`symbolic_call` runs a layer on example arrays to learn its output shapes;
    stateful layers must not keep the state of such a run."""
    return _PROBING


@contextlib.contextmanager
def _probe():
    global _PROBING
    old, _PROBING = _PROBING, True
    try:
        yield
    finally:
        _PROBING = old


def _example(t, free):
    return np.zeros(tuple(free if d is None else d for d in t.shape), t.dtype)


def symbolic_call(layer, args, kwargs):
    """Record ``layer(*args, **kwargs)`` on symbolic tensors; returns symbolic outputs.

    The output shapes are found by running the layer on small zero arrays, once with every unknown
    size (batch, time) set to 2 and once set to 3: a size that follows along is unknown (None). This
    also builds the layer's parameters, as Keras does on the first symbolic call.
    """
    results = []
    for free in (2, 3):
        to_array = (lambda v: _example(v, free) if isinstance(v, SymbolicTensor) else v)
        a = [map_structure(to_array, v) for v in args]
        kw = {k: map_structure(to_array, v) for k, v in kwargs.items()}
        try:
            with _probe():
                out, _ = layer.forward(*a, training=False, **kw)
        except (ValueError, TypeError) as err:
            shapes = [t.shape for t in flatten([list(args), list(kwargs.values())])
                      if isinstance(t, SymbolicTensor)]
            raise type(err)(f"{err} [calling layer {layer.name!r} on symbolic input(s) of shape "
                            f"{', '.join(map(str, shapes))}; each unknown size (None) was tried as "
                            f"{free}]") from None
        results.append(out)
    node = Node(layer, tuple(args), dict(kwargs), None)
    flat2, flat3 = flatten(results[0]), flatten(results[1])
    tensors = [SymbolicTensor([d if d == e else None for d, e in zip(o2.shape, o3.shape)],
                              o2.dtype, node, i) for i, (o2, o3) in enumerate(zip(flat2, flat3))]
    node.outputs = pack_like(results[0], tensors) if isinstance(results[0], (list, tuple)) else tensors[0]
    node.flat_outputs = tensors
    return node.outputs


# -- the graph: topological order and Keras's layer order -------------------------------------------
def _map_graph(outputs):
    """Nodes from the inputs to ``outputs`` in a topological order, and the layers in Keras's order
    (by decreasing depth from the outputs, ties by first visit in a depth-first walk from the
    outputs): the order of ``model.layers`` and of ``get_weights()``."""
    nodes, done, visiting, first_visit = [], set(), set(), {}

    def visit(tensor):
        node = tensor.node
        if id(node) in done:
            return
        if id(node) in visiting:
            raise ValueError(f"the graph has a cycle through layer {node.layer.name!r}")
        first_visit.setdefault(id(node.layer), len(first_visit))
        visiting.add(id(node))
        for t in node.inputs:
            visit(t)
        visiting.discard(id(node))
        done.add(id(node))
        nodes.append(node)

    for t in outputs:
        visit(t)
    depth = {}
    layer_depth, layers = {}, {}
    for node in reversed(nodes):
        d = max(depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = d
        layers[id(node.layer)] = node.layer
        depth[id(node)] = d
        for t in node.inputs:
            depth[id(t.node)] = max(depth.get(id(t.node), 0), d + 1)
    order = sorted(layers, key=lambda k: (-layer_depth[k], first_visit[k]))
    return nodes, [layers[k] for k in order]


def param_prefixes(layers):
    """The prefix of each layer's parameters in a model's ``params``: its class in snake case,
    numbered per class in the model's layer order (``lstm``, ``lstm_1``, ``dense``), as Keras 3 keys
    the layers in a weights file.

    Not the layer's name: automatic names come from a counter that runs for the whole process, so a
    second identical model gets ``lstm_2`` where the first has ``lstm``. These prefixes depend only on
    the model's structure, so two models built by the same code have the same keys and a checkpoint of
    one loads into the other, in this process or another.
    """
    counts, prefixes = collections.Counter(), []
    for layer in layers:
        base = _snake(type(layer).__name__)
        prefixes.append(base if counts[base] == 0 else f"{base}_{counts[base]}")
        counts[base] += 1
    return prefixes


GraphCache = collections.namedtuple("GraphCache", ["nodes", "output_masks"])


class Model(Layer):
    """A graph of layers from ``inputs`` to ``outputs`` (a tensor or a list of them, each).

    Call it on arrays (``model(x)``, ``model.predict(x)``), or on symbolic tensors to use it as a
    layer of a bigger model. Inputs are given as the model was built: one array, or a list.
    """

    def __init__(self, inputs, outputs, *, name=None):
        super().__init__(name=name or unique_name("functional"))
        self._init_graph(inputs, outputs)

    def _init_graph(self, inputs, outputs):
        self.inputs = inputs
        self.outputs = outputs
        flat_in, flat_out = flatten(inputs), flatten(outputs)
        for arg, flat in (("inputs", flat_in), ("outputs", flat_out)):
            for t in flat:
                if not isinstance(t, SymbolicTensor):
                    raise TypeError(f"{arg}: expected symbolic tensors (from Input(...) and layer "
                                    f"calls on them), got {type(t).__name__}")
        for t in flat_in:
            if not t.node.is_input:
                raise ValueError(f"inputs: {t} is not an Input(...); a model starts at Input tensors")
        nodes, layers = _map_graph(flat_out)
        known = {id(t) for t in flat_in}
        for node in nodes:
            if node.is_input and id(node.outputs) not in known:
                raise ValueError(f"outputs: they depend on input {node.layer.name!r}, which is not "
                                 "among the model's inputs")
        names = collections.Counter(layer.name for layer in layers)
        dup = [n for n, k in names.items() if k > 1]
        if dup:
            raise ValueError(f"layer names must be unique within a model; repeated: {dup}")
        self._flat_inputs, self._flat_outputs = flat_in, flat_out
        self._nodes = [n for n in nodes if not n.is_input]
        input_layers = [t.node.layer for t in flat_in]
        self.layers = input_layers + [l for l in layers if l not in input_layers]
        self.params, self.grads = {}, {}
        for layer, prefix in zip(self.layers, param_prefixes(self.layers)):
            for key in layer.params:
                self.params[f"{prefix}/{key}"] = layer.params[key]
                self.grads[f"{prefix}/{key}"] = layer.grads[key]
        self.built = True

    @property
    def input(self):
        return self.inputs

    @property
    def output(self):
        return self.outputs

    # -- weights ----------------------------------------------------------------------------------
    def get_layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"name: no layer {name!r} in model {self.name!r}; layers are "
                         f"{[l.name for l in self.layers]}")

    def get_weights(self):
        """Every layer's weights, layer by layer in Keras's order (as ``keras.Model.get_weights``)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        want = sum(len(layer.get_weights()) for layer in self.layers)
        if len(weights) != want:
            raise ValueError(f"weights: model {self.name!r} expects a list of {want} arrays, got "
                             f"{len(weights)}")
        for layer in self.layers:
            k = len(layer.get_weights())
            if k:
                layer.set_weights(weights[:k])
                weights = weights[k:]

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    # -- running ----------------------------------------------------------------------------------
    def _feed(self, inputs):
        if isinstance(inputs, dict):
            names = [t.node.layer.name for t in self._flat_inputs]
            missing = [n for n in names if n not in inputs]
            if missing:
                raise ValueError(f"inputs: missing {missing} (the model's inputs are {names})")
            flat = [inputs[n] for n in names]
        else:
            flat = flatten(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(flat) != len(self._flat_inputs):
            raise ValueError(f"inputs: model {self.name!r} takes {len(self._flat_inputs)} input "
                             f"array(s), got {len(flat)}")
        arrays = []
        for t, x in zip(self._flat_inputs, flat):
            x = np.asarray(x)
            if t.dtype.kind == "f" and x.dtype.kind in "fiub":
                x = x.astype(t.dtype, copy=False)
            if x.ndim != len(t.shape) or any(d is not None and d != s for d, s in zip(t.shape, x.shape)):
                raise ValueError(f"inputs: {t.node.layer.name!r} expects shape {t.shape}, got {x.shape}")
            arrays.append(x)
        return arrays

    def forward(self, inputs, *, training=False):
        """Run the graph. Returns ``(outputs, cache)``; outputs shaped as the model's ``outputs``.
        ``cache.output_masks`` holds the mask each output carries (None, or (batch, time) booleans),
        which Keras applies to the loss."""
        values, masks = {}, {}
        arrays = self._feed(inputs)          # first: an unbuilt Sequential builds itself here
        for t, x in zip(self._flat_inputs, arrays):
            values[id(t)], masks[id(t)] = x, None
        value = lambda v: values[id(v)] if isinstance(v, SymbolicTensor) else v
        caches = []
        for node in self._nodes:
            args = [map_structure(value, a) for a in node.args]
            kwargs = {k: map_structure(value, v) for k, v in node.kwargs.items()}
            layer = node.layer
            masking = getattr(layer, "supports_masking", False)
            if masking and len(node.tensor_args) == 1 and kwargs.get("mask") is None:
                # Keras 3 hands the mask over only when the call has ONE tensor argument: a
                # recurrent layer called with initial_state=[h, c] does not see its input's mask.
                mask = map_structure(lambda t: masks.get(id(t)), node.tensor_args[0])
                if any(m is not None for m in flatten(mask)):
                    kwargs["mask"] = mask
            previous_mask = kwargs.get("mask")
            if previous_mask is None and node.args:
                previous_mask = map_structure(
                    lambda t: masks.get(id(t)) if isinstance(t, SymbolicTensor) else None, node.args[0])
                if all(m is None for m in flatten(previous_mask)):
                    previous_mask = None
            out, cache = layer.forward(*args, training=training, **kwargs)
            out_mask = layer.compute_mask(args[0], previous_mask) if masking else None
            flat_out = flatten(out)
            flat_mask = flatten(out_mask) if isinstance(out_mask, (list, tuple)) else \
                [out_mask] + [None] * (len(flat_out) - 1)
            for t, v, m in zip(node.flat_outputs, flat_out, flat_mask):
                values[id(t)], masks[id(t)] = v, m
            caches.append((node, cache, [(v.shape, v.dtype) for v in flat_out]))
        outputs = map_structure(lambda t: values[id(t)], self.outputs)
        return outputs, GraphCache(caches, map_structure(lambda t: masks[id(t)], self.outputs))

    def backward(self, cache, d_outputs):
        """Back-propagate ``d_outputs`` (shaped as the outputs; None for an output without loss).

        Adds every parameter's gradient into its layer's ``grads`` (a layer called several times
        gets the sum) and returns the gradients of the inputs, shaped as the model's ``inputs``
        (None for integer inputs such as token ids)."""
        grads = {}

        def add(t, g):
            if g is not None:
                grads[id(t)] = g if id(t) not in grads else grads[id(t)] + g

        flat_d = flatten(d_outputs) if isinstance(self.outputs, (list, tuple)) else [d_outputs]
        if len(flat_d) != len(self._flat_outputs):
            raise ValueError(f"d_outputs: expected {len(self._flat_outputs)} gradient(s), one per "
                             f"output, got {len(flat_d)}")
        for t, g in zip(self._flat_outputs, flat_d):
            add(t, None if g is None else np.asarray(g))
        for node, layer_cache, out_specs in reversed(cache.nodes):
            d_out = [grads.get(id(t)) for t in node.flat_outputs]
            if all(g is None for g in d_out):
                continue
            d_out = [np.zeros(shape, dtype) if g is None else g
                     for g, (shape, dtype) in zip(d_out, out_specs)]
            d_out = pack_like(node.outputs, d_out) if isinstance(node.outputs, list) else d_out[0]
            d_in = flatten(node.layer.backward(layer_cache, d_out))
            if len(d_in) != len(node.leaves):
                raise RuntimeError(f"layer {node.layer.name!r} returned {len(d_in)} input "
                                   f"gradient(s) for {len(node.leaves)} input array(s)")
            for t, g in zip(node.leaves, d_in):
                if isinstance(t, SymbolicTensor):
                    add(t, g)
        d_inputs = [grads.get(id(t)) for t in self._flat_inputs]
        return pack_like(self.inputs, d_inputs) if isinstance(self.inputs, (list, tuple)) else d_inputs[0]

    def __call__(self, inputs, *, training=False, mask=None):
        if is_symbolic(inputs):
            return symbolic_call(self, (inputs,), {})
        return self.forward(inputs, training=training)[0]

    def predict(self, x, batch_size=32, verbose=0, steps=None, callbacks=None):
        """Run the model on ``x`` in batches of ``batch_size`` rows; returns the outputs as arrays."""
        arrays = self._feed(x)
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ValueError(f"x: every input needs the same number of rows, got "
                             f"{[a.shape[0] for a in arrays]}")
        if batch_size is None:
            batch_size = 32
        parts = []
        for start in range(0, max(n, 1), int(batch_size)):
            batch = [a[start:start + batch_size] for a in arrays]
            out, _ = self.forward(batch if len(batch) > 1 else batch[0], training=False)
            parts.append(flatten(out) if isinstance(self.outputs, (list, tuple)) else [out])
        flat = [np.concatenate(p, axis=0) for p in zip(*parts)]
        return pack_like(self.outputs, flat) if isinstance(self.outputs, (list, tuple)) else flat[0]

    # -- description ------------------------------------------------------------------------------
    def count_params(self):
        return int(sum(layer.count_params() for layer in self.layers))

    def summary(self, print_fn=None, line_length=None):
        """Print Keras's table: each layer, its output shape(s) and parameter count."""
        if not self.built:
            raise ValueError(f"model {self.name!r} is not built yet: start it with Input(shape), "
                             "call build(input_shape), or run it on a batch first")
        print_fn = print_fn or print
        calls = collections.Counter(id(n.layer) for n in self._nodes)
        sequential_like = isinstance(self, Sequential) or (
            all(k == 1 for k in calls.values()) and all(len(n.inputs) <= 1 for n in self._nodes)
            and len(self._flat_inputs) == 1)
        header = ["Layer (type)", "Output Shape", "Param #"]
        rows = []
        show_inputs = not isinstance(self, Sequential)
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                if show_inputs:
                    rows.append([f"{layer.name} (InputLayer)", _shape_text(layer.batch_shape), "0",
                                 "-"])
                continue
            nodes = [n for n in self._nodes if n.layer is layer]
            shapes = [_shape_text([t.shape for t in n.flat_outputs] if isinstance(n.outputs, list)
                                  else n.outputs.shape) for n in nodes]
            conn = ", ".join(f"{t.node.layer.name}[0][{t.index}]" for n in nodes for t in n.inputs)
            rows.append([f"{layer.name} ({type(layer).__name__})", ", ".join(shapes),
                         f"{layer.count_params():,}", conn or "-"])
        if sequential_like:
            rows = [r[:3] for r in rows]
        else:
            header.append("Connected to")
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(header)]

        def line(cells, left, mid, right):
            return left + mid.join(f" {c.rjust(w) if i == 2 else c.ljust(w)} "
                                   for i, (c, w) in enumerate(zip(cells, widths))) + right

        rule = lambda l, m, r, ch: l + m.join(ch * (w + 2) for w in widths) + r
        total = self.count_params()
        out = [f'Model: "{self.name}"', rule("┏", "┳", "┓", "━"), line(header, "┃", "┃", "┃"),
               rule("┡", "╇", "┩", "━")]
        for i, r in enumerate(rows):
            if i:
                out.append(rule("├", "┼", "┤", "─"))
            out.append(line(r, "│", "│", "│"))
        out.append(rule("└", "┴", "┘", "─"))
        nbytes = sum(p.nbytes for p in self.params.values())
        out += [f" Total params: {total:,} ({_size_text(nbytes)})",
                f" Trainable params: {total:,} ({_size_text(nbytes)})",
                " Non-trainable params: 0 (0.00 B)"]
        for text in out:
            print_fn(text)


def _shape_text(shape):
    if isinstance(shape, list):
        return "[" + ", ".join(_shape_text(s) for s in shape) + "]"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _size_text(nbytes):
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024


class Sequential(Model):
    """A stack of layers, each reading the previous one's output.

    Start it with ``Input(shape)`` (or give the first layer ``input_shape=``), or let the first call
    on an array fix the input shape::

        model = Sequential([Input((None, 8)), LSTM(16), Dense(1)])
    """

    def __init__(self, layers=None, *, name=None):
        Layer.__init__(self, name=name or unique_name("sequential"))
        self._input, self.outputs = None, None
        self._stack = []
        self.layers, self.built = [], False
        for layer in layers or ():
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, SymbolicTensor):
            if self._input is not None or self._stack:
                raise ValueError("layer: an Input can only start a Sequential model")
            self._input = layer
            return
        if not hasattr(layer, "forward") or not hasattr(layer, "backward"):
            raise TypeError(f"layer: expected a layer, got {type(layer).__name__}")
        if self._input is None and not self._stack and getattr(layer, "input_shape", None):
            self._input = Input(layer.input_shape)
        self._stack.append(layer)
        if self._input is not None:
            self._build_graph(self._stack[-1:] if self.built else self._stack)

    def pop(self):
        layer = self._stack.pop()
        self.built = False
        if self._input is not None and self._stack:
            self._build_graph(self._stack)
        return layer

    def _build_graph(self, new_layers):
        """Call ``new_layers`` in turn on the current output (on the input at first)."""
        t = self.outputs if self.built else self._input
        for layer in new_layers:
            t = layer(t)
            if isinstance(t, list):
                raise ValueError(f"layer {layer.name!r} returns {len(t)} tensors; a Sequential model "
                                 "needs one output per layer (use the functional Model)")
        self._init_graph(self._input, t)
        self.layers = [layer for layer in self.layers if not isinstance(layer, InputLayer)]

    def build(self, input_shape):
        """Fix the input shape (without the batch axis as Keras's ``input_shape``, or with it)."""
        shape = tuple(input_shape)
        self._input = Input(shape[1:] if shape and shape[0] is None else shape)
        self._build_graph(self._stack)

    def _feed(self, inputs):
        if not self.built:           # the first batch fixes the input shape
            if not self._stack:
                raise ValueError("this Sequential model has no layers")
            x = np.asarray(inputs)
            self._input = Input(x.shape[1:], dtype=x.dtype if x.dtype.kind in "iu" else "float32")
            self._build_graph(self._stack)
        return super()._feed(inputs)
