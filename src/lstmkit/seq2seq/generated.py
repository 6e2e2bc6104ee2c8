"""A German->English corpus generated on the spot, deterministic by seed (the data of ``lstmkit demo``).

Three kinds of sentence, each needing what translation needs:

* numbers written in words, 1..9999 — German writes them as one word and puts units before tens
  ("dreitausendvierhunderteinundzwanzig" -> "three thousand four hundred twenty-one"), so the model
  must read a whole block before it can write "twenty";
* short sentences with a number and a noun ("Wir sehen siebzehn Katzen." -> "We see seventeen cats.");
* dates ("am 3. März 1998" -> "on March 3, 1998"): reordering, and copying digits.

    >>> from lstmkit.seq2seq.generated import german_number, english_number
    >>> german_number(21), english_number(21)
    ('einundzwanzig', 'twenty-one')
"""
import numpy as np

_DE_UNITS = ["", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
_DE_TEENS = ["zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
             "achtzehn", "neunzehn"]
_DE_TENS = ["", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
            "neunzig"]
_EN_UNITS = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_EN_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
             "eighteen", "nineteen"]
_EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

MONTHS = [("Januar", "January"), ("Februar", "February"), ("März", "March"), ("April", "April"),
          ("Mai", "May"), ("Juni", "June"), ("Juli", "July"), ("August", "August"),
          ("September", "September"), ("Oktober", "October"), ("November", "November"),
          ("Dezember", "December")]
NOUNS = [("Katzen", "cats"), ("Hunde", "dogs"), ("Bücher", "books"), ("Äpfel", "apples"),
         ("Häuser", "houses"), ("Autos", "cars"), ("Kinder", "children"), ("Vögel", "birds"),
         ("Stühle", "chairs"), ("Blumen", "flowers"), ("Fahrräder", "bicycles"), ("Briefe", "letters")]
TEMPLATES = [("Ich habe {} {}.", "I have {} {}."), ("Wir sehen {} {}.", "We see {} {}."),
             ("Er kauft {} {}.", "He buys {} {}."), ("Sie verkaufen {} {}.", "They sell {} {}."),
             ("Es gibt {} {}.", "There are {} {}."), ("Du brauchst {} {}.", "You need {} {}.")]


def _de_below_100(n):
    if n < 10:
        return _DE_UNITS[n]
    if n < 20:
        return _DE_TEENS[n - 10]
    tens, units = divmod(n, 10)
    return (_DE_UNITS[units] + "und" if units else "") + _DE_TENS[tens]


def german_number(n):
    """``n`` in 1..9999 as one German word (``eins`` alone, ``ein`` inside a compound)."""
    if not 1 <= n <= 9999:
        raise ValueError(f"n: expected 1..9999, got {n}")
    thousands, rest = divmod(n, 1000)
    hundreds, below = divmod(rest, 100)
    word = ""
    if thousands:
        word += _DE_UNITS[thousands] + "tausend"
    if hundreds:
        word += _DE_UNITS[hundreds] + "hundert"
    if below:
        word += "eins" if below == 1 else _de_below_100(below)
    return word


def _en_below_100(n):
    if n < 10:
        return _EN_UNITS[n]
    if n < 20:
        return _EN_TEENS[n - 10]
    tens, units = divmod(n, 10)
    return _EN_TENS[tens] + ("-" + _EN_UNITS[units] if units else "")


def english_number(n):
    """``n`` in 1..9999 in English words, US style ("four hundred twenty-one")."""
    if not 1 <= n <= 9999:
        raise ValueError(f"n: expected 1..9999, got {n}")
    thousands, rest = divmod(n, 1000)
    hundreds, below = divmod(rest, 100)
    words = []
    if thousands:
        words += [_EN_UNITS[thousands], "thousand"]
    if hundreds:
        words += [_EN_UNITS[hundreds], "hundred"]
    if below:
        words.append(_en_below_100(below))
    return " ".join(words)


def _sample(rng):
    kind = rng.random()
    if kind < 0.4:
        n = int(rng.integers(1, 10000))
        return german_number(n), english_number(n)
    if kind < 0.8:
        n = int(rng.integers(2, 10000))
        de, en = TEMPLATES[rng.integers(len(TEMPLATES))]
        noun_de, noun_en = NOUNS[rng.integers(len(NOUNS))]
        return de.format(german_number(n), noun_de), en.format(english_number(n), noun_en)
    day, month, year = int(rng.integers(1, 29)), int(rng.integers(12)), int(rng.integers(1900, 2100))
    return f"am {day}. {MONTHS[month][0]} {year}", f"on {MONTHS[month][1]} {day}, {year}"


def generate_pairs(count, *, seed=0, exclude=()):
    """``count`` distinct (German, English) pairs drawn with ``numpy.random.default_rng(seed)``,
    none of whose German side is in ``exclude``."""
    rng = np.random.default_rng(seed)
    seen = set(exclude)
    pairs = []
    for _ in range(count * 50):
        if len(pairs) == count:
            break
        de, en = _sample(rng)
        if de not in seen:
            seen.add(de)
            pairs.append((de, en))
    if len(pairs) < count:
        raise ValueError(f"count: could only generate {len(pairs)} distinct sentences, asked {count}")
    return pairs


def demo_corpus(train_size=8000, test_size=200, *, seed=0):
    """Training pairs and held-out test pairs (no German sentence of the test set is in training)."""
    train = generate_pairs(train_size, seed=seed)
    test = generate_pairs(test_size, seed=seed + 1, exclude={de for de, _ in train})
    return train, test
