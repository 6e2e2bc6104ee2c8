"""Seq2seq cases: a teacher-forced training step, greedy and beam decoding of lstmkit's translator model
(bidirectional LSTM encoder, Luong "general" attention with input feeding), and the same model with the
same weights in PyTorch and, for decoding, in ONNX Runtime (the graphs of
``lstmkit.interop.seq2seq_to_onnx``).

Decoding in every library is driven by lstmkit's own searches (``greedy_search``, ``beam_search``):
they ask the model for ``start(src, src_lengths)`` and ``step(state, tokens)`` and index the state
with ``state.select(rows)`` (beam search, between steps, with ``state.reorder(rows)``: the
hypotheses' own state, the source side kept). The bookkeeping is the same Python code for every
library; the network's computation is each library's own. The PyTorch model is written the way a
PyTorch user would write it: ``pack_padded_sequence`` for the encoder, ``nn.LSTMCell`` stepped for
the decoder. No Keras model of it is built (its input-feeding decoder needs a custom layer in
Keras), so Keras has no column.
"""
from typing import NamedTuple

import numpy as np

SIZES = dict(vocab=2000, embedding=128, hidden=256, batch=32, src_len=20, tgt_len=20)
BEAM = dict(beam_size=5, batch=8)


class Setup(NamedTuple):
    model: object          # lstmkit.seq2seq.Seq2Seq
    batch: object          # lstmkit.seq2seq.Seq2SeqBatch


def build_setup(seed=0):
    """The model and one batch; raises ImportError when lstmkit.seq2seq is missing."""
    from lstmkit.seq2seq import Seq2Seq, Seq2SeqBatch
    s = SIZES
    rng = np.random.default_rng(seed)
    model = Seq2Seq(s["vocab"], s["vocab"], embedding_size=s["embedding"], hidden_size=s["hidden"],
                    attention="general", seed=seed)
    B, S, T = s["batch"], s["src_len"], s["tgt_len"]
    src_lengths = rng.integers(S // 2, S + 1, size=B)
    src = rng.integers(4, s["vocab"], size=(B, S))
    src[np.arange(S)[None] >= src_lengths[:, None]] = 0
    tgt = np.concatenate([np.full((B, 1), 2), rng.integers(4, s["vocab"], size=(B, T)),
                          np.full((B, 1), 3)], axis=1)
    return Setup(model, Seq2SeqBatch(src, src_lengths, tgt))


def case_names():
    s = SIZES
    label = f"V={s['vocab']} E={s['embedding']} H={s['hidden']} B={s['batch']} S={s['src_len']} " \
            f"T={s['tgt_len']}, attention"
    return {"train": f"training step ({label})",
            "greedy": f"greedy decoding (B={s['batch']}, max_len={s['tgt_len']})",
            "beam": f"beam decoding (beam {BEAM['beam_size']}, B={BEAM['batch']}, max_len={s['tgt_len']})"}


def _cases(setup, decoder, train):
    """{"train", "greedy", "beam": callables, "first_step": the log-probabilities of the first
    decoding step (the outputs compared between libraries)} for a start/step ``decoder``."""
    from lstmkit.seq2seq import beam_search, greedy_search
    from lstmkit.seq2seq.model import BOS
    b = setup.batch
    T, K, Bb = SIZES["tgt_len"], BEAM["beam_size"], BEAM["batch"]

    def first_step():
        state = decoder.start(b.src, b.src_lengths)
        return decoder.step(state, np.full(len(b.src_lengths), BOS))[0]

    return {"train": train,
            "greedy": lambda: greedy_search(decoder, b.src, b.src_lengths, max_len=T),
            "beam": lambda: beam_search(decoder, b.src[:Bb], b.src_lengths[:Bb], beam_size=K, max_len=T),
            "first_step": first_step}


# ---------------------------------------------------------------- lstmkit
def build_lstmkit(setup):
    model = setup.model

    def train():
        model.zero_grad()
        model.train_step(setup.batch)

    cases = _cases(setup, model, train)
    cases["logits"] = lambda: model.forward(setup.batch, training=False)[0]
    return cases


# ---------------------------------------------------------------- PyTorch
def build_torch(setup, threads):
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from lstmkit.interop import torch_module
    torch.set_num_threads(threads)
    model, c = setup.model, setup.model.config
    shape = (c["attention"], c["num_layers"], c["input_feeding"], c["tie_embeddings"])
    if shape != ("general", 1, True, False):
        raise ValueError("the PyTorch peer is written for one layer, general attention, input feeding")

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def embedding(layer):
        return nn.Embedding.from_pretrained(tensor(layer.params["embeddings"]), freeze=False)

    def linear(layer):
        k = layer.params["kernel"]
        lin = nn.Linear(*k.shape)
        with torch.no_grad():
            lin.weight.copy_(tensor(k.T))
            lin.bias.copy_(tensor(layer.params["bias"]))
        return lin

    src_emb, tgt_emb = embedding(model.src_embedding), embedding(model.tgt_embedding)
    encoder = torch_module(model.encoder)
    lstm = torch_module(model.decoder)
    cell = nn.LSTMCell(lstm.input_size, lstm.hidden_size)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(lstm, name + "_l0"))
    bridge_h, bridge_c = linear(model.bridge_h), linear(model.bridge_c)
    attentional, output = linear(model.attentional), linear(model.output)
    W = nn.Parameter(tensor(model.attention.params["W"]))
    modules = (src_emb, tgt_emb, encoder, cell, bridge_h, bridge_c, attentional, output)
    params = [W, *(q for m in modules for q in m.parameters())]
    p, smoothing = c["dropout"], c["label_smoothing"]

    def encode(src, lengths, training):
        x = F.dropout(src_emb(src), p, training)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, c_) = encoder(packed)
        keys, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        h0 = torch.tanh(bridge_h(torch.cat([h[0], h[1]], -1)))
        c0 = bridge_c(torch.cat([c_[0], c_[1]], -1))
        mask = torch.arange(src.shape[1])[None] < lengths[:, None]
        return keys, keys @ W.T, mask, h0, c0

    def attend(h, keys, memory, mask):
        scores = torch.bmm(memory, h[:, :, None])[:, :, 0].masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, -1)
        ctx = torch.bmm(w[:, None], keys)[:, 0]
        return torch.tanh(attentional(torch.cat([ctx, h], -1))), w

    src, lengths, tgt = (torch.from_numpy(np.asarray(a, np.int64)) for a in setup.batch)

    def logits(training):
        keys, memory, mask, h, c_ = encode(src, lengths, training)
        y = F.dropout(tgt_emb(tgt[:, :-1]), p, training)
        feed = torch.zeros(y.shape[0], attentional.out_features)
        outs = []
        for t in range(y.shape[1]):
            h, c_ = cell(torch.cat([y[:, t], feed], -1), (h, c_))
            feed, _ = attend(h, keys, memory, mask)
            outs.append(feed)
        return output(F.dropout(torch.stack(outs, 1), p, training))

    labels = tgt[:, 1:].reshape(-1)

    def train():
        for q in params:
            q.grad = None
        z = logits(True)
        F.cross_entropy(z.reshape(-1, z.shape[-1]), labels, ignore_index=0,
                        label_smoothing=smoothing).backward()

    class State(NamedTuple):
        h: object
        c: object
        feed: object
        keys: object
        memory: object
        mask: object

        def select(self, rows):
            rows = torch.from_numpy(np.asarray(rows, np.int64))
            return State(*(a[rows] for a in self))

        def reorder(self, rows):       # rows within their sentence: the source side is the same
            rows = torch.from_numpy(np.asarray(rows, np.int64))
            return self._replace(h=self.h[rows], c=self.c[rows], feed=self.feed[rows])

    class Decoder:
        attention = "general"

        @staticmethod
        def start(src, src_lengths):
            with torch.inference_mode():
                keys, memory, mask, h, c_ = encode(torch.from_numpy(np.asarray(src, np.int64)),
                                                   torch.from_numpy(np.asarray(src_lengths, np.int64)), False)
                return State(h, c_, torch.zeros(h.shape[0], attentional.out_features), keys, memory, mask)

        @staticmethod
        def step(state, tokens):
            with torch.inference_mode():
                y = tgt_emb(torch.from_numpy(np.asarray(tokens, np.int64)))
                h, c_ = cell(torch.cat([y, state.feed], -1), (state.h, state.c))
                a, w = attend(h, state.keys, state.memory, state.mask)
                logp = torch.log_softmax(output(a), -1)
                return logp.numpy(), w.numpy(), State(h, c_, a, state.keys, state.memory, state.mask)

    cases = _cases(setup, Decoder, train)

    def eval_logits():
        with torch.inference_mode():
            return logits(False).numpy()
    cases["logits"] = eval_logits
    return cases


# ---------------------------------------------------------------- ONNX Runtime (decoding only)
def build_onnxruntime(setup, threads):
    import onnxruntime as ort

    from lstmkit.interop import seq2seq_to_onnx
    enc_proto, dec_proto = seq2seq_to_onnx(setup.model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    enc, dec = (ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
                for m in (enc_proto, dec_proto))
    enc_names = [o.name for o in enc.get_outputs()]
    dec_names = [o.name for o in dec.get_outputs()]
    feed_size = setup.model.feed_size

    class State(dict):
        def select(self, rows):
            return State({k: v[rows] for k, v in self.items()})

        def reorder(self, rows):       # rows within their sentence: the source side is the same
            return State(self, **{k: self[k][rows] for k in ("h", "c", "feed")})

    class Decoder:
        attention = "general"

        @staticmethod
        def start(src, src_lengths):
            out = dict(zip(enc_names, enc.run(None, {"src": np.asarray(src, np.int64),
                                                      "src_lengths": np.asarray(src_lengths, np.int32)})))
            out["feed"] = np.zeros((len(src_lengths), feed_size), np.float32)
            return State(out)

        @staticmethod
        def step(state, tokens):
            out = dict(zip(dec_names, dec.run(None, {**state, "tokens": np.asarray(tokens, np.int64)})))
            new = State(state, h=out["h_next"], c=out["c_next"], feed=out["feed_next"])
            return out["log_probs"], out["weights"], new

    cases = _cases(setup, Decoder, None)
    del cases["train"]
    return cases


PEERS = {"torch": build_torch, "onnxruntime": build_onnxruntime}
