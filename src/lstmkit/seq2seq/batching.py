"""Padding id sequences into batches, with length bucketing.

:class:`BucketBatches` has ``__len__`` and ``epoch(e)`` (the data protocol of ``lstmkit.train.fit``):
every epoch shuffles the examples with ``default_rng([seed, e])``, sorts each window of
``bucket_windows * batch_size`` examples by source length (so a batch holds sentences of similar
length and little padding), cuts batches and shuffles their order.
"""
import numpy as np

from .model import BOS, EOS, PAD, Seq2SeqBatch


def make_batch(examples):
    """``examples``: list of (source ids, target ids) without <s>/</s>. Returns a :class:`Seq2SeqBatch`
    with ``tgt = <s> ids </s>`` padded with 0."""
    if not examples:
        raise ValueError("examples: expected at least one (source, target) pair, got none")
    B = len(examples)
    src_len = np.array([len(s) for s, _ in examples])
    if src_len.min() < 1:
        raise ValueError("examples: a source sentence is empty")
    tgt_len = np.array([len(t) for _, t in examples]) + 2
    src = np.full((B, src_len.max()), PAD, np.int64)
    tgt = np.full((B, tgt_len.max()), PAD, np.int64)
    for b, (s, t) in enumerate(examples):
        src[b, :len(s)] = s
        tgt[b, 0] = BOS
        tgt[b, 1:len(t) + 1] = t
        tgt[b, len(t) + 1] = EOS
    return Seq2SeqBatch(src, src_len, tgt)


class BucketBatches:
    """Batches of ``batch_size`` examples of similar source length, reshuffled every epoch."""

    def __init__(self, examples, batch_size=64, *, shuffle=True, seed=0, bucket_windows=20):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if not examples:
            raise ValueError("examples: expected at least one (source, target) pair, got none")
        self.examples = list(examples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.window = bucket_windows * self.batch_size

    def __len__(self):
        return -(-len(self.examples) // self.batch_size)

    def epoch(self, e=0):
        n = len(self.examples)
        order = np.arange(n)
        rng = np.random.default_rng([self.seed, e])
        if self.shuffle:
            order = rng.permutation(n)
        lengths = np.array([len(s) for s, _ in self.examples])
        chunks = []
        for start in range(0, n, self.window):
            part = order[start:start + self.window]
            part = part[np.argsort(lengths[part], kind="stable")]
            chunks += [part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if self.shuffle:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        for idx in chunks:
            yield make_batch([self.examples[i] for i in idx])

    def __iter__(self):
        return self.epoch(0)
