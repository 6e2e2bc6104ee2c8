"""Batched greedy and beam search over a :class:`~lstmkit.seq2seq.model.Seq2Seq`.

Both return one :class:`Hypothesis` per source sentence: ``tokens`` (the target ids, without <s> and
</s>), ``score`` (the summed log-probability of the tokens and of </s> when it was emitted; beam search
ranks by ``score / len**length_normalization`` with len counting </s>) and ``attention``
(len(tokens), S_b): the attention weights of the step that produced each token (None without
attention).

A sentence stops at </s> or after ``max_len`` tokens (default ``2 * source length + 10``, per sentence,
so a batch decodes exactly like its sentences one by one).
"""
from contextlib import nullcontext
from functools import wraps
from typing import NamedTuple, Optional

import numpy as np

from ..kernels.beam import beam_top_k
from .model import EOS, BOS


class Hypothesis(NamedTuple):
    tokens: list
    score: float
    attention: Optional[np.ndarray]


def _limits(src_lengths, max_len):
    lengths = np.asarray(src_lengths)
    if max_len is None:
        return 2 * lengths + 10
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len: expected a positive integer or None, got {max_len!r}")
    return np.full(lengths.shape, int(max_len))


def _decoding(search):
    """Run ``search`` inside ``model.decoding()`` where the model has one: its weights do not change
    while it decodes, and its products may use them packed once."""
    @wraps(search)
    def run(model, *args, **kwargs):
        with getattr(model, "decoding", nullcontext)():
            return search(model, *args, **kwargs)
    return run


@_decoding
def greedy_search(model, src, src_lengths, *, max_len=None):
    """Pick the most probable next token at every step, for the whole batch at once."""
    src_lengths = np.asarray(src_lengths)
    B = len(src_lengths)
    limits = _limits(src_lengths, max_len)
    ds = model.start(src, src_lengths)
    tokens = np.full(B, BOS)
    done = np.zeros(B, bool)
    emitted = np.zeros(B, int)        # tokens so far, without </s>: row b's are the first steps'
    scores = np.zeros(B)
    steps, weights = [], []
    for t in range(int(limits.max())):
        logp, w, ds = model.step(ds, tokens)
        tokens = logp.argmax(-1)
        live = np.flatnonzero(~done)
        scores[live] += logp[live, tokens[live]]
        ended = tokens[live] == EOS
        grown = live[~ended]
        emitted[grown] += 1
        done[live[ended]] = True
        done[grown] = emitted[grown] >= limits[grown]
        steps.append(tokens)
        weights.append(w)
        if done.all():
            break
    steps = np.stack(steps)
    weights = np.stack(weights) if model.attention is not None else None

    def attention(b):
        n, width = emitted[b], int(src_lengths[b])
        return weights[:n, b, :width].copy() if n else np.zeros((0, width))

    return [Hypothesis(steps[:emitted[b], b].tolist(), float(scores[b]),
                       attention(b) if weights is not None else None)
            for b in range(B)]


@_decoding
def beam_search(model, src, src_lengths, *, beam_size=5, length_normalization=1.0, max_len=None):
    """Keep the ``beam_size`` best partial translations of every sentence (all sentences and beams
    decoded as one batch of B * beam_size rows).

    A hypothesis that emits </s> is set aside with its normalized score ``score / len**alpha``
    (``alpha = length_normalization``; 0 ranks by raw log-probability, which favours short output);
    a sentence is finished when ``beam_size`` hypotheses are set aside or its ``max_len`` is reached.
    ``beam_size=1`` is greedy search.

    Each step keeps only the beams' back-pointers, words and attention rows; the tokens and the
    attention of the best hypothesis of every sentence are traced back through them at the end.
    """
    if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
        raise ValueError(f"beam_size: expected a positive integer, got {beam_size!r}")
    src_lengths = np.asarray(src_lengths)
    B, K = len(src_lengths), int(beam_size)
    limits = _limits(src_lengths, max_len)
    ds = model.start(src, src_lengths)
    ds = ds.select(np.repeat(np.arange(B), K))                    # row b*K + k: beam k of sentence b
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0                                             # all beams start equal: expand one
    tokens = np.full(B * K, BOS)
    sentence = np.arange(B)[:, None] * K
    parents, words, weights = [], [], []       # per step: (B, K) beam each new beam extends, its word;
    finished = [[] for _ in range(B)]          # the step's attention rows. (normalized, score, t, k, eos)
    done = np.zeros(B, bool)
    for t in range(int(limits.max())):
        logp, w, ds = model.step(ds, tokens)
        V = logp.shape[-1]
        top, new_scores = beam_top_k(scores, logp, K)
        parent, word = top // V, top % V
        parents.append(parent)
        words.append(word)
        weights.append(w)
        new_scores[done] = -np.inf
        norm = float(t + 1) ** length_normalization          # len counts </s> or the last token
        ended = np.isfinite(new_scores) & (word == EOS)
        for b, k in zip(*np.nonzero(ended)):
            finished[b].append((new_scores[b, k] / norm, new_scores[b, k], t, k, True))
        new_scores[ended] = -np.inf
        for b in np.flatnonzero(~done):
            if len(finished[b]) >= K:
                done[b] = True
            elif t + 1 >= limits[b]:
                for k in np.flatnonzero(np.isfinite(new_scores[b])):
                    finished[b].append((new_scores[b, k] / norm, new_scores[b, k], t, k, False))
                done[b] = True
        scores = new_scores
        if done.all():
            break
        rows = (sentence + parent).reshape(-1)
        ds = ds.reorder(rows) if hasattr(ds, "reorder") else ds.select(rows)    # rows stay in their sentence
        tokens = word.reshape(-1)
    results = []
    for b in range(B):
        if not finished[b]:
            results.append(Hypothesis([], 0.0, np.zeros((0, int(src_lengths[b])))
                                      if model.attention is not None else None))
            continue
        _, score, t, k, eos = max(finished[b], key=lambda f: f[0])
        toks, atts = [], []
        for step in range(t, -1, -1):                 # back from beam k of step t
            j = parents[step][b, k]
            toks.append(int(words[step][b, k]))
            if weights[step] is not None:
                atts.append(weights[step][b * K + j, :src_lengths[b]])
            k = j
        if eos:                                        # </s> and its step's attention are not kept
            toks, atts = toks[1:], atts[1:]
        attention = _stack(atts[::-1], src_lengths[b]) if model.attention is not None else None
        results.append(Hypothesis(toks[::-1], float(score), attention))
    return results


def _stack(rows, width):
    return np.stack(rows) if rows else np.zeros((0, int(width)))
