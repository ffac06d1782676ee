"""Live global progress of a fit, worker warnings, and what the Spark UI names.

The fits run on the shared local[2] session; the terminal test runs a user's
script in its own process under a pseudo-terminal, as a person would.
"""

import io
import math
import os
import re
import select
import subprocess
import sys
import warnings

import pytest
from helpers import TESTS_DIR, dense_classifier, job_count

HERE = TESTS_DIR  # the *_child.py scripts


class _Recorder:
    """A Keras callback that records the batch-level calls the driver makes."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epoch = None
                self.batches = []

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                self.batches.append((self.epoch, batch, dict(logs or {})))

        return Recorder()


@pytest.mark.spark
def test_batch_hooks_get_global_steps_and_running_loss(digits, monkeypatch):
    from sparkeras import SparkModel, progress

    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.02)
    train_df, _ = digits
    recorder = _Recorder()
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    history = spark_model.fit(train_df, epochs=2, batch_size=16, callbacks=[recorder], verbose=0)
    total = sum(math.ceil(row["samples"] / 16) for row in spark_model.training_summary)
    for epoch in (0, 1):
        calls = [(batch, logs) for e, batch, logs in recorder.batches if e == epoch]
        steps = [batch for batch, _ in calls]
        assert len(steps) >= 2, calls  # live reports during the epoch, then its end
        assert steps == sorted(steps)
        assert steps[-1] == total - 1  # the epoch's last report counts every worker's steps
        assert calls[-1][1]["loss"] == pytest.approx(history.history["loss"][epoch])
        assert all(0 < logs["loss"] < 10 for _, logs in calls)


@pytest.mark.spark
def test_verbose_2_prints_one_line_per_epoch(digits, capsys):
    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(train_df, epochs=2, batch_size=32, validation_data=test_df, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert len(lines) == 2, lines
    pattern = (
        r"Epoch {}/2 - (\d+)/\1 steps - [\d.]+s - [\d,]+ samples/s - accuracy: 0\.\d{{4}}"
        r" - loss: \d\.\d{{4}} - val_accuracy: 0\.\d{{4}} - val_loss: \d\.\d{{4}}$"
    )
    for epoch, line in enumerate(lines, 1):
        assert re.match(pattern.format(epoch), line), line
    steps = int(re.match(r"Epoch 1/2 - (\d+)/", lines[0]).group(1))
    assert steps == sum(math.ceil(r["samples"] / 32) for r in spark_model.training_summary)


@pytest.mark.spark
def test_verbose_is_checked_before_any_job(digits, spark):
    from sparkeras import SparkModel

    before = job_count(spark)
    with pytest.raises(ValueError, match=r"verbose must be 0 .* Received: verbose=3"):
        SparkModel(dense_classifier(), num_workers=2).fit(digits[0], verbose=3)
    assert job_count(spark) == before


def test_live_bar_shows_steps_rate_and_running_loss():
    from sparkeras.progress import FitProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    with FitProgress(1, epochs=2, file=out) as display:
        assert display.dynamic
        info = {
            "steps": 10,
            "total_steps": 40,
            "samples": 320,
            "samples_per_s": 2345.6,
            "seconds": 0.2,
            "logs": {"loss": 0.5, "accuracy": 0.75},
        }
        display.update(0, info)
        display.update(0, dict(info, steps=40, samples=1280, final=True))
        display.epoch_end(0, {"loss": 0.25, "val_loss": 0.3})
    text = out.getvalue()
    assert "\rEpoch 1/2:  25%|" in text and "10/40" in text
    assert "2,346 samples/s, loss=0.5000, accuracy=0.7500" in text
    assert (
        "Epoch 1/2 - 40/40 steps - 0.2s - 2,346 samples/s - loss: 0.2500 - val_loss: 0.3000\n"
        in text
    )


def test_lines_when_output_is_not_a_terminal():
    from sparkeras.progress import FitProgress

    out = io.StringIO()
    with FitProgress(1, epochs=1, file=out) as display:
        assert not display.dynamic  # a log file gets lines, not carriage returns
        display.update(
            0,
            {
                "steps": 1,
                "total_steps": 2,
                "samples": 8,
                "samples_per_s": 8.0,
                "seconds": 1.0,
                "logs": {"loss": 1.0},
            },
        )
        display.epoch_end(0, {"loss": 0.5})
    assert out.getvalue() == "Epoch 1/1 - 1/2 steps - 1.0s - 8 samples/s - loss: 0.5000\n"


@pytest.mark.spark
def test_worker_warnings_reach_the_driver_once(digits):
    from console_fit_child import noisy_model

    from sparkeras import SparkModel
    from sparkeras.callbacks import WorkerWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, custom = noisy_model()
    spark_model = SparkModel(model, num_workers=2, custom_objects=custom)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spark_model.fit(digits[0], epochs=2, batch_size=64, validation_data=digits[1], verbose=0)
    mine = [w for w in caught if issubclass(w.category, WorkerWarning)]
    assert [str(w.message) for w in mine] == [
        "UserWarning on a Spark worker: NoisyDense says hello from a worker"
    ]


def _job_descriptions(spark):
    jobs = spark.sparkContext._jsc.sc().statusStore().jobsList(None)
    found = []
    for index in range(jobs.size()):
        description = jobs.apply(index).description()
        found.append(description.get() if description.isDefined() else None)
    return found


@pytest.mark.spark
def test_spark_ui_names_the_fit_and_predict(digits, spark):
    from sparkeras import SparkModel

    train_df, test_df = digits
    spark_model = SparkModel(dense_classifier(), num_workers=2)
    spark_model.fit(train_df, epochs=3, batch_size=64, verbose=0)
    assert "sparkeras fit: 3 epochs on 2 workers" in _job_descriptions(spark)
    predicted = spark_model.predict(test_df)
    plan = predicted._jdf.queryExecution().executedPlan().toString()
    assert "sparkeras_predict(" in plan
    spark_model.evaluate(test_df)
    assert "sparkeras evaluate" in _job_descriptions(spark)


def _run_in_terminal(args, timeout_s):
    """Runs `args` with a pseudo-terminal (120 columns) as stdin, stdout and stderr."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, COLUMNS="120", TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                output += data
            elif process.poll() is not None:
                break
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return process.returncode, output.decode(errors="replace")


@pytest.mark.spark
def test_terminal_shows_one_live_bar_not_spark_bar_nor_worker_noise():
    code, text = _run_in_terminal(
        [sys.executable, os.path.join(HERE, "console_fit_child.py")], timeout_s=300
    )
    assert code == 0, text[-3000:]
    fit = text[text.index("FIT START") : text.index("FIT DONE")]
    after = text[text.index("FIT DONE") : text.index("AFTER")]
    assert "\rEpoch 1/2:" in fit and "%|" in fit and "samples/s, " in fit and "loss=" in fit
    assert re.search(r"Epoch 2/2 - \d+/\d+ steps - .* - val_loss: \d\.\d{4}", fit), fit
    assert "[Stage" not in fit  # Spark's console bar is paused while ours shows ...
    assert "[Stage" in after  # ... and is back for the next job
    assert text.count("NoisyDense says hello") == 1, text  # once, on the driver
