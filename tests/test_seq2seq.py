"""Seq2seq models: whole-model gradient check, decoding invariants, tokenizers, generated data."""
import numpy as np
import pytest

from lstmkit.seq2seq.batching import BucketBatches, make_batch
from lstmkit.seq2seq.generated import demo_corpus, english_number, german_number
from lstmkit.seq2seq.model import BOS, EOS, Seq2Seq, Seq2SeqBatch
from lstmkit.seq2seq.search import beam_search, greedy_search
from lstmkit.seq2seq.text import BPETokenizer, CharTokenizer, Vocab, WordTokenizer

from helpers import central_difference

CONFIGS = {
    "sutskever": dict(attention=None, num_layers=2),
    "dot_feed": dict(attention="dot", input_feeding=True),
    "general_whole": dict(attention="general", input_feeding=False, num_layers=2),
    "additive_tied": dict(attention="additive", input_feeding=True, tie_embeddings=True),
}


def small(kind, dtype="float64", dropout=0.0, seed=0):
    return Seq2Seq(11, 13, embedding_size=4, hidden_size=6, dropout=dropout, dtype=dtype, seed=seed,
                   **CONFIGS[kind])


def random_batch(rng, B=3, V_src=11, V_tgt=13):
    src_len = np.array([5, 3, 1])[:B]
    tgt_len = np.array([4, 2, 3])[:B]
    examples = [(list(rng.integers(4, V_src, n)), list(rng.integers(4, V_tgt, m)))
                for n, m in zip(src_len, tgt_len)]
    return make_batch(examples)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_whole_model_gradient_check(kind, rng):
    model = small(kind)
    batch = random_batch(rng)
    logits, cache = model.forward(batch, training=True)
    d_logits = rng.normal(size=logits.shape)
    model.zero_grad()
    model.backward(cache, d_logits)

    def objective():
        return float((model.forward(batch, training=True)[0] * d_logits).sum())

    eps = 1e-6
    checked = 0
    for name, p in model.params.items():
        g = model.grads[name]
        # a couple of entries per parameter: the largest analytic gradient and a random one
        for i in {int(np.abs(g).argmax()), int(rng.integers(p.size))}:
            i = np.unravel_index(i, p.shape)   # p may be Fortran-ordered: index, never reshape
            num = central_difference(objective, p, i, eps)
            assert abs(num - g[i]) <= 1e-6 + 1e-5 * abs(num), (name, i, num, g[i])
            checked += 1
    assert checked >= len(model.params)


def test_train_step_matches_loss_gradient(rng):
    """train_step's gradient equals the finite difference of the label-smoothed mean loss."""
    model = Seq2Seq(11, 13, embedding_size=4, hidden_size=6, attention="general", dropout=0.0,
                    dtype="float64", label_smoothing=0.1)
    batch = random_batch(rng)
    model.zero_grad()
    out = model.train_step(batch)
    assert out["tokens"] == int(np.count_nonzero(batch.tgt[:, 1:]))
    labels = batch.tgt[:, 1:]
    eps = 1e-6
    for name, idx in [("output/kernel", (0, 0)), ("decoder/recurrent_kernel", (2, 5)),
                      ("src_embedding/embeddings", (5, 1))]:
        p, g = model.params[name], model.grads[name]
        old = p[idx]
        p[idx] = old + eps
        up = model.loss(model.forward(batch)[0], labels)
        p[idx] = old - eps
        down = model.loss(model.forward(batch)[0], labels)
        p[idx] = old
        np.testing.assert_allclose(g[idx], (up - down) / (2 * eps), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["sutskever", "dot_feed", "general_whole"])
def test_stepwise_decoding_equals_teacher_forcing(kind, rng):
    model = small(kind, dropout=0.3)
    batch = random_batch(rng)
    logits, _ = model.forward(batch, training=False)
    ds = model.start(batch.src, batch.src_lengths)
    for t in range(logits.shape[1]):
        logp, _, ds = model.step(ds, batch.tgt[:, t])
        expect = logits[:, t] - np.log(np.exp(logits[:, t]).sum(-1, keepdims=True))
        np.testing.assert_allclose(logp, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["sutskever", "dot_feed", "additive_tied"])
def test_beam_size_one_is_greedy(kind, rng):
    model = small(kind, dtype="float32", seed=3)
    batch = random_batch(rng)
    greedy = greedy_search(model, batch.src, batch.src_lengths, max_len=7)
    beam = beam_search(model, batch.src, batch.src_lengths, beam_size=1, max_len=7)
    for g, b in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.score == pytest.approx(b.score, rel=1e-5)
        if g.attention is not None:
            np.testing.assert_allclose(g.attention, b.attention)


def test_decoding_context_gives_the_steps_results(monkeypatch):
    """Inside ``model.decoding()`` (as the searches decode) the steps' products use the weights
    packed once; the log-probabilities equal those of steps outside it, to float32 rounding."""
    from lstmkit.kernels import backend
    packed = []
    if backend.get_backend() == "numba":
        from lstmkit.kernels import numba_loops, numba_matmul
        real = numba_matmul.pack
        monkeypatch.setattr(numba_matmul, "pack", lambda w: packed.append(w.shape) or real(w))
    model = Seq2Seq(50, 60, embedding_size=32, hidden_size=64, attention="general", seed=1)
    rng = np.random.default_rng(4)
    src, lengths = rng.integers(4, 50, size=(20, 7)), rng.integers(1, 8, size=20)
    tokens = rng.integers(4, 60, size=(4, 20))

    def run():
        ds, out = model.start(src, lengths), []
        for t in tokens:
            logp, w, ds = model.step(ds, t)
            out += [logp, w]
        return out

    outside = run()
    assert packed == []
    with model.decoding():
        inside = run()
    for a, b in zip(outside, inside):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    if backend.get_backend() == "numba" and numba_loops.PACKED:
        assert (96, 4 * 64) in packed and (64, 60) in packed     # the decoder's kernel, the output's


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("attention,hidden,vocab,dtype", [("general", 64, 70, "float32"),
                                                          ("dot", 48, 33, "float32"),
                                                          ("general", 32, 100, "float64")])
def test_fused_decoder_step_equals_the_layers(attention, hidden, vocab, dtype, threads, monkeypatch):
    """Inside ``model.decoding()`` a step of the one-layer input-feeding decoder runs as one compiled
    kernel (``kernels.decoder``): the same log-probabilities, attention and state as the layers'
    step, to float rounding, whatever the rows, units and columns each thread gets."""
    from lstmkit import kernels
    from lstmkit.kernels import backend
    if backend.get_backend() != "numba" or not backend.compiled_loops(np.float32).PACKED:
        pytest.skip("the fused step needs the compiled backend on a CPU with AVX-512")
    previous = backend.set_num_threads(threads)
    try:
        model = Seq2Seq(40, vocab, embedding_size=24, hidden_size=hidden, attention=attention, dtype=dtype,
                        seed=3)
        rng = np.random.default_rng(1)
        src, lengths = rng.integers(4, 40, size=(7, 9)), np.array([9, 1, 4, 9, 2, 6, 3])
        tokens = rng.integers(4, vocab, size=(3, 7))
        fused = kernels.decoder.decoder_step
        calls = []
        monkeypatch.setattr(kernels.decoder, "decoder_step", lambda *a: calls.append(1) or fused(*a))

        def run():
            ds, out = model.start(src, lengths), []
            for t in tokens:
                logp, w, ds = model.step(ds, t)
                out += [logp, w, *ds.lstm, ds.feed]
            return out

        with model.decoding():
            inside = run()
            assert len(calls) == len(tokens)           # the fused kernel ran, and gave a result
            monkeypatch.setattr(kernels.decoder, "decoder_step", lambda *a: None)
            layers = run()
    finally:
        backend.set_num_threads(previous)
    tol = 2e-5 if dtype == "float32" else 1e-12
    for a, b in zip(inside, layers):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert np.all(inside[1][1, 1:] == 0)             # the second sentence has one source word


def test_beam_top_k_orders_as_a_stable_sort(kernel_backend):
    """The beam's top-k selection (a partition in NumPy, one pass compiled) picks and orders exactly
    as a stable argsort of the candidates: ties in column order, also at the k-th value and among
    -inf (dead beams); the candidates are the float64 sums of the beams' scores and log-probabilities."""
    from lstmkit.kernels.beam import beam_top_k, top_k
    rng = np.random.default_rng(0)
    for _ in range(500):
        B, K, V = rng.integers(1, 5), rng.integers(1, 5), rng.integers(1, 12)
        k = rng.integers(1, K * V + 1)
        scores = rng.integers(-3, 3, size=(B, K)).astype(float)      # many ties
        scores[rng.random((B, K)) < 0.3] = -np.inf
        logp = (rng.integers(-6, 0, size=(B * K, V)) / 4).astype(np.float32)
        logp[rng.random((B * K, V)) < 0.1] = -np.inf
        candidates = (scores[:, :, None] + logp.reshape(B, K, V).astype(float)).reshape(B, K * V)
        expect = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
        cols, values = beam_top_k(scores, logp, k)
        np.testing.assert_array_equal(cols, expect)
        np.testing.assert_array_equal(values, np.take_along_axis(candidates, expect, 1))
        np.testing.assert_array_equal(top_k(candidates, k), expect)


def test_beam_top_k_bad_input():
    from lstmkit.kernels.beam import beam_top_k
    with pytest.raises(ValueError, match="log_probs"):
        beam_top_k(np.zeros((2, 3)), np.zeros((5, 4), np.float32), 2)
    with pytest.raises(ValueError, match="k: expected"):
        beam_top_k(np.zeros((2, 3)), np.zeros((6, 4), np.float32), 13)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_beam_wider_than_every_sequence_is_exhaustive(alpha, seed, rng):
    """With more beams than token sequences of up to max_len, beam search keeps them all: its result
    is the best of every sequence ending in </s> or at max_len, scored here by teacher forcing."""
    import itertools
    V, max_len = 5, 3
    model = Seq2Seq(11, V, embedding_size=4, hidden_size=6, attention="dot", dtype="float64", seed=seed)
    batch = random_batch(rng)
    found = beam_search(model, batch.src, batch.src_lengths, beam_size=V ** max_len,
                        length_normalization=alpha, max_len=max_len)
    words = [v for v in range(V) if v != EOS]
    ended = [seq + (EOS,) for n in range(max_len) for seq in itertools.product(words, repeat=n)]
    candidates = ended + list(itertools.product(words, repeat=max_len))
    for b, hyp in enumerate(found):
        best = None
        for seq in candidates:
            ds = model.start(batch.src[b:b + 1], batch.src_lengths[b:b + 1])
            score, prev = 0.0, BOS
            for token in seq:
                logp, _, ds = model.step(ds, np.array([prev]))
                score, prev = score + float(logp[0, token]), token
            tokens = [v for v in seq if v != EOS]
            if best is None or score / len(seq) ** alpha > best[0]:
                best = (score / len(seq) ** alpha, score, tokens)
        assert hyp.tokens == best[2]
        assert hyp.score == pytest.approx(best[1], rel=1e-9)
        assert hyp.attention.shape == (len(hyp.tokens), batch.src_lengths[b])


def test_beam_finds_at_least_greedy_score(rng):
    model = small("dot_feed", seed=5)
    batch = random_batch(rng)
    greedy = greedy_search(model, batch.src, batch.src_lengths, max_len=6)
    beam = beam_search(model, batch.src, batch.src_lengths, beam_size=4, length_normalization=0.0,
                       max_len=6)
    for g, b in zip(greedy, beam):
        assert b.score >= g.score - 1e-9


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_batch_translates_like_one_by_one(search, rng):
    model = small("additive_tied", seed=7)
    batch = random_batch(rng)

    def run(src, lengths):
        if search == "greedy":
            return greedy_search(model, src, lengths)
        return beam_search(model, src, lengths, beam_size=3)
    together = run(batch.src, batch.src_lengths)
    for b in range(len(together)):
        n = batch.src_lengths[b]
        alone = run(batch.src[b:b + 1, :n], batch.src_lengths[b:b + 1])[0]
        assert alone.tokens == together[b].tokens
        assert alone.score == pytest.approx(together[b].score, rel=1e-9)
        np.testing.assert_allclose(alone.attention, together[b].attention, atol=1e-12)
        assert together[b].attention.shape == (len(alone.tokens), n)


def test_attention_rows_sum_to_one(rng):
    model = small("dot_feed", dtype="float32")
    batch = random_batch(rng)
    for h in beam_search(model, batch.src, batch.src_lengths, beam_size=2, max_len=5):
        if len(h.tokens):
            np.testing.assert_allclose(h.attention.sum(-1), 1.0, rtol=1e-5)


def test_bad_configuration_messages():
    with pytest.raises(ValueError, match="attention"):
        Seq2Seq(10, 10, attention="luong")
    with pytest.raises(ValueError, match="hidden_size"):
        Seq2Seq(10, 10, hidden_size=7, attention="dot")
    with pytest.raises(ValueError, match="tie_embeddings"):
        Seq2Seq(10, 10, embedding_size=4, hidden_size=6, attention=None, tie_embeddings=True)


def test_tokenizers_detokenize_exactly():
    texts = ["Ein Mann fährt Fahrrad.", "Zwei  Hunde, 21 Katzen!", "am 3. März 1998", "(x) y-z"]
    bpe = BPETokenizer.learn(texts * 3, num_merges=30)
    for tok in (CharTokenizer(), WordTokenizer(), bpe):
        for t in texts:
            assert tok.decode(tok.encode(t)) == " ".join(t.split())
    assert WordTokenizer().encode("Er sah 21 Hunde.") == ["▁Er", "▁sah", "▁2", "1", "▁Hunde", "."]


def test_bpe_merges_most_frequent_pair_first():
    bpe = BPETokenizer.learn(["ab ab ab cd"], num_merges=1)
    assert bpe.merges == [("▁a", "b")]
    assert bpe.encode("ab cd abcd") == ["▁ab", "▁c", "d", "▁ab", "c", "d"]


def test_vocab_specials_and_unknown():
    v = Vocab.build([["a", "b", "a"]])
    assert v.tokens[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and v.tokens[4] == "a"
    assert v.encode(["a", "zzz"]) == [4, 1]


@pytest.mark.parametrize("n, de, en", [
    (1, "eins", "one"), (21, "einundzwanzig", "twenty-one"), (101, "einhunderteins", "one hundred one"),
    (3421, "dreitausendvierhunderteinundzwanzig", "three thousand four hundred twenty-one"),
    (1017, "eintausendsiebzehn", "one thousand seventeen"), (90, "neunzig", "ninety")])
def test_number_words(n, de, en):
    assert german_number(n) == de and english_number(n) == en


def test_generated_corpus_is_deterministic_and_held_out():
    train, test = demo_corpus(300, 50, seed=4)
    assert (train, test) == demo_corpus(300, 50, seed=4)
    assert not {d for d, _ in train} & {d for d, _ in test}


def test_bucket_batches_cover_every_example_once():
    examples = [([4] * n, [5] * (n % 3 + 1)) for n in range(1, 41)]
    data = BucketBatches(examples, 8, seed=1)
    assert len(data) == 5
    seen = sorted(int(n) for b in data.epoch(3) for n in b.src_lengths)
    assert seen == list(range(1, 41))
    assert isinstance(next(iter(data.epoch(0))), Seq2SeqBatch)


def test_state_passing_hands_h_and_c_of_every_layer_at_the_last_valid_step(rng):
    model = small("sutskever")                       # 2 layers, no attention, no bridge
    batch = random_batch(rng)
    ds = model.start(batch.src, batch.src_lengths)
    x = model.src_embedding(batch.src)
    for b, n in enumerate(batch.src_lengths):        # each sentence alone, unpadded
        alone = model.encoder(x[b:b + 1, :n])
        np.testing.assert_allclose(ds.lstm.h[:, b], alone.h[:, 0], rtol=1e-12)
        np.testing.assert_allclose(ds.lstm.c[:, b], alone.c[:, 0], rtol=1e-12)
    assert ds.lstm.h.shape == (2, 3, 6) and not np.allclose(ds.lstm.h, ds.lstm.c)


def test_beam_reorder_between_steps_equals_select(rng):
    """Between steps beam search reorders only the hypotheses' own state (``DecoderState.reorder``,
    the source side kept); a state that can only ``select`` every array gives the same translations."""
    model = small("dot_feed", seed=2)
    batch = random_batch(rng)

    class SelectOnly:
        def __init__(self, ds):
            self.ds = ds

        def select(self, rows):
            return SelectOnly(self.ds.select(rows))

    class Model:
        attention = model.attention
        decoding = model.decoding           # the same products as the model's own search

        @staticmethod
        def start(src, lengths):
            return SelectOnly(model.start(src, lengths))

        @staticmethod
        def step(state, tokens):
            logp, w, ds = model.step(state.ds, tokens)
            return logp, w, SelectOnly(ds)

    fast = beam_search(model, batch.src, batch.src_lengths, beam_size=3, max_len=8)
    plain = beam_search(Model, batch.src, batch.src_lengths, beam_size=3, max_len=8)
    for a, b in zip(fast, plain):
        assert a.tokens == b.tokens and a.score == b.score
        np.testing.assert_array_equal(a.attention, b.attention)
