"""How a replica trades weights with the parameter server after each round.

Executor-side module. Synchronous workers push their weights and sample count
and get back the sample-weighted average once every worker has pushed;
asynchronous (and hogwild) workers push the change since their last pull and
get the latest global weights back at once.
"""


class SynchronousExchange:
    """Replaces the local weights by the global average after every round."""

    def __init__(self, client, worker_id, launch):
        self._client = client
        self._worker_id = worker_id
        self._launch = launch

    def start(self, weights, version):
        """Takes the global weights the fit starts (or resumes) from."""
        del weights, version  # every round sends whole weights: no base needed

    def after_round(self, model, round_id, samples, sums):
        """Pushes this round's weights and metric sums; adopts the global average.

        Returns True when the driver asked every worker to stop after this round.
        """
        reply, average = self._client.call(
            "sync",
            {"round": round_id, "worker": self._worker_id, "launch": self._launch,
             "samples": samples, "sums": sums},
            model.get_weights(),
        )
        model.set_weights(average)
        return bool(reply.get("stop"))


class AsynchronousExchange:
    """Pushes local deltas and pulls the latest weights, without waiting."""

    def __init__(self, client, worker_id, launch):
        self._client = client
        self._worker_id = worker_id
        self._launch = launch
        self._base = None
        self._version = 0

    def start(self, weights, version):
        """Takes the global weights the fit starts (or resumes) from."""
        self._base = weights
        self._version = version

    def after_round(self, model, round_id, samples, sums):
        """Pushes the change since the last pull, then adopts the latest weights.

        Returns True when the driver asked the workers to stop.
        """
        if samples == 0:
            return False
        delta = [local - base for local, base in zip(model.get_weights(), self._base, strict=True)]
        reply, latest = self._client.call(
            "push",
            {"round": round_id, "worker": self._worker_id, "launch": self._launch,
             "base_version": self._version, "samples": samples, "sums": sums},
            delta,
        )
        model.set_weights(latest)
        self._base = latest
        self._version = reply["version"]
        return bool(reply.get("stop"))


def make_exchange(mode, client, worker_id, launch):
    """Returns the exchange for `mode` ("synchronous", "asynchronous", "hogwild")."""
    if mode == "synchronous":
        return SynchronousExchange(client, worker_id, launch)
    return AsynchronousExchange(client, worker_id, launch)
