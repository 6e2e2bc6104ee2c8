"""``lstmkit demo``: train a small German->English translator with attention, on a corpus the package
generates itself, and measure it on held-out sentences.

The corpus (``lstmkit.seq2seq.generated``): numbers written in words ("dreitausendvierhunderteinundzwanzig"
-> "three thousand four hundred twenty-one": German puts units before tens), short sentences with a
number, and dates. The source is cut into subwords by a small BPE learned from the training
sentences (300 merges: pieces like "zwanzig", "und", "hundert", so the model must still find
"einund" + "zwanzig" inside one word), the English is written word by word. Training stops when a validation set
is translated perfectly or after ``seconds``; the last line is the exact-match accuracy on sentences
never seen in training.
"""
import time

import numpy as np

SETTINGS = dict(train_size=4000, test_size=200, valid_size=100, seconds=150, max_epochs=40,
                batch_size=64, learning_rate=8e-3, embedding_size=32, hidden_size=128,
                attention="dot", input_feeding=False, dropout=0.0, label_smoothing=0.0,
                source_tokenizer="bpe", num_merges=300, seed=0)


def train_demo(*, train_size, test_size, valid_size, seconds, max_epochs, batch_size, learning_rate,
               embedding_size, hidden_size, attention, input_feeding, dropout, label_smoothing,
               source_tokenizer, num_merges, seed, log=print):
    """Generate the corpus, build and train the translator. Returns ``(translator, test pairs)``."""
    from .seq2seq.blas import single_threaded_blas
    from .seq2seq.generated import demo_corpus
    from .seq2seq.translator import StopAfter, Translator

    train, test = demo_corpus(train_size + valid_size, test_size, seed=seed)
    train, valid = train[valid_size:], train[:valid_size]
    translator = Translator.build(train, tokenizer=(source_tokenizer, "word"), num_merges=num_merges,
                                  embedding_size=embedding_size,
                                  hidden_size=hidden_size, attention=attention,
                                  input_feeding=input_feeding, dropout=dropout,
                                  label_smoothing=label_smoothing, seed=seed)

    def valid_exact_match():
        return translator.evaluate(valid)[0]["exact_match"]

    def report(epoch, value, elapsed):
        log(f"epoch {epoch + 1}: {elapsed:5.1f} s, validation exact match {value:5.1f}%")

    stop = StopAfter(seconds=seconds, metric=valid_exact_match, target=100.0, log=report)
    with single_threaded_blas():
        translator.fit(train, epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate,
                       callbacks=[stop], verbose=0, seed=seed)
    return translator, test


def run(settings=None, log=print):
    """Train, show a few translations, and end with ``exact-match accuracy: NN.N%``. Returns the
    accuracy in percent."""
    from .seq2seq.blas import single_threaded_blas

    s = dict(SETTINGS, **(settings or {}))
    log(f"lstmkit demo: a German->English translator (bidirectional LSTM encoder, LSTM decoder with "
        f"{s['attention']} attention), trained on {s['train_size']} generated sentences for at most "
        f"{s['seconds']} s")
    t0 = time.monotonic()
    translator, test = train_demo(**s, log=log)
    log(f"trained in {time.monotonic() - t0:.1f} s ({translator.model.config['hidden_size']} units, "
        f"{sum(p.size for p in translator.model.params.values()):,} weights)")
    with single_threaded_blas():
        scores, out = translator.evaluate(test, beam_size=1)
    log("\nheld-out sentences (never seen in training):")
    for (de, en), t in list(zip(test, out))[:8]:
        mark = "ok" if t.text == en else "WRONG, expected: " + en
        log(f"  {de}\n    -> {t.text}    [{mark}]")
    accuracy = float(scores["exact_match"])
    log(f"\nexact-match accuracy: {accuracy:.1f}%")
    return accuracy


if __name__ == "__main__":
    run()
