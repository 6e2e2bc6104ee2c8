"""The translator application: tokenizers + vocabularies + a :class:`Seq2Seq`, trained with
``lstmkit.train.fit``, saved in one ``.npz`` (no pickle), translating raw text.

    from lstmkit.seq2seq import Translator, demo_corpus
    train, test = demo_corpus(6000, 200)
    tr = Translator.build(train, tokenizer=("char", "word"), attention="dot", hidden_size=128)
    tr.fit(train, epochs=8, batch_size=64, learning_rate=5e-3)
    tr.translate(["einundzwanzig"])[0].text         # 'twenty-one'
    tr.save("numbers.npz"); tr = Translator.load("numbers.npz")
"""
import json
import os
import time
from typing import NamedTuple, Optional

import numpy as np

from ..train import Callback
from .batching import BucketBatches, make_batch
from .blas import single_threaded_blas
from .model import Seq2Seq
from .search import beam_search, greedy_search
from .text import BPETokenizer, CharTokenizer, Vocab, WordTokenizer, tokenizer_from_config

FORMAT = "lstmkit-translator-1"


class Translation(NamedTuple):
    """One translated sentence: ``text``; ``tokens`` (target tokens) and ``source_tokens``;
    ``score`` (summed log-probability); ``attention`` (len(tokens), len(source_tokens)) or None."""
    text: str
    tokens: list
    source_tokens: list
    score: float
    attention: Optional[np.ndarray]


def _make_tokenizer(kind, texts, num_merges):
    if kind == "char":
        return CharTokenizer()
    if kind == "word":
        return WordTokenizer()
    if kind == "bpe":
        return BPETokenizer.learn(texts, num_merges)
    raise ValueError(f"tokenizer: expected 'bpe', 'char' or 'word' (or a pair of them), got {kind!r}")


class Translator:
    """Source text -> target text. Build with :meth:`build` (learns tokenizers and vocabularies from
    training pairs) or :meth:`load`; train with :meth:`fit`; use :meth:`translate`, :meth:`evaluate`."""

    def __init__(self, model, src_tokenizer, tgt_tokenizer, src_vocab, tgt_vocab, info=None):
        self.model = model
        self.src_tokenizer, self.tgt_tokenizer = src_tokenizer, tgt_tokenizer
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.info = dict(info or {})

    @classmethod
    def build(cls, pairs, *, tokenizer="bpe", num_merges=8000, min_frequency=1, max_vocab=None,
              **model_kwargs):
        """Learn tokenizers and vocabularies from ``pairs`` ((source, target) strings) and make an
        untrained model. ``tokenizer``: "bpe", "char", "word", or a (source, target) pair of them.
        ``model_kwargs`` go to :class:`Seq2Seq` (attention, hidden_size, num_layers, ...)."""
        pairs = list(pairs)
        if not pairs:
            raise ValueError("pairs: expected at least one (source, target) sentence pair")
        kinds = (tokenizer, tokenizer) if isinstance(tokenizer, str) else tuple(tokenizer)
        src_tok = _make_tokenizer(kinds[0], [s for s, _ in pairs], num_merges)
        tgt_tok = _make_tokenizer(kinds[1], [t for _, t in pairs], num_merges)
        src_vocab = Vocab.build((src_tok.encode(s) for s, _ in pairs), min_frequency=min_frequency,
                                max_size=max_vocab)
        tgt_vocab = Vocab.build((tgt_tok.encode(t) for _, t in pairs), min_frequency=min_frequency,
                                max_size=max_vocab)
        model = Seq2Seq(len(src_vocab), len(tgt_vocab), **model_kwargs)
        return cls(model, src_tok, tgt_tok, src_vocab, tgt_vocab)

    # -- data -------------------------------------------------------------------------------------
    def encode_source(self, text):
        return self.src_vocab.encode(self.src_tokenizer.encode(text))

    def examples(self, pairs, *, max_length=None):
        """(source ids, target ids) of each pair; pairs with an empty side are refused, pairs longer
        than ``max_length`` tokens on either side are dropped."""
        out = []
        for i, (s, t) in enumerate(pairs):
            src = self.encode_source(s)
            tgt = self.tgt_vocab.encode(self.tgt_tokenizer.encode(t))
            if not src or not tgt:
                raise ValueError(f"pairs: pair {i} has an empty {'source' if not src else 'target'} "
                                 f"({s!r} -> {t!r})")
            if max_length is None or (len(src) <= max_length and len(tgt) <= max_length):
                out.append((src, tgt))
        return out

    # -- training ---------------------------------------------------------------------------------
    def fit(self, train_pairs, *, valid_pairs=None, epochs=10, batch_size=64, learning_rate=1e-3,
            global_clipnorm=5.0, max_length=None, warmup_steps=0, decay=None, callbacks=(),
            checkpoint=None,
            checkpoint_every=None, resume=None, verbose="auto", seed=0, optimizer=None):
        """Train with ``lstmkit.train.fit``: Adam with global-norm clipping, a learning rate with an
        optional linear warm-up (``warmup_steps``) and inverse-square-root decay (``decay``: the
        steps after which the rate is halved / 3), length-bucketed batches; best-on-validation and
        resumable checkpoints through ``callbacks``, ``checkpoint`` and ``resume``. BLAS runs on one
        thread meanwhile (see ``blas.py``: faster for models this small). Returns the History."""
        from .. import optim, train
        data = BucketBatches(self.examples(train_pairs, max_length=max_length), batch_size, seed=seed)
        valid = None
        if valid_pairs:
            valid = BucketBatches(self.examples(valid_pairs), batch_size, shuffle=False)
        if optimizer is None:
            lr = learning_rate if not decay else optim.InverseSqrtDecay(learning_rate, decay)
            if warmup_steps:
                lr = optim.LinearWarmup(lr, warmup_steps)
            optimizer = optim.Adam(learning_rate=lr, global_clipnorm=global_clipnorm)
        with single_threaded_blas():
            return train.fit(self.model, data, optimizer=optimizer, epochs=epochs,
                             validation_data=valid, callbacks=list(callbacks), checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, resume=resume, verbose=verbose)

    # -- translating ------------------------------------------------------------------------------
    def translate(self, sentences, *, beam_size=1, length_normalization=1.0, max_len=None,
                  batch_size=64):
        """Translate a string or a list of strings. Returns a :class:`Translation` (or a list).
        ``beam_size=1`` is greedy search. An empty (or blank) sentence translates to ""."""
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise TypeError(f"sentences: expected strings, item {i} is {type(s).__name__}")
        src_tokens = [self.src_tokenizer.encode(s) for s in items]
        results = [Translation("", [], toks, 0.0, None) for toks in src_tokens]
        todo = sorted((i for i, t in enumerate(src_tokens) if t), key=lambda i: len(src_tokens[i]))
        with single_threaded_blas():
            self._translate_batches(todo, src_tokens, results, beam_size, length_normalization,
                                    max_len, batch_size)
        return results[0] if single else results

    def _translate_batches(self, todo, src_tokens, results, beam_size, length_normalization,
                           max_len, batch_size):
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            batch = make_batch([(self.src_vocab.encode(src_tokens[i]), [0]) for i in idx])
            if beam_size == 1:
                hyps = greedy_search(self.model, batch.src, batch.src_lengths, max_len=max_len)
            else:
                hyps = beam_search(self.model, batch.src, batch.src_lengths, beam_size=beam_size,
                                   length_normalization=length_normalization, max_len=max_len)
            for i, h in zip(idx, hyps):
                toks = self.tgt_vocab.decode(h.tokens)
                results[i] = Translation(self.tgt_tokenizer.decode(toks), toks, src_tokens[i],
                                         h.score, h.attention)

    def evaluate(self, pairs, *, beam_size=1, length_normalization=1.0, batch_size=64):
        """Translate the sources of ``pairs`` and score against their targets: ``exact_match`` (%),
        ``bleu_lowercase_tokenized`` (lstmkit's BLEU-4 on lowercased WordTokenizer tokens), and, with
        sacreBLEU installed (``pip install lstmkit[bleu]``), ``sacrebleu`` (detokenized,
        case-sensitive) and ``chrf``. Returns ``(scores dict, translations)``."""
        from .metrics import bleu_scores
        pairs = list(pairs)
        out = self.translate([s for s, _ in pairs], beam_size=beam_size,
                             length_normalization=length_normalization, batch_size=batch_size)
        hyps = [t.text for t in out]
        refs = [r for _, r in pairs]
        scores = {"exact_match": 100.0 * np.mean([h == " ".join(r.split()) for h, r in zip(hyps, refs)])}
        scores.update(bleu_scores(hyps, refs))
        return scores, out

    # -- files ------------------------------------------------------------------------------------
    def save(self, path):
        """One ``.npz``: the weights, the model's config, both vocabularies and tokenizers."""
        meta = {"format": FORMAT, "config": self.model.config,
                "src_vocab": self.src_vocab.tokens, "tgt_vocab": self.tgt_vocab.tokens,
                "src_tokenizer": self.src_tokenizer.to_config(),
                "tgt_tokenizer": self.tgt_tokenizer.to_config(), "info": self.info}
        arrays = {f"param/{k}": v for k, v in self.model.params.items()}
        arrays["__translator__"] = np.array(json.dumps(meta))
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`. A file of another kind, or weights that do not fit
        the stored vocabulary or configuration, raise ValueError naming the difference."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model: no such file {path!r}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise ValueError(f"model {path}: not an lstmkit translator file ({type(e).__name__}: {e})") \
                from None
        if "__translator__" not in data:
            hint = (" (it is a training checkpoint: translators are written by Translator.save or "
                    "`lstmkit translate train --out`)" if "__meta__" in data else "")
            raise ValueError(f"model {path}: not an lstmkit translator file{hint}")
        meta = json.loads(str(data.pop("__translator__")))
        if meta.get("format") != FORMAT:
            raise ValueError(f"model {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        config = dict(meta["config"])
        src_vocab, tgt_vocab = Vocab(meta["src_vocab"]), Vocab(meta["tgt_vocab"])
        for side, vocab in (("src", src_vocab), ("tgt", tgt_vocab)):
            if len(vocab) != config[f"{side}_vocab_size"]:
                raise ValueError(f"model {path}: its {side} vocabulary has {len(vocab)} tokens but "
                                 f"the model was built for {config[f'{side}_vocab_size']}")
        model = Seq2Seq(**config)
        load_weights(model, {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")},
                     path)
        return cls(model, tokenizer_from_config(meta["src_tokenizer"]),
                   tokenizer_from_config(meta["tgt_tokenizer"]), src_vocab, tgt_vocab,
                   meta.get("info"))

    def plot_attention(self, translation, path):
        """Write the attention weights of one :class:`Translation` as a heatmap PNG (needs
        matplotlib: ``pip install lstmkit[plot]``)."""
        if translation.attention is None:
            raise ValueError("translation: this model has no attention (attention=None) to plot")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("plotting attention needs matplotlib: pip install lstmkit[plot]") from None
        att = translation.attention
        fig, ax = plt.subplots(figsize=(max(4, 0.35 * att.shape[1] + 2), max(3, 0.35 * att.shape[0] + 2)))
        ax.imshow(att, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(att.shape[1]), [t.replace("\u2581", "_") for t in translation.source_tokens],
                      rotation=90)
        ax.set_yticks(range(att.shape[0]), [t.replace("\u2581", "_") for t in translation.tokens])
        ax.set_xlabel("source")
        ax.set_ylabel("translation")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def load_weights(model, params, path):
    """Copy ``params`` into ``model`` after checking every name and shape."""
    for k, p in model.params.items():
        if k not in params:
            raise ValueError(f"model {path}: weight {k!r} is missing; the file was written for "
                             "another configuration")
        if params[k].shape != p.shape:
            raise ValueError(f"model {path}: weight {k!r} has shape {params[k].shape}, the "
                             f"configuration needs {p.shape} (another vocabulary or size?)")
    extra = sorted(set(params) - set(model.params))
    if extra:
        raise ValueError(f"model {path}: unexpected weights {extra[:3]}; another configuration?")
    for k, p in model.params.items():
        p[...] = params[k]


class StopAfter(Callback):
    """A ``lstmkit.train`` callback: stop once ``metric() >= target`` (called at every epoch's end),
    or when the next epoch, as long as the last one, would end past ``seconds`` since training began
    (a time budget that the run keeps, rather than overruns by up to an epoch)."""

    def __init__(self, seconds=None, metric=None, target=None, log=None):
        self.seconds, self.metric, self.target, self.log = seconds, metric, target, log

    def on_train_begin(self, logs=None):
        self.t0 = self.t_epoch = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.metric is not None:
            value = self.metric()
            if logs is not None:
                logs["val_metric"] = value
            if self.log:
                self.log(epoch, value, time.monotonic() - self.t0)
            if self.target is not None and value >= self.target:
                self.run.stop_training = True
        now = time.monotonic()
        last_epoch, self.t_epoch = now - self.t_epoch, now
        if self.seconds is not None and now - self.t0 + last_epoch > self.seconds:
            self.run.stop_training = True
