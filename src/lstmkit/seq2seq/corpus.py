"""Parallel text: two aligned files (plain or gzipped) or one TSV, and Multi30k by name.

    pairs = read_parallel("train.de.gz", "train.en.gz")          # [(german, english), ...]
    pairs = read_parallel("pairs.tsv")                            # source<TAB>target per line
    train = multi30k("train")                                     # local copy, or download + verify

Line N of one file is the translation of line N of the other. Misaligned files (different line
counts), empty lines and sentences longer than ``max_chars`` raise ValueError naming the file, the
line and what was found (``skip_empty=True`` / ``skip_long=True`` drop such pairs instead).
"""
import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
# SHA-256 of the published files (data/task1/raw/ of github.com/multi30k/dataset).
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}


def _open_text(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")


def _lines(path):
    with _open_text(path) as f:
        try:
            return [line.rstrip("\r\n") for line in f]
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def read_parallel(source, target=None, *, max_chars=None, skip_empty=False, skip_long=False):
    """Read aligned sentence pairs.

    Args:
        source: the source-language file (one sentence a line, ``.gz`` or plain) or, with
            ``target=None``, a TSV file whose lines are ``source<TAB>target``.
        target: the target-language file, aligned line by line with ``source``.
        max_chars: refuse (or with ``skip_long`` drop) pairs with a side longer than this.
        skip_empty: drop pairs with an empty side instead of raising.
    Returns a list of ``(source, target)`` strings.
    """
    if target is None:
        pairs, names = [], (str(source), str(source))
        for n, line in enumerate(_lines(source), 1):
            if "\t" not in line:
                if not line.strip() and skip_empty:
                    continue
                raise ValueError(f"{source}: line {n} has no tab; a TSV line is source<TAB>target "
                                 "(or pass the target file as the second argument)")
            pairs.append(tuple(line.split("\t", 2)[:2]))
    else:
        src, tgt = _lines(source), _lines(target)
        if len(src) != len(tgt):
            raise ValueError(f"misaligned files: {source} has {len(src)} lines but {target} has "
                             f"{len(tgt)}; line N of one must translate line N of the other")
        pairs, names = list(zip(src, tgt)), (str(source), str(target))
    out = []
    for n, (s, t) in enumerate(pairs, 1):
        for name, text in zip(names, (s, t)):
            if not text.strip():
                if skip_empty:
                    break
                raise ValueError(f"{name}: line {n} is empty (skip_empty=True drops such pairs)")
            if max_chars is not None and len(text) > max_chars:
                if skip_long:
                    break
                raise ValueError(f"{name}: line {n} has {len(text)} characters, more than "
                                 f"max_chars={max_chars} (skip_long=True drops such pairs)")
        else:
            out.append((s.strip(), t.strip()))
    return out


def default_cache():
    return Path(os.environ.get("LSTMKIT_DATA", Path.home() / ".cache" / "lstmkit")) / "multi30k"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url, path, expected_sha256=None, *, timeout=60):
    """Fetch ``url`` to ``path`` (atomically, via a temporary file) and verify its SHA-256."""
    import urllib.request   # only when downloading: slow to import
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
            except OSError as e:
                raise OSError(f"could not download {url}: {e}. Put the files in a folder yourself and "
                              "pass it as data_dir") from None
        if expected_sha256 is not None:
            got = sha256(tmp)
            if got != expected_sha256:
                raise ValueError(f"checksum mismatch for {url}: SHA-256 {got}, expected "
                                 f"{expected_sha256}; the download is corrupted or the file changed")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def multi30k(split="train", *, data_dir=None, cache_dir=None, download_missing=True, base_url=None,
             checksums=None, languages=("de", "en")):
    """Multi30k task 1 (Elliott et al. 2016) German->English pairs of ``split`` ("train", "val",
    "test_2016_flickr").

    Looked up in ``data_dir`` (``{split}.de.gz`` and ``{split}.en.gz``, or without ``.gz``) when
    given; otherwise in ``cache_dir`` (default ``$LSTMKIT_DATA/multi30k`` or
    ``~/.cache/lstmkit/multi30k``), downloading missing files from the dataset's repository
    (``base_url``) and verifying their SHA-256 (``checksums``, default :data:`MULTI30K_SHA256`).
    """
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"split: expected one of {MULTI30K_SPLITS}, got {split!r}")
    files = []
    if data_dir is not None:
        for lang in languages:
            gz, plain = Path(data_dir) / f"{split}.{lang}.gz", Path(data_dir) / f"{split}.{lang}"
            if not gz.exists() and not plain.exists():
                raise FileNotFoundError(f"data_dir: {data_dir} has neither {gz.name} nor {plain.name}")
            files.append(gz if gz.exists() else plain)
    else:
        cache = Path(cache_dir) if cache_dir is not None else default_cache()
        sums = MULTI30K_SHA256 if checksums is None else checksums
        for lang in languages:
            name = f"{split}.{lang}.gz"
            path = cache / name
            if not path.exists():
                if not download_missing:
                    raise FileNotFoundError(f"{path} is missing (download_missing=False)")
                download((base_url or MULTI30K_URL).rstrip("/") + "/" + name, path, sums.get(name))
            files.append(path)
    return read_parallel(*files)
