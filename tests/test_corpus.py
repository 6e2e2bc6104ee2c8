"""Parallel-text reading, Multi30k from a folder and from a (local) download server, BPE on it."""
import functools
import gzip
import hashlib
import http.server
import threading

import pytest

from lstmkit.seq2seq.corpus import multi30k, read_parallel


def write(path, lines, gz=False):
    data = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_two_files_plain_and_gzipped(tmp_path):
    de = write(tmp_path / "a.de.gz", ["Ein Hund.", "Zwei Katzen."], gz=True)
    en = write(tmp_path / "a.en", ["A dog.", "Two cats."])
    assert read_parallel(de, en) == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]


def test_tsv(tmp_path):
    tsv = write(tmp_path / "p.tsv", ["Ein Hund.\tA dog.", "Hallo\tHello"])
    assert read_parallel(tsv) == [("Ein Hund.", "A dog."), ("Hallo", "Hello")]
    bad = write(tmp_path / "bad.tsv", ["Ein Hund.\tA dog.", "no tab here"])
    with pytest.raises(ValueError, match=r"bad.tsv: line 2 has no tab"):
        read_parallel(bad)


def test_misaligned_files_name_both_and_counts(tmp_path):
    de = write(tmp_path / "x.de", ["a", "b", "c"])
    en = write(tmp_path / "x.en", ["a", "b"])
    with pytest.raises(ValueError, match=r"x.de has 3 lines but .*x.en has 2"):
        read_parallel(de, en)


def test_empty_and_long_lines(tmp_path):
    de = write(tmp_path / "e.de", ["Hund", "", "Katze", "x" * 50])
    en = write(tmp_path / "e.en", ["dog", "nothing", "cat", "long"])
    with pytest.raises(ValueError, match=r"e.de: line 2 is empty"):
        read_parallel(de, en)
    with pytest.raises(ValueError, match=r"e.de: line 4 has 50 characters, more than max_chars=20"):
        read_parallel(de, en, skip_empty=True, max_chars=20)
    assert read_parallel(de, en, skip_empty=True, max_chars=20, skip_long=True) == [
        ("Hund", "dog"), ("Katze", "cat")]


def test_multi30k_from_shared_folder(multi30k_dir):
    test = multi30k("test_2016_flickr", data_dir=multi30k_dir)
    assert len(test) == 1000 and all(de and en for de, en in test)
    assert len(multi30k("val", data_dir=multi30k_dir)) == 1014


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_checksums_and_caches(server, tmp_path):
    root, url = server
    de = write(root / "val.de.gz", ["Ein Hund.", "Eine Katze."], gz=True)
    en = write(root / "val.en.gz", ["A dog.", "A cat."], gz=True)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (de, en)}
    cache = tmp_path / "cache"
    pairs = multi30k("val", cache_dir=cache, base_url=url, checksums=sums)
    assert pairs == [("Ein Hund.", "A dog."), ("Eine Katze.", "A cat.")]
    assert (cache / "val.de.gz").exists()
    de.unlink()                       # cached: no second download
    assert multi30k("val", cache_dir=cache, base_url=url, checksums=sums) == pairs


def test_download_with_wrong_checksum_keeps_nothing(server, tmp_path):
    root, url = server
    write(root / "val.de.gz", ["Ein Hund."], gz=True)
    write(root / "val.en.gz", ["A dog."], gz=True)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch"):
        multi30k("val", cache_dir=cache, base_url=url, checksums={"val.de.gz": "0" * 64})
    assert not (cache / "val.de.gz").exists()
    with pytest.raises(OSError, match="could not download"):
        multi30k("train", cache_dir=cache, base_url=url, checksums={})


def test_bpe_on_multi30k_detokenizes_exactly(multi30k_dir):
    from lstmkit.seq2seq.text import BPETokenizer
    val = multi30k("val", data_dir=multi30k_dir)
    test = multi30k("test_2016_flickr", data_dir=multi30k_dir)
    for side in (0, 1):
        bpe = BPETokenizer.learn([p[side] for p in val], num_merges=500)
        assert len(bpe.merges) == 500
        for pair in test:
            text = pair[side]
            assert bpe.decode(bpe.encode(text)) == " ".join(text.split())
        # learned subwords shorten the text: fewer tokens than characters
        assert sum(len(bpe.encode(p[side])) for p in test) < 0.5 * sum(len(p[side]) for p in test)
