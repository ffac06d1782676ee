"""Parameter-server weight exchange: round-trip time on loopback.

Each worker is a separate process (as on Spark executors) with one
`ParameterClient`; the server runs in this process with the synchronous
handler the fit uses: a `RoundBarrier` that reduces with `weighted_average`.
One round = every worker pushes its float32 weights and receives the
sample-weighted average. A round's time runs from the first worker's send to
the last worker's receipt; the table shows the median over the repeats
(after one warm-up round) and the bytes each worker moved (push + pull) per
second, and all workers together.

Usage:
    python bench/ps.py            # 1, 10, 100 MB x 1, 2, 8 workers, 5 repeats
    python bench/ps.py --quick    # 1, 10, 100 MB x 1, 2 workers, 3 repeats
    python bench/ps.py --tls      # the same through TLS (self-signed certificate)
"""

import argparse
import multiprocessing
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparkeras.ps import (  # noqa: E402
    ParameterClient,
    ParameterServer,
    RoundBarrier,
    TLSConfig,
    weighted_average,
)

MB = 1_000_000
LARGE_TENSORS, SMALL_TENSORS = 4, 4


def model_weights(megabytes, seed):
    """float32 weights of `megabytes` MB: a few large kernels and small biases."""
    rng = np.random.default_rng(seed)
    small = [rng.random(256, dtype=np.float32) for _ in range(SMALL_TENSORS)]
    left = megabytes * MB // 4 - 256 * SMALL_TENSORS
    large = [rng.random(left // LARGE_TENSORS, dtype=np.float32) for _ in range(LARGE_TENSORS)]
    return large + small


def run_worker(address, secret, tls, worker, megabytes, rounds, results):
    """One worker process: `rounds` synchronous exchanges; sends (start, end) pairs."""
    weights = model_weights(megabytes, seed=worker)
    times = []
    with ParameterClient(*address, secret, tls=tls, timeout_s=600) as client:
        for round_id in range(rounds):
            header = {"round": round_id, "worker": worker, "samples": 64 * (worker + 1)}
            start = time.monotonic()
            _, average = client.call("sync", header, weights)
            times.append((start, time.monotonic()))
            weights = average
    results.put((worker, times))


def measure(megabytes, workers, repeats, tls):
    """Median and fastest round time (s) for `workers` x `megabytes` MB."""
    barrier = RoundBarrier(workers, weighted_average)

    def handler(op, header, tensors):
        average = barrier.contribute(
            header["round"], header["worker"], (tensors, header["samples"])
        )
        return {"round": header["round"]}, average

    secret = secrets.token_bytes(32)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    rounds = repeats + 1
    with ParameterServer(
        handler, secret=secret, tls=tls, max_message_bytes=megabytes * MB + (1 << 20)
    ) as server:
        processes = [
            context.Process(
                target=run_worker,
                args=(server.address, secret, tls, worker, megabytes, rounds, results),
            )
            for worker in range(workers)
        ]
        for process in processes:
            process.start()
        times = dict(results.get(timeout=900) for _ in processes)
        for process in processes:
            process.join()
    durations = [
        max(times[w][r][1] for w in times) - min(times[w][r][0] for w in times)
        for r in range(1, rounds)
    ]
    return statistics.median(durations), min(durations)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, 3 repeats")
    parser.add_argument("--tls", action="store_true", help="encrypt with a self-signed certificate")
    parser.add_argument("--repeats", type=int, help="rounds measured per configuration")
    args = parser.parse_args()
    sizes = [1, 10, 100]
    worker_counts = [1, 2] if args.quick else [1, 2, 8]
    repeats = args.repeats or (3 if args.quick else 5)
    tls = TLSConfig.self_signed(tempfile.mkdtemp(), hostname="127.0.0.1") if args.tls else None

    print(
        f"Parameter-server round trip on 127.0.0.1, TLS {'on' if tls else 'off'}, "
        f"median of {repeats} rounds\n"
    )
    print(
        "| weights (MB) | workers | round trip median (s) | fastest (s) "
        "| per worker (MB/s) | all workers (MB/s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for megabytes in sizes:
        for workers in worker_counts:
            median, fastest = measure(megabytes, workers, repeats, tls)
            per_worker = 2 * megabytes / median
            print(
                f"| {megabytes} | {workers} | {median:.3f} | {fastest:.3f} "
                f"| {per_worker:,.0f} | {per_worker * workers:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
