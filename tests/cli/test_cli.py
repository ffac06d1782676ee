"""The `sparkeras` command: help, exit codes and the train / evaluate / predict jobs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO_DIR, dense_classifier, digits_arrays

_REPO = REPO_DIR


def run_command(*arguments, timeout=120):
    """Runs `python -m sparkeras.cli ARGUMENTS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "sparkeras.cli", *arguments],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def digits_files(digits, tmp_path_factory):
    """The digits train/test sets as Parquet, and a compiled MLP as a .keras file."""
    folder = tmp_path_factory.mktemp("cli")
    train_df, test_df = digits
    paths = {
        "train": str(folder / "train.parquet"),
        "test": str(folder / "test.parquet"),
        "compiled": str(folder / "mlp.keras"),
        "trained": str(folder / "trained.keras"),
    }
    train_df.write.parquet(paths["train"])
    test_df.write.parquet(paths["test"])
    dense_classifier().save(paths["compiled"])
    return paths, test_df


@pytest.fixture(scope="module")
def trained(digits_files):
    from sparkeras.cli import main

    paths, _ = digits_files
    code = main(
        [
            "train",
            "--data",
            paths["train"],
            "--model",
            paths["compiled"],
            "--output",
            paths["trained"],
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--num-workers",
            "2",
        ]
    )
    return code, paths


def test_help_describes_commands_with_examples():
    completed = run_command("--help")
    assert completed.returncode == 0
    for text in ("train", "evaluate", "predict", "demo", "examples:", "spark-submit"):
        assert text in completed.stdout, text
    train_help = run_command("train", "--help").stdout
    for option in ("--features-cols", "--label-col", "--num-workers", "--mode", "--conf"):
        assert option in train_help, option


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["train", "--data", "d.parquet", "--model", "m.keras"], "--output"),
        (["train", "--data", "d", "--model", "m", "--output", "o", "--mode", "fast"], "fast"),
        (["predict", "--data", "d", "--model", "m", "--output", "o", "--conf", "x"], "key=value"),
        (
            [
                "evaluate",
                "--data",
                "d",
                "--model",
                "m",
                "--features-col",
                "a",
                "--features-cols",
                "b",
            ],
            "not allowed",
        ),
        (
            ["evaluate", "--data", "d.parquet", "--model", "missing.keras"],
            "--model='missing.keras'",
        ),
        (
            ["train", "--data", "d", "--model", "m", "--output", "o", "--frequency", "0"],
            "expected epoch, batch or a positive number of steps",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_no_traceback(arguments, message):
    completed = run_command(*arguments)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_missing_data_and_bad_output_exit_2_before_spark_starts(digits_files):
    paths, _ = digits_files
    missing = run_command(
        "train", "--data", "nowhere.parquet", "--model", paths["compiled"], "--output", "out.keras"
    )
    assert missing.returncode == 2 and "--data='nowhere.parquet'" in missing.stderr
    wrong_output = run_command(
        "train", "--data", paths["train"], "--model", paths["compiled"], "--output", "out.h5"
    )
    assert wrong_output.returncode == 2 and "--output='out.h5'" in wrong_output.stderr
    unknown_format = run_command(
        "predict", "--data", paths["compiled"], "--model", paths["compiled"], "--output", "scored"
    )
    assert unknown_format.returncode == 2 and "--format" in unknown_format.stderr
    no_checkpoint = run_command(
        "train", "--data", paths["train"], "--model", paths["compiled"], "--output", "o.keras",
        "--resume",
    )
    assert no_checkpoint.returncode == 2 and "--checkpoint-dir" in no_checkpoint.stderr
    missing_validation = run_command(
        "train", "--data", paths["train"], "--model", paths["compiled"], "--output", "o.keras",
        "--validation-data", "nowhere.csv",
    )
    assert missing_validation.returncode == 2
    assert "--validation-data='nowhere.csv'" in missing_validation.stderr
    for completed in (missing, wrong_output, unknown_format, no_checkpoint, missing_validation):
        assert "Traceback" not in completed.stderr and "Spark" not in completed.stderr


def _without_spark():
    """The environment of a command that cannot start Spark: any session start fails."""
    return {**os.environ, "SPARK_HOME": "/nonexistent-spark-home"}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--features-col", "pixels"], "--features-col"),
        (["--label-col", "digit"], "--label-col"),
        (["--features-cols", "features,pixels"], "--features-cols"),
    ],
)
def test_column_errors_name_the_flag_and_come_before_spark_starts(digits_files, flags, named):
    paths, _ = digits_files
    completed = subprocess.run(
        [sys.executable, "-m", "sparkeras.cli", "evaluate", "--data", paths["test"],
         "--model", paths["compiled"], *flags],
        cwd=_REPO, capture_output=True, text=True, timeout=600, env=_without_spark(),
    )
    assert completed.returncode == 2, completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("sparkeras evaluate: error: In --data=") and named in last, last
    assert f"Received: {named}=" in last and "_col" not in last
    assert "Traceback" not in completed.stderr and "at org.apache" not in completed.stderr


@pytest.mark.spark
def test_an_error_once_spark_runs_is_the_last_line(digits_files):
    # A URI is read by Spark only, so this error comes once the session runs,
    # with its start-up job still going: nothing may follow the one line.
    paths, _ = digits_files
    completed = run_command(
        "evaluate", "--data", f"file://{paths['test']}", "--model", paths["compiled"],
        "--features-col", "pixels", timeout=600,
    )
    assert completed.returncode == 2, completed.stderr
    after = completed.stderr.split("sparkeras evaluate: error: ")[-1]
    assert after.startswith("Column 'pixels' given in --features-col is not"), after
    assert len(after.strip().splitlines()) == 1, after


def test_csv_columns_are_checked_against_the_model_before_spark_starts(digits_files, tmp_path):
    paths, _ = digits_files
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,label\n0.5,0.25,1\n0.75,0.5,0\n")
    completed = subprocess.run(
        [sys.executable, "-m", "sparkeras.cli", "evaluate", "--data", str(csv),
         "--features-cols", "a,b", "--model", paths["compiled"]],
        cwd=_REPO, capture_output=True, text=True, timeout=600, env=_without_spark(),
    )
    assert completed.returncode == 2, completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    assert "--features-cols give 2 values per row" in last and "takes 64" in last, last


@pytest.mark.spark
def test_train_saves_a_model_that_learned(trained, digits_files):
    import keras

    code, paths = trained
    assert code == 0
    x_test, y_test = digits_arrays(digits_files[1])
    model = keras.saving.load_model(paths["trained"])
    assert np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test) > 0.85


@pytest.mark.spark
def test_evaluate_prints_json_or_writes_it(trained, tmp_path, capsys):
    from sparkeras.cli import main

    _, paths = trained
    capsys.readouterr()
    assert main(["evaluate", "--data", paths["test"], "--model", paths["trained"]]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"loss", "accuracy"} and printed["accuracy"] > 0.85
    output = tmp_path / "metrics.json"
    arguments = ["evaluate", "--data", paths["test"], "--model", paths["trained"]]
    assert main([*arguments, "--output", str(output)]) == 0
    assert json.loads(output.read_text()) == pytest.approx(printed)


@pytest.mark.spark
def test_predict_writes_the_class_and_probabilities_or_raw_outputs(spark, trained, tmp_path):
    import keras

    from sparkeras.cli import main

    _, paths = trained
    command = ["predict", "--data", paths["test"], "--model", paths["trained"]]
    output = str(tmp_path / "scored.parquet")
    assert main([*command, "--output", output]) == 0
    scored = spark.read.parquet(output).toPandas()
    assert len(scored) == spark.read.parquet(paths["test"]).count()
    assert {"features", "label", "prediction", "probability"} <= set(scored.columns)
    expected = keras.saving.load_model(paths["trained"]).predict(
        np.stack(scored["features"]).astype("float32"), verbose=0
    )
    np.testing.assert_allclose(np.stack(scored["probability"]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scored["prediction"], np.argmax(expected, axis=1))

    named = str(tmp_path / "named.parquet")
    arguments = ["--output", named, "--prediction-col", "digit", "--probability-col", ""]
    assert main([*command, *arguments]) == 0
    columns = spark.read.parquet(named).columns
    assert "digit" in columns and "probability" not in columns and "prediction" not in columns
    raw = str(tmp_path / "raw.parquet")
    assert main([*command, "--output", raw, "--raw"]) == 0
    rows = spark.read.parquet(raw).toPandas()
    assert "probability" not in rows.columns
    np.testing.assert_allclose(np.stack(rows["prediction"]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.spark
def test_train_with_validation_checkpoints_and_resume(digits_files, tmp_path, capsys):
    from sparkeras.checkpoint import load_checkpoint
    from sparkeras.cli import main

    paths, _ = digits_files
    checkpoints = str(tmp_path / "checkpoints")
    command = [
        "train", "--data", paths["train"], "--model", paths["compiled"],
        "--output", str(tmp_path / "out.keras"), "--num-workers", "2", "--frequency", "10",
        "--validation-data", paths["test"], "--checkpoint-dir", checkpoints,
    ]
    capsys.readouterr()
    assert main([*command, "--epochs", "1"]) == 0
    first = capsys.readouterr().out
    assert "Epoch 1/1 - " in first and " - val_accuracy: " in first, first
    assert load_checkpoint(checkpoints)["epochs_done"] == 1
    assert main([*command, "--epochs", "2", "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "Epoch 2/2 - " in resumed and "Epoch 1/2" not in resumed, resumed
    assert load_checkpoint(checkpoints)["epochs_done"] == 2


@pytest.mark.spark
def test_predict_reads_csv_feature_columns(spark, tmp_path):
    import keras

    from sparkeras.cli import main

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.save(tmp_path / "linear.keras")
    values = np.random.default_rng(0).random((20, 3)).round(3)
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c\n" + "\n".join(",".join(map(str, row)) for row in values) + "\n")
    output = str(tmp_path / "scored")
    arguments = [
        "predict",
        "--data",
        str(csv),
        "--features-cols",
        "a,b,c",
        "--model",
        str(tmp_path / "linear.keras"),
        "--output",
        output,
    ]
    assert main(arguments) == 0
    scored = spark.read.parquet(output).toPandas()
    expected = model.predict(scored[["a", "b", "c"]].to_numpy("float32"), verbose=0)[:, 0]
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-5)


@pytest.mark.spark
def test_schema_errors_exit_2_and_other_failures_exit_1(trained, capfd):
    from sparkeras.cli import main

    _, paths = trained
    code = main(
        [
            "evaluate",
            "--data",
            paths["test"],
            "--model",
            paths["trained"],
            "--features-col",
            "pixels",
        ]
    )
    error = capfd.readouterr().err
    assert code == 2 and "Column 'pixels'" in error and "Traceback" not in error
    assert "Received: --features-col='pixels'" in error
    code = main(
        [
            "predict",
            "--data",
            paths["test"],
            "--model",
            paths["trained"],
            "--output",
            "/proc/sparkeras-scored",
        ]
    )
    assert code == 1 and "sparkeras predict failed" in capfd.readouterr().err
