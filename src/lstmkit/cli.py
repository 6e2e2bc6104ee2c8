"""The ``lstmkit`` command."""
import argparse
import sys


def _demo(args):
    from .demo import run
    run()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lstmkit", description="LSTM networks on NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small German->English translator with attention "
                          "(under a minute; at most 3) and report its exact-match accuracy")
    demo.set_defaults(func=_demo)
    from .explain import add_parser as add_explain_parser
    add_explain_parser(sub)
    from .seq2seq.cli import add_parser as add_translate_parser
    add_translate_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
