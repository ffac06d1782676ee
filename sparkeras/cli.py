"""The `sparkeras` command: train, evaluate, predict and demo.

Driver-side module. It parses arguments, opens the Spark session and runs a
job from `sparkeras.jobs`. Exit codes: 0 success, 2 bad arguments or input
(a one-line message, no traceback), 1 any other failure.
"""

import argparse
import json
import os
import sys
import traceback

_EPILOG = """examples:
  sparkeras demo --epochs 5
  sparkeras train --data train.parquet --model compiled.keras --output trained.keras \\
      --features-col features --label-col label --epochs 10 --num-workers 2
  sparkeras evaluate --data test.csv --features-cols a,b,c --model trained.keras
  sparkeras predict --data new.parquet --model trained.keras --output scored.parquet
  sparkeras train --master spark://host:7077 --conf spark.executor.memory=4g ...
  sparkeras train --remote sc://connect-host:15002 ...   (Spark Connect)

On a cluster, run the same commands through spark-submit:
  spark-submit --master spark://host:7077 path/to/sparkeras/submit.py train ...

exit codes: 0 success, 2 bad arguments or input, 1 other failure
"""


def _conf_pair(text):
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value. Received: --conf {text!r}")
    return key, value


def _column_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a,b,c. Received: --features-cols {text!r}")
    return names


def _session_arguments():
    parser = argparse.ArgumentParser(add_help=False)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--master",
        help="Spark master URL, e.g. local[4] or spark://host:7077 (default: the one "
        "spark-submit gives, else local[*])",
    )
    where.add_argument(
        "--remote",
        help="Spark Connect server, e.g. sc://host:15002, or local[2] to start one here "
        "(default: $SPARK_REMOTE if set)",
    )
    parser.add_argument(
        "--conf",
        action="append",
        type=_conf_pair,
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the session; repeat for several",
    )
    _add_verbose(parser)
    return parser


def _add_verbose(parser):
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Spark's and TensorFlow's own start-up and log lines (also SPARKERAS_VERBOSE=1)",
    )


def _data_arguments(with_label):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data", required=True, help="input data: Parquet or CSV with a header")
    parser.add_argument(
        "--format", choices=("parquet", "csv"), help="format of --data (default: from extension)"
    )
    features = parser.add_mutually_exclusive_group()
    features.add_argument(
        "--features-col", default="features", help="features column (default: features)"
    )
    features.add_argument(
        "--features-cols", type=_column_list, metavar="A,B,C", help="numeric feature columns"
    )
    if with_label:
        parser.add_argument("--label-col", default="label", help="label column (default: label)")
    return parser


def _parser():
    parser = argparse.ArgumentParser(
        prog="sparkeras",
        description="Train and serve Keras models on Spark DataFrames.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    session = _session_arguments()
    train = commands.add_parser(
        "train",
        parents=[session, _data_arguments(with_label=True)],
        help="train a compiled .keras model on a dataset and save it",
    )
    train.add_argument("--model", required=True, help="compiled .keras model to train")
    train.add_argument("--output", required=True, help="where to save the trained .keras model")
    train.add_argument("--epochs", type=int, default=1, help="training epochs (default: 1)")
    train.add_argument(
        "--batch-size", type=int, default=32, help="samples per step per worker (default: 32)"
    )
    train.add_argument(
        "--mode",
        choices=("synchronous", "asynchronous", "hogwild"),
        default="synchronous",
        help="how workers combine updates (default: synchronous)",
    )
    train.add_argument("--num-workers", type=int, help="training tasks (default: all task slots)")
    evaluate = commands.add_parser(
        "evaluate",
        parents=[session, _data_arguments(with_label=True)],
        help="compute a trained model's loss and metrics on a dataset",
    )
    evaluate.add_argument("--model", required=True, help="trained .keras model")
    evaluate.add_argument("--output", help="JSON file for the metrics (default: print them)")
    predict = commands.add_parser(
        "predict",
        parents=[session, _data_arguments(with_label=False)],
        help="append a prediction column to a dataset and write it as Parquet",
    )
    predict.add_argument("--model", required=True, help="trained .keras model")
    predict.add_argument("--output", required=True, help="Parquet folder to write")
    demo = commands.add_parser(
        "demo", help="train a digits classifier on an embedded local Spark and save it"
    )
    demo.add_argument("--master", default="local[*]", help="Spark master (default: local[*])")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    demo.add_argument("--num-workers", type=int, default=2, help="training tasks (default: 2)")
    demo.add_argument(
        "--output", default="sparkeras-demo.keras", help="where to save the trained model"
    )
    _add_verbose(demo)
    return parser


def _session(args):
    """The session for a job: spark-submit's when it launched us, else `get_spark`."""
    from sparkeras.session import get_spark

    conf = dict(args.conf)
    if args.remote is not None:
        return get_spark(app_name=f"sparkeras {args.command}", conf=conf, remote=args.remote)
    if args.master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # Launched by spark-submit: its --master and --conf already hold.
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(f"sparkeras {args.command}")
        for key, value in conf.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()
    return get_spark(args.master or "local[*]", app_name=f"sparkeras {args.command}", conf=conf)


def _job_options(args):
    from sparkeras.jobs import JobOptions

    training = ("label_col", "epochs", "batch_size", "mode", "num_workers")
    return JobOptions(
        data=args.data,
        model=args.model,
        output=args.output,
        data_format=args.format,
        features_col=args.features_cols or args.features_col,
        **{name: getattr(args, name) for name in training if hasattr(args, name)},
    )


def _run(args):
    if args.command == "demo":
        from sparkeras.demo import run_demo

        run_demo(args.master, args.epochs, args.num_workers, args.output)
        return
    from sparkeras import jobs

    options = _job_options(args)
    jobs.check(args.command, options)
    result = getattr(jobs, args.command)(_session(args), options)
    if args.command == "train":
        print(f"Trained for {options.epochs} epoch(s); last epoch: {json.dumps(result)}")
        print(f"Saved the trained model to {options.output}")
    elif args.command == "predict":
        print(f"Wrote the predictions to {result}")
    elif options.output is None:
        print(json.dumps(result))
    else:
        print(f"Wrote the metrics to {options.output}")


def _input_errors():
    from pyspark.errors import AnalysisException

    return (ValueError, TypeError, FileNotFoundError, AnalysisException)


def main(argv=None):
    """Runs the `sparkeras` command line; returns the exit code.

    Example:
    >>> main(["train", "--data", "train.parquet", "--model", "mlp.keras",
    ...       "--output", "trained.keras", "--epochs", "3"])
    0
    """
    from sparkeras import quiet

    args = _parser().parse_args(argv)
    if args.verbose:
        os.environ[quiet.VERBOSE_VARIABLE] = "1"
    # Keras is imported below: keep TensorFlow's start-up notices off the console.
    quiet.quiet_tensorflow()
    try:
        _run(args)
    except _input_errors() as error:
        print(f"sparkeras {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        traceback.print_exc()
        print(f"sparkeras {args.command} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
