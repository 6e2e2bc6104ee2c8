"""Sequence-to-sequence translation: encoder-decoder LSTMs with state passing and attention.

    from lstmkit.seq2seq import Seq2Seq, greedy_search, beam_search

See ``model.py`` (the models), ``search.py`` (decoding), ``text.py`` (tokenizers, vocabularies),
``batching.py``, ``generated.py`` (the built-in German->English corpus), ``corpus.py`` (parallel
text files, Multi30k), ``translator.py`` (the application), ``metrics.py`` (BLEU).
"""
from .batching import BucketBatches, make_batch
from .corpus import multi30k, read_parallel
from .generated import demo_corpus, english_number, generate_pairs, german_number
from .model import BOS, EOS, PAD, UNK, DecoderState, Seq2Seq, Seq2SeqBatch
from .search import Hypothesis, beam_search, greedy_search
from .text import BPETokenizer, CharTokenizer, Vocab, WordTokenizer
from .translator import Translation, Translator

__all__ = ["Seq2Seq", "Seq2SeqBatch", "DecoderState", "greedy_search", "beam_search", "Hypothesis",
           "BucketBatches", "make_batch", "CharTokenizer", "WordTokenizer", "BPETokenizer", "Vocab",
           "demo_corpus", "generate_pairs", "german_number", "english_number",
           "PAD", "UNK", "BOS", "EOS", "Translator", "Translation", "read_parallel", "multi30k"]
