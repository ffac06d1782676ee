"""Data-parallel replicas: one device vs two, correctness and overhead.

Each run is a fresh subprocess (devices are fixed when a backend starts)
that builds the same MLP with the same seed, trains it with SGD for the same
steps through `sparkeras.multigpu.make_parallel` on the listed devices, and
reports the time per step (median of the timed epochs, after a warm-up
epoch) and its final weights. The table compares each run with the
one-device run of its backend: the largest weight difference after training
(correctness: data parallelism must compute the same steps) and the time
ratio (overhead: on logical CPU devices there is no extra hardware, so the
ratio is the cost of splitting, mirroring and all-reducing).

  - CPU: 1 device vs 2 logical devices, TensorFlow (logical CPU devices)
    and JAX (XLA_FLAGS=--xla_force_host_platform_device_count=2).
  - GPU: 1 GPU vs every GPU, where the backend sees a GPU; skipped otherwise.

Usage:
    python bench/devices.py            # 20 timed steps x 3 epochs (the recorded run)
    python bench/devices.py --quick    # 10 timed steps x 2 epochs
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FEATURES, HIDDEN, CLASSES, BATCH = 512, 1024, 10, 256


def child(backend, kind, count, steps, epochs, weights_path):
    """Runs in the subprocess: trains on `count` devices of `kind`, prints JSON."""
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow" and kind == "cpu" and count > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    import keras

    from sparkeras import multigpu

    available = multigpu.get_available_devices(kind)
    if len(available) < count:
        print(json.dumps({"skipped": f"{len(available)} {kind} device(s) here"}))
        return
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    model = multigpu.make_parallel(model, available[:count])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * BATCH, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, len(x))
    model.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, shuffle=False, verbose=0)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    np.savez(weights_path, *model.get_weights())
    print(json.dumps({"devices": available[:count], "step_s": statistics.median(times)}))


def run(backend, kind, count, steps, epochs, folder):
    """One configuration in a fresh process; returns its report and weights."""
    weights_path = os.path.join(folder, f"{backend}-{kind}-{count}.npz")
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("XLA_FLAGS", None)
    if backend == "jax" and kind == "cpu":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
        env["JAX_PLATFORMS"] = "cpu"
    command = [
        sys.executable,
        __file__,
        "--child",
        backend,
        kind,
        str(count),
        str(steps),
        str(epochs),
        weights_path,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if completed.returncode != 0:
        return {"skipped": completed.stderr.strip().splitlines()[-1][:120]}, None
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    if "skipped" in report:
        return report, None
    with np.load(weights_path) as arrays:
        return report, [arrays[name] for name in arrays.files]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, kind, count, steps, epochs, path = args.child
        child(backend, kind, int(count), int(steps), int(epochs), path)
        return
    steps, epochs = (10, 2) if args.quick else (20, 3)
    backends = ["tensorflow"]
    try:
        import jax  # noqa: F401

        backends.append("jax")
    except ImportError:
        print("JAX not installed (pip install -e '.[jax]'): TensorFlow only.")
    print(
        f"MLP {FEATURES}-{HIDDEN}-{HIDDEN}-{CLASSES}, SGD, global batch {BATCH}, "
        f"{steps} steps x {epochs} timed epochs"
    )
    print("| backend | devices | time per step (ms) | vs 1 device | max weight difference |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for kind, counts in (("cpu", (1, 2)), ("gpu", (1, 2))):
            for backend in backends:
                base_report, base_weights = None, None
                for count in counts:
                    report, weights = run(backend, kind, count, steps, epochs, folder)
                    if weights is None:
                        print(f"| {backend} | {count} {kind} | skipped: {report['skipped']} | | |")
                        continue
                    if base_weights is None:
                        base_report, base_weights = report, weights
                    difference = max(
                        float(np.max(np.abs(a - b)))
                        for a, b in zip(weights, base_weights, strict=True)
                    )
                    ratio = report["step_s"] / base_report["step_s"]
                    print(
                        f"| {backend} | {', '.join(report['devices'])} | "
                        f"{1000 * report['step_s']:.1f} | {ratio:.2f}x | {difference:.1e} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
