"""The `sparkeras` command.

Driver-side module. Exit codes: 0 success, 2 bad arguments or input, 1 failure.
"""

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(
        prog="sparkeras", description="Train and serve Keras models on Spark DataFrames."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train a digits classifier on an embedded local Spark and save it"
    )
    demo.add_argument("--master", default="local[*]", help="Spark master (default: local[*])")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    demo.add_argument("--num-workers", type=int, default=2, help="training tasks (default: 2)")
    demo.add_argument(
        "--output", default="sparkeras-demo.keras", help="where to save the trained model"
    )
    return parser


def main(argv=None):
    """Runs the `sparkeras` command line; returns the exit code.

    Example:
    >>> main(["demo", "--epochs", "3"])
    0
    """
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from sparkeras.demo import run_demo

            run_demo(args.master, args.epochs, args.num_workers, args.output)
    except (ValueError, TypeError) as error:
        print(f"sparkeras: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
