"""Seq2seq cases: a teacher-forced training step, greedy and beam decoding of lstmkit's translator model.

No framework builds the same model here, so these cases compare lstmkit's two kernel backends (the
compiled loops against the plain NumPy loops) on the same model, weights and batch.
"""
import numpy as np

SIZES = dict(vocab=2000, embedding=128, hidden=256, batch=32, src_len=20, tgt_len=20)


def build_cases(seed=0):
    """Return {name: callable} or raise ImportError when lstmkit.seq2seq is missing."""
    from lstmkit.seq2seq import Seq2Seq, Seq2SeqBatch, beam_search, greedy_search
    s = SIZES
    rng = np.random.default_rng(seed)
    model = Seq2Seq(s["vocab"], s["vocab"], embedding_size=s["embedding"], hidden_size=s["hidden"],
                    attention="general", seed=seed)
    B, S, T = s["batch"], s["src_len"], s["tgt_len"]
    src_lengths = rng.integers(S // 2, S + 1, size=B)
    src = rng.integers(4, s["vocab"], size=(B, S))
    src[np.arange(S)[None] >= src_lengths[:, None]] = 0
    tgt = np.concatenate([np.full((B, 1), 2), rng.integers(4, s["vocab"], size=(B, T)),
                          np.full((B, 1), 3)], axis=1)
    batch = Seq2SeqBatch(src, src_lengths, tgt)

    def train_step():
        model.zero_grad()
        model.train_step(batch)

    label = f"V={s['vocab']} E={s['embedding']} H={s['hidden']} B={B} S={S} T={T}, attention"
    return {
        f"training step ({label})": train_step,
        f"greedy decoding (B={B}, max_len={T})": lambda: greedy_search(model, src, src_lengths, max_len=T),
        f"beam decoding (beam 5, B=8, max_len={T})":
            lambda: beam_search(model, src[:8], src_lengths[:8], beam_size=5, max_len=T),
    }
