"""`ember ...` commands. Each handler parses its arguments and calls one library function.

Errors the user can fix print one line on stderr and exit with code 2; `--debug` shows the traceback.
"""
import argparse
import sys

from ember.errors import EmberError

EXIT_USAGE = 2


def _quickstart(args):
    from ember.tasks import quickstart
    quickstart.run(args.out, dataset=args.dataset, epochs=args.epochs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Keras-style deep learning on PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"ember {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    quick = commands.add_parser("quickstart", help="train, evaluate and save the classic MNIST CNN (offline)")
    quick.add_argument("--out", default="ember_quickstart", help="folder for model.ember and metrics.json")
    quick.add_argument("--dataset", default="auto", choices=["auto", "mnist", "digits"],
                       help="auto: MNIST if its files are on disk, else scikit-learn's digits")
    quick.add_argument("--epochs", type=int, default=None, help="default: 5 on MNIST, 15 on digits")
    quick.set_defaults(handler=_quickstart)
    return parser


def _version() -> str:
    from ember import __version__
    return __version__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (EmberError, ValueError, FileNotFoundError, PermissionError) as e:
        if args.debug:
            raise
        print(f"ember {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ember {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
