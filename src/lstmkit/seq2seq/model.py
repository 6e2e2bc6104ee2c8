"""Encoder-decoder translation models built from lstmkit's layers and kernels.

Two architectures, one class :class:`Seq2Seq`:

(a) ``attention=None`` — Sutskever et al. 2014: a stacked LSTM encoder reads the source; its final
    ``LSTMState(h, c)`` of EVERY layer (each at the sequence's last valid step) is the decoder's
    initial state; the stacked LSTM decoder predicts the target from it alone.
(b) ``attention="dot" | "general" | "additive"`` — Luong et al. 2015 / Bahdanau et al. 2015: a
    bidirectional LSTM encoder; a *bridge* maps its final states (both directions concatenated,
    2E wide) to the decoder's initial state (``h0 = tanh(h_enc W_h + b_h)``, ``c0 = c_enc W_c + b_c``);
    at every step the decoder's top output ``h_t`` attends over the encoder outputs, and the
    *attentional hidden state* ``a_t = tanh([context_t; h_t] W_a + b_a)`` predicts the next word.
    With ``input_feeding`` (Luong's), ``a_{t-1}`` is fed to the decoder next to the embedding of the
    previous word, so the decoder runs step by step; without it the whole target is one LSTM call
    and one attention call (much faster in NumPy).

Shapes: source ids (B, S) with ``src_lengths`` (B,); target ids (B, T+1) = ``<s> w1 .. wn </s>``
padded with 0; the decoder reads ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``; logits (B, T, V).

Training protocol (``lstmkit.train.fit``): ``params``/``grads`` dicts (references to the layers'
arrays), ``zero_grad()``, ``train_step(batch)``, ``eval_step(batch)``, ``rngs()``.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels
from ..layers import LSTM, Bidirectional, Dense, Dropout, Embedding, Layer, LSTMState

PAD, UNK, BOS, EOS = 0, 1, 2, 3
ATTENTIONS = (None, "dot", "general", "additive")


class Seq2SeqBatch(NamedTuple):
    """One batch: ``src`` (B, S) ids, ``src_lengths`` (B,), ``tgt`` (B, T+1) ids ``<s> .. </s>``
    padded with 0 (PAD)."""
    src: np.ndarray
    src_lengths: np.ndarray
    tgt: np.ndarray


class TiedOutput(Layer):
    """Output projection that shares the target embedding table: ``logits = x @ E^T + bias``.

    Owns only ``bias`` (V,); the gradient of ``E`` is added to the embedding layer's ``grads``."""

    def __init__(self, embedding, *, name="output", dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        self.embedding = embedding
        self.add_weight("bias", (embedding.input_dim,))
        self.built = True

    def forward(self, x, *, training=False):
        return kernels.dense_forward(x, self.embedding.params["embeddings"].T, self.params["bias"])

    def backward(self, cache, grad):
        g = kernels.dense_backward(cache, grad)
        self.embedding.grads["embeddings"] += g["kernel"].T
        self.grads["bias"] += g["bias"]
        return g["x"]


class Attention(Layer):
    """The attention parameters of one score kind (see ``lstmkit.kernels.attention``):
    general ``W (Dq, Dk)``; additive ``W_q (Dq, A)``, ``W_k (Dk, A)``, ``v (A,)``; dot none."""

    def __init__(self, score, query_size, key_size, *, attention_size=None, name="attention",
                 dtype="float32", seed=None):
        super().__init__(name=name, dtype=dtype, seed=seed)
        kernels.attention.check_score(score)
        if score == "dot" and query_size != key_size:
            raise ValueError(f"attention: 'dot' needs the decoder size ({query_size}) to equal the "
                             f"encoder output size ({key_size}); use 'general' or 'additive'")
        self.score = score
        if score == "general":
            self.add_weight("W", (query_size, key_size), "glorot_uniform")
        elif score == "additive":
            A = attention_size or query_size
            self.add_weight("W_q", (query_size, A), "glorot_uniform")
            self.add_weight("W_k", (key_size, A), "glorot_uniform")
            self.add_weight("v", (A,), "glorot_uniform")
        self.built = True

    def memory(self, keys):
        return kernels.attention_memory_forward(keys, self.score, W=self.params.get("W"),
                                                W_k=self.params.get("W_k"))

    def memory_backward(self, cache, d_memory):
        g = kernels.attention_memory_backward(cache, d_memory)
        self.accumulate("W", g["W"])
        self.accumulate("W_k", g["W_k"])
        return g["keys"]

    def forward(self, query, memory, values, mask, *, training=False):
        """Returns ``(context, weights), cache``."""
        ctx, w, cache = kernels.attention_forward(query, memory, values, mask, self.score,
                                                  W_q=self.params.get("W_q"), v=self.params.get("v"))
        return (ctx, w), cache

    def backward(self, cache, grad, *, key_grads=True):
        """The gradients of the query, memory and values (``key_grads`` as in
        ``kernels.attention_backward``); adds W_q's and v's into ``grads``."""
        g = kernels.attention_backward(cache, grad, key_grads=key_grads)
        self.accumulate("W_q", g["W_q"])
        self.accumulate("v", g["v"])
        return g


class Seq2Seq:
    """An LSTM encoder-decoder, with or without attention.

    Args:
        src_vocab_size, tgt_vocab_size: V_src, V_tgt (ids 0..3 are <pad> <unk> <s> </s>).
        embedding_size: E of both embeddings.
        hidden_size: H, the decoder's units (the bidirectional encoder has H // 2 per direction, so
            its outputs are H wide; the unidirectional encoder has H).
        num_layers: stacked layers of the encoder and of the decoder (the same number).
        attention: None (architecture (a), state passing only), "dot", "general" or "additive".
        bidirectional: bidirectional encoder (default: True with attention, False without).
        input_feeding: feed the previous attentional state to the decoder (attention only).
        dropout: on the embeddings, between stacked layers and before the output projection.
        tie_embeddings: output projection = target embedding table transposed (needs the
            attentional/decoder output size to equal E; the attentional layer is then E wide).
        label_smoothing: of the training loss.
        dtype: "float32" or "float64"; seed: integer for initialization and dropout.

    Example:
        >>> import numpy as np
        >>> m = Seq2Seq(20, 30, embedding_size=8, hidden_size=16, attention="general", seed=0)
        >>> batch = Seq2SeqBatch(np.array([[5, 6, 7]]), np.array([3]), np.array([[2, 9, 3]]))
        >>> logits, cache = m.forward(batch, training=True)
        >>> logits.shape
        (1, 2, 30)
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, *, embedding_size=64, hidden_size=128,
                 num_layers=1, attention="general", bidirectional=None, input_feeding=True,
                 dropout=0.1, tie_embeddings=False, label_smoothing=0.1, dtype="float32", seed=0):
        for arg, v in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size),
                       ("embedding_size", embedding_size), ("hidden_size", hidden_size),
                       ("num_layers", num_layers)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{arg}: expected a positive integer, got {v!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {attention!r}")
        if bidirectional is None:
            bidirectional = attention is not None
        if bidirectional and hidden_size % 2:
            raise ValueError(f"hidden_size: a bidirectional encoder needs an even size, got {hidden_size}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
        self.config = dict(src_vocab_size=int(src_vocab_size), tgt_vocab_size=int(tgt_vocab_size),
                           embedding_size=int(embedding_size), hidden_size=int(hidden_size),
                           num_layers=int(num_layers), attention=attention,
                           bidirectional=bool(bidirectional),
                           input_feeding=bool(input_feeding and attention is not None),
                           dropout=float(dropout), tie_embeddings=bool(tie_embeddings),
                           label_smoothing=float(label_smoothing), dtype=str(np.dtype(dtype)),
                           seed=int(seed))
        c = self.config
        E, H, L = c["embedding_size"], c["hidden_size"], c["num_layers"]
        self.attention_kind = attention
        self.input_feeding = c["input_feeding"]
        self.dtype = np.dtype(dtype)
        kw = dict(dtype=dtype)
        seeds = iter(range(seed * 100, seed * 100 + 100))

        self.src_embedding = Embedding(c["src_vocab_size"], E, name="src_embedding",
                                       seed=next(seeds), **kw)
        self.tgt_embedding = Embedding(c["tgt_vocab_size"], E, name="tgt_embedding",
                                       seed=next(seeds), **kw)
        self.src_embedding.build()
        self.tgt_embedding.build()
        self.embedding_dropout = Dropout(dropout, seed=next(seeds), name="embedding_dropout", **kw)
        self.output_dropout = Dropout(dropout, seed=next(seeds), name="output_dropout", **kw)

        if c["bidirectional"]:
            self.encoder = Bidirectional(LSTM(H // 2, num_layers=L, dropout=dropout, name="encoder",
                                              seed=next(seeds), **kw), name="encoder")
        else:
            self.encoder = LSTM(H, num_layers=L, dropout=dropout, name="encoder", seed=next(seeds), **kw)
        self.encoder.build((None, None, E))
        self.bridge_h = self.bridge_c = None
        if c["bidirectional"]:
            self.bridge_h = Dense(H, activation="tanh", name="bridge_h", seed=next(seeds), **kw)
            self.bridge_c = Dense(H, name="bridge_c", seed=next(seeds), **kw)
            self.bridge_h.build((H,))
            self.bridge_c.build((H,))

        out_size = H
        self.attention = self.attentional = None
        if attention is not None:
            out_size = E if c["tie_embeddings"] else H
            self.attention = Attention(attention, H, H, name="attention", seed=next(seeds), **kw)
            self.attentional = Dense(out_size, activation="tanh", name="attentional",
                                     seed=next(seeds), **kw)
            self.attentional.build((2 * H,))
        elif c["tie_embeddings"] and H != E:
            raise ValueError(f"tie_embeddings: without attention the decoder output ({H}) is projected "
                             f"with the embedding table, so hidden_size must equal embedding_size ({E})")
        self.feed_size = out_size if self.input_feeding else 0
        self.decoder = LSTM(H, num_layers=L, dropout=dropout, name="decoder", seed=next(seeds), **kw)
        self.decoder.build((None, None, E + self.feed_size))
        if c["tie_embeddings"]:
            self.output = TiedOutput(self.tgt_embedding, seed=next(seeds), **kw)
        else:
            self.output = Dense(c["tgt_vocab_size"], name="output", seed=next(seeds), **kw)
            self.output.build((out_size,))

        self.layers = {l.name: l for l in (self.src_embedding, self.tgt_embedding, self.encoder,
                                            self.bridge_h, self.bridge_c, self.attention,
                                            self.attentional, self.decoder, self.output)
                       if l is not None}
        self.params = {f"{n}/{k}": v for n, l in self.layers.items() for k, v in l.params.items()}
        self.grads = {f"{n}/{k}": v for n, l in self.layers.items() for k, v in l.grads.items()}
        from ..losses import SparseCategoricalCrossentropy
        self.loss = SparseCategoricalCrossentropy(from_logits=True, ignore_index=PAD,
                                                  label_smoothing=c["label_smoothing"])
        self.eval_loss = SparseCategoricalCrossentropy(from_logits=True, ignore_index=PAD)

    # -- trainable protocol -------------------------------------------------------------------
    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def rngs(self):
        out = {"embedding_dropout": self.embedding_dropout.rng,
               "output_dropout": self.output_dropout.rng}
        for name in ("encoder", "decoder"):
            layer = self.layers[name]
            out[name] = layer.rng
            if isinstance(layer, Bidirectional):
                out[name + "/forward"] = layer.forward_layer.rng
                out[name + "/backward"] = layer.backward_layer.rng
        return out

    def train_step(self, batch):
        """Teacher-forced forward, loss, backward (gradients added to ``grads``). The weights do not
        change meanwhile: the decoder's steps multiply by them packed once (see :meth:`decoding`)."""
        batch = as_batch(batch)
        with self.decoding():
            logits, cache = self.forward(batch, training=True)
            labels = batch.tgt[:, 1:]
            loss, lcache = self.loss.forward(logits, labels)
            self.backward(cache, self.loss.backward(lcache))
        return {"loss": float(loss), "tokens": int(np.count_nonzero(labels != PAD))}

    def eval_step(self, batch):
        """Loss (without label smoothing) and token accuracy under teacher forcing."""
        batch = as_batch(batch)
        with self.decoding():
            logits, _ = self.forward(batch, training=False)
        labels = batch.tgt[:, 1:]
        loss, _ = self.eval_loss.forward(logits, labels)
        valid = labels != PAD
        correct = int(np.count_nonzero((logits.argmax(-1) == labels) & valid))
        tokens = int(np.count_nonzero(valid))
        return {"loss": float(loss), "tokens": tokens, "accuracy": correct / max(tokens, 1)}

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, src, src_lengths, training=False):
        """Returns ``(keys (B, S, H), mask (B, S), initial decoder LSTMState), cache``."""
        src = self.src_embedding.check_ids(src)
        lengths = np.asarray(src_lengths)
        if src.ndim != 2 or lengths.shape != (src.shape[0],):
            raise ValueError(f"src, src_lengths: expected shapes (B, S) and (B,), got {src.shape} "
                             f"and {lengths.shape}")
        if lengths.size and lengths.min() < 1:
            raise ValueError("src_lengths: every source needs at least one token (an empty sentence "
                             "translates to an empty sentence without running the model)")
        x, c_emb = self.src_embedding.forward(src, training=training)
        x, c_drop = self.embedding_dropout.forward(x, training=training)
        res, c_enc = self.encoder.forward(x, lengths=lengths, training=training)
        state = res.state
        c_bridge = None
        if self.bridge_h is not None:
            h0, ch = self.bridge_h.forward(state.h, training=training)
            c0, cc = self.bridge_c.forward(state.c, training=training)
            state, c_bridge = LSTMState(h0, c0), (ch, cc)
        mask = np.arange(src.shape[1])[None, :] < lengths[:, None]
        return (res.outputs, mask, state), (c_emb, c_drop, c_enc, c_bridge)

    def encode_backward(self, cache, d_keys, d_state):
        c_emb, c_drop, c_enc, c_bridge = cache
        if c_bridge is not None:
            ch, cc = c_bridge
            d_state = LSTMState(self.bridge_h.backward(ch, d_state.h),
                                self.bridge_c.backward(cc, d_state.c))
        g = self.encoder.backward(c_enc, (d_keys, d_state))
        d_x = self.embedding_dropout.backward(c_drop, g.inputs)
        self.src_embedding.backward(c_emb, d_x)

    # -- teacher forcing ----------------------------------------------------------------------
    def forward(self, batch, training=False):
        """Teacher-forced logits (B, T, V) of ``batch.tgt[:, 1:]`` and the cache for :meth:`backward`."""
        batch = as_batch(batch)
        (keys, mask, state), c_enc = self.encode(batch.src, batch.src_lengths, training)
        tgt_in = self.tgt_embedding.check_ids(batch.tgt[:, :-1])
        y, c_temb = self.tgt_embedding.forward(tgt_in, training=training)
        y, c_tdrop = self.embedding_dropout.forward(y, training=training)
        c_mem = None
        if self.attention is not None:
            memory, c_mem = self.attention.memory(keys)
        if self.input_feeding:
            out, c_dec = self._decode_stepwise(y, state, memory, keys, mask, training)
        else:
            out, c_dec = self._decode_whole(y, state, None if c_mem is None else memory, keys, mask,
                                            training)
        out, c_odrop = self.output_dropout.forward(out, training=training)
        logits, c_out = self.output.forward(out, training=training)
        return logits, (c_enc, c_temb, c_tdrop, c_mem, c_dec, c_odrop, c_out, keys.shape)

    def backward(self, cache, d_logits):
        """Back-propagate ``d_logits`` (B, T, V); adds every parameter's gradient into ``grads``."""
        c_enc, c_temb, c_tdrop, c_mem, c_dec, c_odrop, c_out, keys_shape = cache
        d_out = self.output.backward(c_out, d_logits)
        d_out = self.output_dropout.backward(c_odrop, d_out)
        if self.input_feeding:
            d_y, d_state, d_keys, d_memory = self._decode_stepwise_backward(c_dec, d_out, keys_shape)
        else:
            d_y, d_state, d_keys, d_memory = self._decode_whole_backward(c_dec, d_out, keys_shape)
        if c_mem is not None:
            d_keys = d_keys + self.attention.memory_backward(c_mem, d_memory)
        d_y = self.embedding_dropout.backward(c_tdrop, d_y)
        self.tgt_embedding.backward(c_temb, d_y)
        self.encode_backward(c_enc, d_keys, d_state)

    def _decode_whole(self, y, state, memory, keys, mask, training):
        res, c_lstm = self.decoder.forward(y, initial_state=state, training=training)
        h = res.outputs
        if self.attention is None:
            return h, (c_lstm, None, None)
        (ctx, _), c_att = self.attention.forward(h, memory, keys, mask, training=training)
        a, c_a = self.attentional.forward(np.concatenate([ctx, h], axis=-1), training=training)
        return a, (c_lstm, c_att, c_a)

    def _decode_whole_backward(self, cache, d_out, keys_shape):
        c_lstm, c_att, c_a = cache
        d_keys = np.zeros(keys_shape, self.dtype)
        d_memory = None
        if c_att is None:
            d_h = d_out
        else:
            d_cat = self.attentional.backward(c_a, d_out)
            Hk = keys_shape[-1]
            g = self.attention.backward(c_att, d_cat[..., :Hk])
            d_h = d_cat[..., Hk:] + g["query"]
            d_keys += g["values"]
            d_memory = g["memory"]
        g = self.decoder.backward(c_lstm, (d_h, None))
        return g.inputs, g.initial_state, d_keys, d_memory

    def _decode_stepwise(self, y, state, memory, keys, mask, training):
        B, T, _ = y.shape
        feed = np.zeros((B, self.feed_size), self.dtype)
        outs = np.empty((B, T, self.feed_size), self.dtype)
        steps = []
        for t in range(T):
            inp = np.concatenate([y[:, t], feed], axis=-1)[:, None]
            res, c_lstm = self.decoder.forward(inp, initial_state=state, training=training)
            state = res.state
            h = res.outputs                                                 # (B, 1, H)
            (ctx, _), c_att = self.attention.forward(h, memory, keys, mask, training=training)
            a, c_a = self.attentional.forward(np.concatenate([ctx, h], axis=-1), training=training)
            feed = outs[:, t] = a[:, 0]
            steps.append((c_lstm, c_att, c_a))
        return outs, steps

    def _decode_stepwise_backward(self, steps, d_out, keys_shape):
        B, T, _ = d_out.shape
        E = self.config["embedding_size"]
        Hk = keys_shape[-1]
        d_y = np.empty((B, T, E), self.dtype)
        d_feed = np.zeros((B, self.feed_size), self.dtype)
        d_state = None
        d_values, d_memory = [], []
        # Only the query's gradient is needed step by step; the gradients of the keys and memory and
        # of the decoder's and the attentional layer's weights are each one product over all steps.
        with self.decoder.deferred_grads(), self.attentional.deferred_grads():
            for t in range(T - 1, -1, -1):
                c_lstm, c_att, c_a = steps[t]
                d_cat = self.attentional.backward(c_a, (d_out[:, t] + d_feed)[:, None])
                g = self.attention.backward(c_att, d_cat[..., :Hk], key_grads=False)
                d_values.append(g["values"])
                d_memory.append(g["memory"])
                d_h = d_cat[..., Hk:] + g["query"]
                gl = self.decoder.backward(c_lstm, (d_h, d_state))
                d_state = gl.initial_state
                d_y[:, t] = gl.inputs[:, 0, :E]
                d_feed = gl.inputs[:, 0, E:]
        return d_y, d_state, kernels.dense.resolve(d_values), kernels.dense.resolve(d_memory)

    # -- one decoding step (inference) ----------------------------------------------------------
    def decoding(self):
        """A context for decoding with :meth:`start` and :meth:`step`: the weights must not change
        inside it, and the steps' products use them packed once
        (:func:`lstmkit.kernels.constant_weights`). The searches decode in one, and
        :meth:`train_step` and :meth:`eval_step` run in one."""
        return kernels.constant_weights(self.params.values())

    def start(self, src, src_lengths):
        """Encode a batch for decoding. Returns a :class:`DecoderState`."""
        (keys, mask, state), _ = self.encode(src, src_lengths, training=False)
        memory = None if self.attention is None else self.attention.memory(keys)[0]
        feed = np.zeros((keys.shape[0], self.feed_size), self.dtype)
        return DecoderState(state, feed, keys, memory, mask)

    def step(self, ds, tokens):
        """One decoder step for the previous tokens (N,). Returns ``log_probs (N, V), weights (N, S)
        or None, new DecoderState``."""
        fused = self._fused_step(ds, tokens)
        if fused is not None:
            return fused
        y = self.tgt_embedding(tokens)
        if self.input_feeding:
            y = np.concatenate([y, ds.feed], axis=-1)
        res = self.decoder(y[:, None], initial_state=ds.lstm)
        h = res.outputs
        weights, feed = None, ds.feed
        if self.attention is not None:
            ctx, w = self.attention(h, ds.memory, ds.keys, ds.mask)
            h = self.attentional(np.concatenate([ctx, h], axis=-1))
            weights = w[:, 0]
            feed = h[:, 0] if self.input_feeding else feed
        logits = self.output(h[:, 0])
        logp = kernels.activations.log_softmax(logits)
        return logp, weights, DecoderState(res.state, feed, ds.keys, ds.memory, ds.mask)

    def _fused_step(self, ds, tokens):
        """:meth:`step` as one compiled kernel (``kernels.decoder``) where it applies: one layer, dot
        or general attention, input feeding, an untied output, the decoder's default activations;
        else None."""
        dec, c = self.decoder, self.config
        if (self.attention_kind not in ("dot", "general") or not self.input_feeding or c["num_layers"] != 1
                or c["tie_embeddings"] or not dec.use_bias or dec.proj_size
                or (dec.activation, dec.recurrent_activation) != ("tanh", "sigmoid") or ds.lstm[0].ndim != 2):
            return None
        ids = self.tgt_embedding.check_ids(tokens)
        p, a, o = dec.params, self.attentional.params, self.output.params
        out = kernels.decoder.decoder_step(ids, self.tgt_embedding.params["embeddings"], ds.feed, *ds.lstm,
                                           p["kernel"], p["recurrent_kernel"], p["bias"], ds.memory, ds.keys,
                                           ds.mask, a["kernel"], a["bias"], o["kernel"], o["bias"])
        if out is None:
            return None
        logp, weights, h, c_, feed = out
        return logp, weights, DecoderState(LSTMState(h, c_), feed, ds.keys, ds.memory, ds.mask)


class DecoderState(NamedTuple):
    """What decoding carries between steps: the decoder's ``LSTMState`` ((N, H) or (L, N, H)), the
    fed attentional state (N, A), and the encoder's keys (N, S, H), memory and mask (N, S)."""
    lstm: LSTMState
    feed: np.ndarray
    keys: np.ndarray
    memory: np.ndarray
    mask: np.ndarray

    def select(self, index):
        """Rows ``index`` of every array (beam search reorders and repeats hypotheses)."""
        return self.reorder(index)._replace(keys=self.keys[index], mask=self.mask[index],
                                            memory=None if self.memory is None else self.memory[index])

    def reorder(self, index):
        """Rows ``index`` of the hypotheses' own state (decoder state and fed vector), the source side
        (keys, memory, mask) kept as it is: for an ``index`` that takes every row from a row of the
        same sentence (beam search between steps), whose source side is the same."""
        lstm = LSTMState(*(a[..., index, :] for a in self.lstm))
        return self._replace(lstm=lstm, feed=self.feed[index])


def as_batch(batch):
    if isinstance(batch, Seq2SeqBatch):
        return batch
    if isinstance(batch, dict):
        return Seq2SeqBatch(batch["src"], batch["src_lengths"], batch["tgt"])
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return Seq2SeqBatch(*batch)
    raise TypeError(f"batch: expected a Seq2SeqBatch(src, src_lengths, tgt), got {type(batch).__name__}")
