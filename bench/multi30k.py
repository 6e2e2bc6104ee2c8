"""Multi30k German->English: train a translator and report BLEU on test_2016_flickr.

    python3 bench/multi30k.py                              # attention model, 60-minute budget
    python3 bench/multi30k.py --attention none             # state passing only (Sutskever et al.)
    python3 bench/multi30k.py --max-seconds 120 --limit 3000   # a smoke run

Reads ../shared/data/multi30k (or --data-dir); prints the learning curve (validation loss per epoch),
then lowercased tokenized BLEU (the public tutorials' protocol), sacreBLEU (detokenized, cased) and
chrF on test_2016_flickr with beam search, with the command, time and machine, ready to paste into
bench/RESULTS.md.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lstmkit.seq2seq.blas import single_threaded_blas  # noqa: E402
from lstmkit.seq2seq.corpus import multi30k  # noqa: E402
from lstmkit.seq2seq.translator import StopAfter, Translator  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"))
    p.add_argument("--attention", default="general", choices=["none", "dot", "general", "additive"])
    p.add_argument("--embedding-size", type=int, default=256)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--no-input-feeding", action="store_true")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--tie-embeddings", action="store_true")
    p.add_argument("--merges", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--max-seconds", type=float, default=3600)
    p.add_argument("--limit", type=int, default=None, help="first N training pairs only")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="initial weights, batch order and dropout")
    p.add_argument("--out", default="multi30k-model.npz")
    args = p.parse_args(argv)

    t0 = time.monotonic()
    train = multi30k("train", data_dir=args.data_dir)[:args.limit]
    valid = multi30k("val", data_dir=args.data_dir)
    test = multi30k("test_2016_flickr", data_dir=args.data_dir)
    tr = Translator.build(train, tokenizer="bpe", num_merges=args.merges,
                          attention=None if args.attention == "none" else args.attention,
                          embedding_size=args.embedding_size, hidden_size=args.hidden_size,
                          num_layers=args.num_layers, input_feeding=not args.no_input_feeding,
                          dropout=args.dropout, tie_embeddings=args.tie_embeddings,
                          label_smoothing=args.label_smoothing, seed=args.seed)
    print(f"{len(train)} pairs, vocab {len(tr.src_vocab)}/{len(tr.tgt_vocab)}, "
          f"{sum(v.size for v in tr.model.params.values()):,} weights", flush=True)
    best = {"val_loss": float("inf")}

    from lstmkit.train import Callback

    class KeepBest(Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"curve epoch {epoch + 1} {time.monotonic() - t0:.0f}s loss {logs.get('loss'):.3f} "
                  f"val_loss {logs.get('val_loss'):.3f}", flush=True)
            if logs.get("val_loss", float("inf")) < best["val_loss"]:
                best["val_loss"] = logs["val_loss"]
                tr.save(args.out)

    with single_threaded_blas():
        tr.fit(train, valid_pairs=valid, epochs=args.epochs, batch_size=args.batch_size,
               learning_rate=args.lr, max_length=60, verbose=2, seed=args.seed,
               callbacks=[KeepBest(), StopAfter(seconds=args.max_seconds)])
        trained = time.monotonic() - t0
        best_tr = Translator.load(args.out)
        scores, out = best_tr.evaluate(test, beam_size=args.beam_size)
    for (de, en), t in list(zip(test, out))[:3]:
        print(f"{de}\n  -> {t.text}\n  reference: {en}")
    print(f"\ncommand: python3 bench/multi30k.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"training {trained:.0f} s, total {time.monotonic() - t0:.0f} s")
    for k, v in scores.items():
        print(f"test_2016_flickr {k}: {v:.2f}")


if __name__ == "__main__":
    main()
