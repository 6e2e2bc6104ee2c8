"""Tokenizers with exact detokenization, and vocabularies.

Every tokenizer marks the start of a word with "▁" (U+2581, SentencePiece's convention), so joining the
tokens and turning each "▁" back into a space restores the text: for any text without "▁",
``tok.decode(tok.encode(text)) == " ".join(text.split())`` (runs of white space become one space).

    CharTokenizer   one token per character:            "Ich sah" -> ▁I c h ▁s a h
    WordTokenizer   words, single digits, punctuation:  "Er sah 21 Hunde." -> ▁Er ▁sah ▁2 1 ▁Hunde .
    BPETokenizer    byte-pair-encoding subwords learned from training text (Sennrich et al. 2016) on
                    the WordTokenizer's pieces:        "Fahrradfahrer" -> ▁Fahr rad fahrer

A :class:`Vocab` maps tokens to ids; ids 0..3 are ``<pad> <unk> <s> </s>``.
"""
import collections
import heapq
import re

MARK = "\u2581"
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
_PIECE = re.compile(r"(\s*)(\d|[^\W\d_]+|\S)")


def _check_text(text):
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    return text.replace(MARK, " ")


def pieces(text):
    """Pre-tokenization: words (letters), single digits and single other characters, each marked
    with "▁" when white space (or the start of the text) precedes it."""
    text = _check_text(text).strip()
    return [(MARK if (ws or i == 0) else "") + p
            for i, (ws, p) in enumerate(_PIECE.findall(text))]


def detokenize(tokens):
    return "".join(tokens).replace(MARK, " ").strip()


class CharTokenizer:
    """One token per character (spaces become the "▁" of the next character)."""
    kind = "char"

    def encode(self, text):
        text = " ".join(_check_text(text).split())
        out, space = [], True
        for ch in text:
            if ch == " ":
                space = True
                continue
            out.append(MARK + ch if space else ch)
            space = False
        return out

    def decode(self, tokens):
        return detokenize(tokens)

    def to_config(self):
        return {"kind": self.kind}


class WordTokenizer:
    """Words, single digits and single punctuation characters (see :func:`pieces`)."""
    kind = "word"

    def encode(self, text):
        return pieces(text)

    def decode(self, tokens):
        return detokenize(tokens)

    def to_config(self):
        return {"kind": self.kind}


class BPETokenizer:
    """Byte-pair encoding learned from text: start from characters, repeatedly merge the most
    frequent adjacent pair inside a piece (never across pieces), ``num_merges`` times.

    ``BPETokenizer.learn(texts, num_merges)`` learns the merges; ``encode`` applies them in the
    order learned (lowest rank first), as Sennrich et al.'s reference does. Pure Python, no
    dependency; learning 8000 merges on Multi30k's 29k German sentences takes about 3 s.
    """
    kind = "bpe"

    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self._cache = {}

    @classmethod
    def learn(cls, texts, num_merges=8000, min_frequency=2):
        """Learn ``num_merges`` merges (fewer if no pair occurs ``min_frequency`` times)."""
        if not isinstance(num_merges, int) or num_merges < 0:
            raise ValueError(f"num_merges: expected a non-negative integer, got {num_merges!r}")
        counts = collections.Counter(p for t in texts for p in pieces(t))
        words = [list(_chars(w)) for w in counts]
        freqs = list(counts.values())
        pair_counts = collections.Counter()
        where = collections.defaultdict(set)        # pair -> indices of words that contain it
        for i, (w, f) in enumerate(zip(words, freqs)):
            for pair in zip(w, w[1:]):
                pair_counts[pair] += f
                where[pair].add(i)
        # A heap of (-count, pair) with lazy deletion: an entry is used only if its count is current.
        heap = [(-n, p) for p, n in pair_counts.items()]
        heapq.heapify(heap)
        merges = []
        while len(merges) < num_merges and heap:
            neg, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg:
                continue
            if -neg < min_frequency:
                break
            merges.append(pair)
            a, b = pair
            joined = a + b
            changed = set()
            for i in where.pop(pair, ()):
                w, f = words[i], freqs[i]
                if len(w) < 2:
                    continue
                for p in zip(w, w[1:]):                 # remove the word's old pairs ...
                    pair_counts[p] -= f
                    changed.add(p)
                new, j = [], 0
                while j < len(w):
                    if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                        new.append(joined)
                        j += 2
                    else:
                        new.append(w[j])
                        j += 1
                words[i] = new
                for p in zip(new, new[1:]):             # ... and add its new ones
                    pair_counts[p] += f
                    where[p].add(i)
                    changed.add(p)
            pair_counts.pop(pair, None)
            for p in changed:
                n = pair_counts.get(p, 0)
                if n > 0:
                    heapq.heappush(heap, (-n, p))
                else:
                    pair_counts.pop(p, None)
        return cls(merges)

    def _encode_piece(self, piece):
        hit = self._cache.get(piece)
        if hit is not None:
            return hit
        w = list(_chars(piece))
        while len(w) > 1:
            ranked = [(self.ranks.get(p, 1 << 60), j) for j, p in enumerate(zip(w, w[1:]))]
            rank, j = min(ranked)
            if rank == 1 << 60:
                break
            w[j:j + 2] = [w[j] + w[j + 1]]
        if len(self._cache) < 200_000:
            self._cache[piece] = w
        return w

    def encode(self, text):
        return [t for p in pieces(text) for t in self._encode_piece(p)]

    def decode(self, tokens):
        return detokenize(tokens)

    def to_config(self):
        return {"kind": self.kind, "merges": [list(m) for m in self.merges]}


def _chars(piece):
    # the word mark stays attached to the first character
    if piece.startswith(MARK) and len(piece) > 1:
        return [piece[:2]] + list(piece[2:])
    return list(piece)


def tokenizer_from_config(config):
    kind = config.get("kind")
    if kind == "char":
        return CharTokenizer()
    if kind == "word":
        return WordTokenizer()
    if kind == "bpe":
        return BPETokenizer(config["merges"])
    raise ValueError(f"tokenizer: expected kind 'char', 'word' or 'bpe', got {kind!r}")


class Vocab:
    """Token <-> id. Ids 0..3 are ``<pad> <unk> <s> </s>``; unknown tokens map to ``<unk>``."""

    def __init__(self, tokens):
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            tokens = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        if len(self.index) != len(tokens):
            raise ValueError("tokens: the vocabulary lists a token twice")

    @classmethod
    def build(cls, token_lists, *, min_frequency=1, max_size=None):
        """From tokenized sentences: tokens seen ``min_frequency`` times, most frequent first."""
        counts = collections.Counter(t for toks in token_lists for t in toks)
        ranked = sorted((t for t, n in counts.items() if n >= min_frequency),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[:max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + ranked)

    def __len__(self):
        return len(self.tokens)

    def encode(self, tokens):
        unk = 1
        return [self.index.get(t, unk) for t in tokens]

    def decode(self, ids):
        return [self.tokens[i] for i in ids]
