"""``lstmkit translate train | eval | translate``: the translator from the command line."""
import argparse
import sys
import time

EPILOG = """\
examples:
  # train on Multi30k (downloaded once into ~/.cache/lstmkit, or read from --data-dir)
  lstmkit translate train --data multi30k --data-dir ../shared/data/multi30k --out de-en.npz

  # train on your own aligned files (one sentence a line, plain or .gz) or a TSV
  lstmkit translate train --src train.de --tgt train.en --out model.npz
  lstmkit translate train --tsv pairs.tsv --out model.npz

  # BLEU and chrF on a test set
  lstmkit translate eval --model de-en.npz --data multi30k --data-dir ../shared/data/multi30k

  # translate sentences (or lines of stdin with "-"); --plot draws the attention as a PNG
  lstmkit translate translate --model de-en.npz "Ein Mann fährt Fahrrad." --plot att.png
"""


def add_parser(sub):
    """Register ``lstmkit translate`` on an argparse sub-parser collection."""
    p = sub.add_parser("translate", help="train, evaluate and use a German->English (or any) "
                       "LSTM translator", description="Sequence-to-sequence translation with LSTMs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="action", required=True, metavar="{train,eval,translate}")

    t = tsub.add_parser("train", help="train a translator and save it (.npz)", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _data_args(t, split_default="train")
    t.add_argument("--out", required=True, metavar="NPZ", help="where to save the trained model "
                   "(the best epoch on validation data when there is any)")
    m = t.add_argument_group("model")
    m.add_argument("--attention", default="general", choices=["none", "dot", "general", "additive"],
                   help="'none' is the state-passing model of Sutskever et al. (default: general)")
    m.add_argument("--embedding-size", type=int, default=256)
    m.add_argument("--hidden-size", type=int, default=256)
    m.add_argument("--num-layers", type=int, default=1)
    m.add_argument("--no-input-feeding", action="store_true",
                   help="do not feed the attentional state back (faster training)")
    m.add_argument("--dropout", type=float, default=0.3)
    m.add_argument("--tie-embeddings", action="store_true")
    m.add_argument("--tokenizer", default="bpe", choices=["bpe", "char", "word"])
    m.add_argument("--merges", type=int, default=8000, help="BPE merges learned (default 8000)")
    o = t.add_argument_group("training")
    o.add_argument("--epochs", type=int, default=10)
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    o.add_argument("--clipnorm", type=float, default=5.0, help="global gradient-norm clipping")
    o.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    o.add_argument("--label-smoothing", type=float, default=0.1)
    o.add_argument("--max-length", type=int, default=60, help="drop training pairs longer than "
                   "this many tokens")
    o.add_argument("--limit", type=int, default=None, help="use only the first N training pairs")
    o.add_argument("--max-seconds", type=float, default=None, help="stop after the epoch that "
                   "passes this time")
    o.add_argument("--checkpoint", default=None, help="resumable checkpoint, written every epoch "
                   "(and with --resume, continued from)")
    o.add_argument("--resume", action="store_true")
    o.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_train)

    e = tsub.add_parser("eval", help="BLEU, chrF and exact match of a saved model on a test set")
    _data_args(e, split_default="test_2016_flickr")
    e.add_argument("--model", required=True, metavar="NPZ")
    _search_args(e)
    e.add_argument("--show", type=int, default=5, help="print this many translations")
    e.set_defaults(func=_eval)

    r = tsub.add_parser("translate", help="translate sentences given as arguments or on stdin")
    r.add_argument("--model", required=True, metavar="NPZ")
    r.add_argument("sentences", nargs="+", help='sentences, or "-" to read one per line from stdin')
    _search_args(r)
    r.add_argument("--plot", metavar="PNG", default=None, help="attention heatmap of the first "
                   "sentence (needs matplotlib: pip install lstmkit[plot])")
    r.add_argument("--scores", action="store_true", help="print each translation's log-probability")
    r.set_defaults(func=_translate)
    return p


def _data_args(p, split_default):
    d = p.add_argument_group("data (one of --data, --src/--tgt, --tsv)")
    d.add_argument("--data", choices=["multi30k", "generated"], default=None,
                   help="multi30k: German-English image captions (downloaded and checksummed, or "
                   "from --data-dir); generated: the numbers/dates corpus of `lstmkit demo`")
    d.add_argument("--data-dir", default=None, help="folder holding {split}.de.gz and {split}.en.gz")
    d.add_argument("--split", default=split_default,
                   help=f"Multi30k split: train, val, test_2016_flickr (default {split_default})")
    d.add_argument("--src", help="source-language file, one sentence a line (.gz allowed)")
    d.add_argument("--tgt", help="target-language file, aligned with --src")
    d.add_argument("--tsv", help="one pair a line: source<TAB>target")


def _search_args(p):
    p.add_argument("--beam-size", type=int, default=5, help="1 = greedy (default 5)")
    p.add_argument("--length-normalization", type=float, default=1.0,
                   help="beam score = log-probability / length**alpha (default 1.0)")
    p.add_argument("--max-len", type=int, default=None, help="default: 2 * source length + 10")


def _pairs(args, split):
    from .corpus import multi30k, read_parallel
    from .generated import demo_corpus
    given = [x for x in (args.data, args.src or args.tgt, args.tsv) if x]
    if len(given) != 1:
        raise SystemExit("lstmkit translate: give exactly one of --data, --src/--tgt, --tsv")
    if args.data == "multi30k":
        return multi30k(split, data_dir=args.data_dir)
    if args.data == "generated":
        train, test = demo_corpus()
        return test if split.startswith("test") else train
    if args.tsv:
        return read_parallel(args.tsv)
    if not (args.src and args.tgt):
        raise SystemExit("lstmkit translate: --src and --tgt go together")
    return read_parallel(args.src, args.tgt)


def _train(args):
    from .blas import single_threaded_blas
    from .translator import StopAfter, Translator
    from ..train import Callback

    pairs = _pairs(args, args.split)
    if args.limit:
        pairs = pairs[:args.limit]
    valid = None
    if args.data == "multi30k":
        valid = _pairs(args, "val")
    t0 = time.monotonic()
    tr = Translator.build(pairs, tokenizer=args.tokenizer, num_merges=args.merges,
                          attention=None if args.attention == "none" else args.attention,
                          embedding_size=args.embedding_size, hidden_size=args.hidden_size,
                          num_layers=args.num_layers, input_feeding=not args.no_input_feeding,
                          dropout=args.dropout, tie_embeddings=args.tie_embeddings,
                          label_smoothing=args.label_smoothing, seed=args.seed)
    print(f"{len(pairs)} training pairs; vocabularies {len(tr.src_vocab)} / {len(tr.tgt_vocab)} "
          f"tokens; {sum(p.size for p in tr.model.params.values()):,} weights "
          f"({time.monotonic() - t0:.1f} s to learn the tokenizers)")
    tr.info = {"trained_on": args.data or args.tsv or args.src, "epochs": args.epochs}

    class SaveBest(Callback):
        best = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_loss", -epoch)
            if self.best is None or value < self.best:
                self.best = value
                tr.save(args.out)

    callbacks = [SaveBest()]
    if args.max_seconds:
        callbacks.append(StopAfter(seconds=args.max_seconds))
    with single_threaded_blas():
        tr.fit(pairs, valid_pairs=valid, epochs=args.epochs, batch_size=args.batch_size,
               learning_rate=args.lr, global_clipnorm=args.clipnorm, warmup_steps=args.warmup,
               max_length=args.max_length, callbacks=callbacks, checkpoint=args.checkpoint,
               resume=args.checkpoint if args.resume else None, seed=args.seed)
    print(f"saved {args.out}")


def _eval(args):
    from .blas import single_threaded_blas
    from .translator import Translator
    tr = Translator.load(args.model)
    pairs = _pairs(args, args.split)
    t0 = time.monotonic()
    with single_threaded_blas():
        scores, out = tr.evaluate(pairs, beam_size=args.beam_size,
                                  length_normalization=args.length_normalization)
    for (src, ref), t in list(zip(pairs, out))[:args.show]:
        print(f"{src}\n  -> {t.text}\n  reference: {ref}")
    print(f"{len(pairs)} sentences in {time.monotonic() - t0:.1f} s, beam {args.beam_size}")
    for k, v in scores.items():
        print(f"{k}: {v:.2f}")
    if "sacrebleu" not in scores:
        print("(sacreBLEU and chrF need: pip install lstmkit[bleu])")


def _translate(args):
    from .translator import Translator
    tr = Translator.load(args.model)
    sentences = args.sentences
    if sentences == ["-"]:
        sentences = [line.rstrip("\n") for line in sys.stdin]
    out = tr.translate(sentences, beam_size=args.beam_size,
                       length_normalization=args.length_normalization, max_len=args.max_len)
    for t in out:
        print(f"{t.text}\t{t.score:.3f}" if args.scores else t.text)
    if args.plot:
        if out and out[0].attention is not None and len(out[0].tokens):
            tr.plot_attention(out[0], args.plot)
            print(f"attention heatmap: {args.plot}", file=sys.stderr)
        else:
            print("--plot: nothing to draw (no attention in this model, or an empty translation)",
                  file=sys.stderr)
