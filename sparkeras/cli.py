"""The `sparkeras` command: train, evaluate, predict and demo.

Driver-side module. It parses arguments, opens the Spark session and runs a
job from `sparkeras.jobs`. Exit codes: 0 success, 2 bad arguments or input
(a one-line message, no traceback), 1 any other failure.
"""

import argparse
import json
import os
import re
import sys
import traceback

from sparkeras.options import MODES

_EPILOG = """examples:
  sparkeras demo --epochs 5
  sparkeras train --data train.parquet --model compiled.keras --output trained.keras \\
      --features-col features --label-col label --epochs 10 --num-workers 2 \\
      --validation-data val.parquet --checkpoint-dir checkpoints/run-1
  sparkeras train ... --checkpoint-dir checkpoints/run-1 --resume --epochs 20
  sparkeras evaluate --data test.csv --features-cols a,b,c --model trained.keras
  sparkeras predict --data new.parquet --model trained.keras --output scored.parquet
      (a classifier writes the class to "prediction" and its outputs to "probability";
       --raw writes the raw outputs to "prediction")
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


def _frequency(text):
    if text in ("epoch", "batch"):
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"expected epoch, batch or a positive number of steps. Received: --frequency {text!r}"
    )


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
        choices=MODES,
        default="synchronous",
        help="how workers combine updates (default: synchronous)",
    )
    train.add_argument("--num-workers", type=int, help="training tasks (default: all task slots)")
    train.add_argument(
        "--frequency",
        type=_frequency,
        default="epoch",
        metavar="epoch|batch|N",
        help="when workers exchange weights: every epoch, batch or N steps (default: epoch)",
    )
    train.add_argument(
        "--validation-data",
        metavar="PATH",
        help="Parquet or CSV data with the same columns; its metrics print as val_*",
    )
    train.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="write a checkpoint there after every epoch (a local path or a URI)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the fit checkpointed in --checkpoint-dir up to --epochs in total",
    )
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
    predict.add_argument(
        "--prediction-col",
        default="prediction",
        help="column of the predicted class (a double), or of the output of a model that is "
        "not a classifier (default: prediction)",
    )
    predict.add_argument(
        "--probability-col",
        default="probability",
        help='column of a classifier\'s outputs (class probabilities); "" for none '
        "(default: probability)",
    )
    predict.add_argument(
        "--raw",
        action="store_true",
        help="write the model's raw outputs to --prediction-col, also for classifiers",
    )
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

    named = (
        "label_col", "epochs", "batch_size", "mode", "num_workers", "frequency",
        "validation_data", "checkpoint_dir", "resume", "prediction_col", "probability_col", "raw",
    )
    return JobOptions(
        data=args.data,
        model=args.model,
        output=args.output,
        data_format=args.format,
        features_col=args.features_cols or args.features_col,
        **{name: getattr(args, name) for name in named if hasattr(args, name)},
    )


def _run(args, sessions):
    """Runs the command; appends the session it builds to `sessions`."""
    from pyspark.sql import SparkSession

    ours = SparkSession.getActiveSession() is None  # a session the caller had open stays open
    if args.command == "demo":
        from sparkeras.demo import run_demo

        run_demo(args.master, args.epochs, args.num_workers, args.output)
        sessions.extend([SparkSession.getActiveSession()] if ours else [])
        return
    from sparkeras import jobs

    options = _job_options(args)
    jobs.check(args.command, options)
    spark_model = jobs.prepare(args.command, options)  # columns checked before Spark starts
    spark = _session(args)
    if ours:
        sessions.append(spark)
    result = getattr(jobs, args.command)(spark, options, spark_model)
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


_FLAGS = {"label_col": "--label-col", "checkpoint_dir": "--checkpoint-dir"}


def _in_flags(message, args):
    """`message` with the Python argument names it quotes replaced by the flags typed."""
    features = "--features-cols" if getattr(args, "features_cols", None) else "--features-col"
    for name, flag in {"features_col": features, **_FLAGS}.items():
        message = re.sub(rf"\b{name}\b", flag, message)
    return message


def _stop(spark):
    """Stops the session the command built, quietly, once its outcome is printed.

    Left to the interpreter's exit, a Spark task still running then (the
    background start-up job, after an early error) fails to report to the
    driver's Python and prints Java traces; stopped with the session, it logs
    an ERROR. Neither says anything about the command: the job is cancelled,
    its thread waited for, and the logs are off.
    """
    from sparkeras.session import wait_for_python_workers
    from sparkeras.session_access import spark_context

    context = spark_context(spark)
    if context is None:  # Spark Connect: no SparkContext in the client
        spark.interruptAll()
    else:
        context.setLogLevel("OFF")
        context.cancelAllJobs()
    wait_for_python_workers(spark, timeout_s=60)  # its thread ends once its job is cancelled
    spark.stop()


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
    sessions = []
    code = 0
    try:
        _run(args, sessions)
    except _input_errors() as error:
        print(f"sparkeras {args.command}: error: {_in_flags(str(error), args)}", file=sys.stderr)
        code = 2
    except Exception as error:
        traceback.print_exc()
        print(f"sparkeras {args.command} failed: {error}", file=sys.stderr)
        code = 1
    for spark in sessions:
        _stop(spark)
    return code


if __name__ == "__main__":
    sys.exit(main())
