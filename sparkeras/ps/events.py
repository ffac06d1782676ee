"""What the parameter server's threads hand to the driver's main thread.

Driver-side module. The `TrainingCoordinator` puts these on its `events`
queue; the training loop (`sparkeras.training`) takes them one at a time, in
order, and runs the display and the Keras callbacks for each.

Example:
>>> event = coordinator.events.get()
>>> if isinstance(event, EpochEnd):
...     model.set_weights(event.weights)
"""

from dataclasses import dataclass

__all__ = ["EpochEnd", "JobDone", "Progress", "TaskRetried", "WarningReport"]


@dataclass(frozen=True)
class Progress:
    """The global progress of an epoch, summed over the workers' reports.

    Attributes:
        epoch: The epoch, from 0.
        info: dict with `steps`, `total_steps`, `samples`, `samples_per_s`,
            `seconds` and the global running `logs`; `final` on the event
            that closes the epoch.
    """

    epoch: int
    info: dict


@dataclass(frozen=True)
class WarningReport:
    """A worker's warning not seen before in this fit.

    Attributes:
        item: dict with the warning's `category`, `message` and `worker`.
    """

    item: dict


@dataclass(frozen=True)
class EpochEnd:
    """Every worker ended `epoch`; the coordinator waits for the driver's decision.

    Attributes:
        epoch: The epoch, from 0.
        logs: The epoch's global logs (validation ones prefixed `val_`).
        weights: A copy of the global weights at the end of the epoch.
    """

    epoch: int
    logs: dict
    weights: list


@dataclass(frozen=True)
class JobDone:
    """The training job ended (trained, failed or stopped); the loop returns."""


@dataclass(frozen=True)
class TaskRetried:
    """Spark retried a training task after its attempt failed: the launch must end.

    Attributes:
        worker: The task's worker id.
        attempt: Spark's attempt number of the retried task (1 or more).
        launch: The coordinator's launch the retry belongs to.
        crash: The exception the failed attempt reported, or None (its
            process was lost).
    """

    worker: int
    attempt: int
    launch: int
    crash: str = None
