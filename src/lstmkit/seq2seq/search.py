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
    history = [[[] for _ in range(K)] for _ in range(B)]          # tokens of each live beam
    att_hist = [[[] for _ in range(K)] for _ in range(B)]
    finished = [[] for _ in range(B)]                              # (normalized, score, tokens, atts)
    done = np.zeros(B, bool)

    def finish(b, k, toks, atts, score, with_eos):
        n = len(toks) + (1 if with_eos else 0)
        norm = score / max(n, 1) ** length_normalization
        finished[b].append((norm, score, toks, atts))

    for t in range(int(limits.max())):
        logp, w, ds = model.step(ds, tokens)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
        top = _top_k(cand, K)
        new_scores = np.take_along_axis(cand, top, 1)
        src_beam, word = top // V, top % V
        rows = (np.arange(B)[:, None] * K + src_beam).reshape(-1)
        new_hist = [[None] * K for _ in range(B)]
        new_att = [[None] * K for _ in range(B)]
        for b in range(B):
            if done[b]:
                new_scores[b] = -np.inf
                new_hist[b] = [[] for _ in range(K)]
                new_att[b] = [[] for _ in range(K)]
                continue
            for k in range(K):
                j = src_beam[b, k]
                toks = history[b][j]
                atts = att_hist[b][j]
                if w is not None:
                    atts = atts + [w[b * K + j, :src_lengths[b]]]
                if not np.isfinite(new_scores[b, k]):
                    new_hist[b][k], new_att[b][k] = toks, atts
                    continue
                if word[b, k] == EOS:
                    finish(b, k, toks, atts[:-1] if w is not None else atts, new_scores[b, k], True)
                    new_scores[b, k] = -np.inf
                    new_hist[b][k], new_att[b][k] = toks, atts
                    continue
                new_hist[b][k] = toks + [int(word[b, k])]
                new_att[b][k] = atts
            if len(finished[b]) >= K:
                done[b] = True
            elif t + 1 >= limits[b]:
                for k in range(K):
                    if np.isfinite(new_scores[b, k]):
                        finish(b, k, new_hist[b][k], new_att[b][k], new_scores[b, k], False)
                done[b] = True
        scores, history, att_hist = new_scores, new_hist, new_att
        if done.all():
            break
        ds = ds.reorder(rows) if hasattr(ds, "reorder") else ds.select(rows)    # rows stay in their sentence
        tokens = word.reshape(-1)
    results = []
    for b in range(B):
        best = max(finished[b], key=lambda f: f[0]) if finished[b] else (0.0, 0.0, [], [])
        _, score, toks, atts = best
        results.append(Hypothesis(list(toks), float(score),
                                  _stack(atts, src_lengths[b]) if model.attention is not None else None))
    return results


def _top_k(values, k):
    """The columns of the ``k`` largest values of every row, best first, ties in column order (as a
    stable sort, or argmax, orders them): a partition, then a sort of k per row (a whole sort of the
    K * V candidates took most of a beam step)."""
    cols = np.argpartition(-values, k - 1, axis=1)[:, :k]
    taken = np.take_along_axis(values, cols, 1)
    kth = taken.min(axis=1, keepdims=True)                                   # the k-th largest
    tied = values == kth
    # Where more columns share the k-th value than were taken, take the leftmost of them.
    short = np.flatnonzero(tied.sum(axis=1) > (taken == kth).sum(axis=1))
    if short.size:
        v, t = values[short], tied[short]
        above = v > kth[short]
        take = above | (t & (np.cumsum(t, axis=1) <= k - above.sum(axis=1, keepdims=True)))
        cols[short] = np.nonzero(take)[1].reshape(len(short), k)
    cols.sort(axis=1)
    order = np.argsort(-np.take_along_axis(values, cols, 1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, 1)


def _stack(rows, width):
    return np.stack(rows) if rows else np.zeros((0, int(width)))
