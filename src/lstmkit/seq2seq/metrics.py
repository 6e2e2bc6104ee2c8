"""Translation quality: BLEU (Papineni et al. 2002) and chrF.

:func:`corpus_bleu` is a plain corpus-level BLEU-4 on token lists (no smoothing, brevity penalty on
the corpus), the number the public Multi30k tutorials report when it is given lowercased tokens
(:func:`bleu_tokens`: words and single punctuation characters). :func:`bleu_scores` adds sacreBLEU's
standard detokenized, case-sensitive BLEU and chrF when ``sacrebleu`` is installed
(``pip install lstmkit[bleu]``).
"""
import collections
import math
import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def bleu_tokens(text):
    """Lowercased words and single punctuation characters: "A man's bike." -> a man ' s bike ."""
    return _TOKEN.findall(text.lower())


def _ngrams(tokens, n):
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses, references, max_n=4):
    """BLEU in percent of token lists ``hypotheses`` against one reference token list each::

        p_n = sum clipped n-gram matches / sum hypothesis n-grams      (n = 1..max_n)
        BP  = 1 if c > r else exp(1 - r / c)       c, r: total hypothesis and reference lengths
        BLEU = 100 * BP * exp(mean_n log p_n)      (0 if any p_n is 0)
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references: expected the same number, got "
                         f"{len(hypotheses)} and {len(references)}")
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for hyp, ref in zip(hypotheses, references):
        c += len(hyp)
        r += len(ref)
        for n in range(1, max_n + 1):
            h, rf = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(k, rf[g]) for g, k in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if c == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100.0 * bp * math.exp(log_p)


def bleu_scores(hypotheses, references):
    """``bleu_lowercase_tokenized`` always; ``sacrebleu`` (case-sensitive, 13a tokenization of
    detokenized text) and ``chrf`` when sacreBLEU is installed."""
    scores = {"bleu_lowercase_tokenized": corpus_bleu([bleu_tokens(h) for h in hypotheses],
                                                      [bleu_tokens(r) for r in references])}
    try:
        import sacrebleu
    except ImportError:
        return scores
    scores["sacrebleu"] = sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score
    scores["chrf"] = sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score
    return scores
